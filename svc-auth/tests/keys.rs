//! Signing keys against real PostgreSQL: rotation on command and on schedule,
//! and the JWKS that keeps old tokens verifiable until they expire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use shopmesh_proto::shop::auth::v1::{GetJwksRequest, LogoutRequest, RotateSigningKeyRequest};
use support::{bearer, eventually, kid_of, login, register, start, unique_email, validate};

async fn jwks(client: &mut support::Client) -> Vec<String> {
    client
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect()
}

#[tokio::test]
async fn tokens_signed_before_a_rotation_still_verify_and_retired_keys_expire() {
    let admin_email = unique_email("keys");
    let mut h = start(&[("BOOTSTRAP_ADMIN_EMAILS", &admin_email)]).await;
    let admin = register(&mut h.client, &admin_email).await.tokens.unwrap();
    let shopper_email = unique_email("old-token");
    register(&mut h.client, &shopper_email).await;
    let old = login(&mut h.client, &shopper_email).await;
    let first_kid = kid_of(&old.access_token);
    validate(&mut h.client, &old.access_token).await.unwrap();

    let published = h
        .client
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(
        published.len(),
        1,
        "only the current key before any rotation"
    );
    let key = &published[0];
    assert_eq!(
        (
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    assert_eq!(key.kid, first_kid);

    let rotation = h
        .client
        .rotate_signing_key(bearer(RotateSigningKeyRequest {}, &admin.access_token))
        .await
        .unwrap()
        .into_inner();
    let new_kid = rotation.key.unwrap().kid;
    assert_eq!(rotation.previous_kid, first_kid);
    assert_ne!(new_kid, first_kid);
    assert_eq!(
        jwks(&mut h.client).await,
        [new_kid.clone(), first_kid.clone()]
    );

    // The token from before the rotation still works, for ValidateToken and a USER call.
    validate(&mut h.client, &old.access_token).await.unwrap();

    // A token issued now is signed with the new key and verifies at once.
    let fresh = login(&mut h.client, &shopper_email).await;
    assert_eq!(kid_of(&fresh.access_token), new_kid);
    validate(&mut h.client, &fresh.access_token).await.unwrap();
    h.client
        .logout(bearer(LogoutRequest {}, &fresh.access_token))
        .await
        .unwrap();
    h.client
        .logout(bearer(LogoutRequest {}, &old.access_token))
        .await
        .unwrap();

    // The retired key is published until its last token's expiry plus a minute…
    let retire_after_rotation: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM old.retires_at - new.activated_at)::float8 \
         FROM signing_keys old, signing_keys new WHERE old.kid = $1 AND new.kid = $2",
    )
    .bind(&first_kid)
    .bind(&new_kid)
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert!(
        (retire_after_rotation - 16.0 * 60.0).abs() < 1.0,
        "{retire_after_rotation}"
    );

    // …and gone once that moment has passed.
    sqlx::query("UPDATE signing_keys SET retires_at = now() - interval '1 second' WHERE kid = $1")
        .bind(&first_kid)
        .execute(h.service.db())
        .await
        .unwrap();
    assert_eq!(jwks(&mut h.client).await, vec![new_kid]);
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn keys_rotate_on_schedule_once_across_concurrent_checks() {
    let admin_email = unique_email("schedule");
    let mut h = start(&[
        ("BOOTSTRAP_ADMIN_EMAILS", &admin_email),
        ("SIGNING_KEY_ROTATION_HOURS", "1"),
        ("SIGNING_KEY_CHECK_SECONDS", "1"),
    ])
    .await;
    let admin = register(&mut h.client, &admin_email).await.tokens.unwrap();
    let first_kid = kid_of(&admin.access_token);
    assert_eq!(jwks(&mut h.client).await, vec![first_kid.clone()]);

    // Not due yet: a few checks change nothing.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(jwks(&mut h.client).await, vec![first_kid.clone()]);

    // The current key has signed for two hours: the next check replaces it.
    sqlx::query(
        "UPDATE signing_keys SET activated_at = now() - interval '2 hours' \
         WHERE activated_at IS NOT NULL AND retires_at IS NULL",
    )
    .execute(h.service.db())
    .await
    .unwrap();
    let mut client = h.client.clone();
    let rotated = eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        async move { jwks(&mut client).await.len() == 2 }
    })
    .await;
    assert!(rotated, "the schedule did not rotate");
    let kids = jwks(&mut client).await;
    assert_ne!(kids[0], first_kid);
    assert_eq!(kids[1], first_kid);
    validate(&mut client, &admin.access_token).await.unwrap();

    // Many rotations at once (commands racing the schedule) each complete, in
    // order, leaving exactly one current key.
    let mut calls = Vec::new();
    for _ in 0..4 {
        let mut client = client.clone();
        let token = admin.access_token.clone();
        calls.push(tokio::spawn(async move {
            client
                .rotate_signing_key(bearer(RotateSigningKeyRequest {}, &token))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut new_kids = Vec::new();
    let mut previous_kids = Vec::new();
    for call in calls {
        let rotation = call.await.unwrap().unwrap();
        new_kids.push(rotation.key.unwrap().kid);
        previous_kids.push(rotation.previous_kid);
    }
    new_kids.sort();
    new_kids.dedup();
    assert_eq!(new_kids.len(), 4, "each rotation made its own key");
    let current: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM signing_keys WHERE activated_at IS NOT NULL AND retires_at IS NULL",
    )
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!(current, 1);
    let published = jwks(&mut client).await;
    assert_eq!(published.len(), 6, "the current key and five retired ones");
    validate(&mut client, &admin.access_token).await.unwrap();
    h.service.stop().await.unwrap();
}
