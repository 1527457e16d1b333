//! The two tokens of a session: the access JWT (EdDSA, signed with the current
//! key) and the opaque refresh token (random, stored only as its SHA-256).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use shopmesh_platform::auth::AccessClaims;
use uuid::Uuid;

use crate::keys::KeyRing;
use crate::settings::ACCESS_TOKEN_TTL;

/// Signs access tokens for this deployment's issuer and audience.
#[derive(Clone, Debug)]
pub struct AccessTokenIssuer {
    keys: KeyRing,
    issuer: String,
    audience: String,
}

impl AccessTokenIssuer {
    pub fn new(keys: KeyRing, issuer: &str, audience: &str) -> Self {
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// A JWT for `user` in `session` carrying `roles`, valid from now for
    /// [`ACCESS_TOKEN_TTL`].
    pub async fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        roles: Vec<String>,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user.to_string(),
            sid: session.to_string(),
            roles,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_TTL.as_secs() as i64,
            jti: Uuid::now_v7().to_string(),
        };
        let key = self.keys.current().await?;
        Ok(key.sign(&claims)?)
    }
}

/// Reads the claims of a token whose signature was already verified.
pub fn verified_claims(token: &str) -> Option<AccessClaims> {
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&json).ok()
}

/// A new refresh token: 32 random bytes, base64url, and the hash that is stored.
pub struct RefreshToken {
    pub token: String,
    pub hash: [u8; 32],
}

impl RefreshToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = Self::hash_of(&token);
        Self { token, hash }
    }

    /// What the database keeps and looks tokens up by.
    pub fn hash_of(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_32_bytes_in_base64url() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a.token).unwrap().len(), 32);
        assert_eq!(RefreshToken::hash_of(&a.token), a.hash);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn claims_are_read_back_from_a_signed_token() {
        let key = shopmesh_platform::auth::SigningKey::generate("k1");
        let claims = AccessClaims {
            sub: Uuid::now_v7().to_string(),
            sid: Uuid::now_v7().to_string(),
            roles: vec!["admin".into()],
            iss: "shopmesh".into(),
            aud: "shopmesh".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            jti: "j".into(),
        };
        let token = key.sign(&claims).unwrap();
        assert_eq!(verified_claims(&token), Some(claims));
        assert_eq!(verified_claims("not.a-token"), None);
    }
}
