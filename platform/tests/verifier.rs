//! The token verifier against real Redis: a key published right after the JWKS
//! was fetched is still found, and a revoked session is refused at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use shopmesh_platform::auth::{
    AuthError, SessionStore, SigningKey, StaticKeySource, TokenVerifier,
};
use shopmesh_platform::settings::{Env, RedisSettings};
use shopmesh_testkit::{TestIdentity, redis_url};

async fn sessions() -> SessionStore {
    let settings = RedisSettings::from_env(&Env::from_pairs([("REDIS_URL", redis_url())])).unwrap();
    SessionStore::new(shopmesh_platform::redis::connect(&settings).await.unwrap())
}

#[tokio::test]
async fn a_key_rotated_in_just_after_a_fetch_is_still_accepted() {
    let identity = TestIdentity::start().await.unwrap();
    let old = SigningKey::generate("old");
    let new = SigningKey::generate("new");
    let source = Arc::new(StaticKeySource::new(vec![old.public_jwk()]));
    let verifier = TokenVerifier::new(source.clone(), sessions().await, "shopmesh", "shopmesh");

    let (user, session, _) = identity.sign_in(&[]).await.unwrap();
    let claims = identity.claims(user, session, &[]);
    // The verifier fetches the JWKS now…
    verifier.verify(&old.sign(&claims).unwrap()).await.unwrap();
    // …and a moment later svc-auth rotates: the next token is signed by a key the
    // verifier has never seen, inside the refresh rate limit.
    source.replace(vec![new.public_jwk(), old.public_jwk()]);
    let caller = verifier.verify(&new.sign(&claims).unwrap()).await.unwrap();
    assert_eq!(caller.user_id, user);
    // A kid nobody published stays refused.
    let forged = SigningKey::generate("forged").sign(&claims).unwrap();
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(AuthError::UnknownKey)
    ));
}

#[tokio::test]
async fn revocation_is_seen_by_the_next_verification() {
    let identity = TestIdentity::start().await.unwrap();
    let source = Arc::new(StaticKeySource::new(vec![identity.key.public_jwk()]));
    let verifier = TokenVerifier::new(source, sessions().await, "shopmesh", "shopmesh");
    let (user, session, token) = identity.sign_in(&["admin"]).await.unwrap();
    let caller = verifier
        .verify_header(Some(&format!("Bearer {token}")))
        .await
        .unwrap();
    assert!(caller.is_admin());
    identity.sessions.revoke(session, user).await.unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        verifier.verify_header(None).await,
        Err(AuthError::Missing)
    ));
}
