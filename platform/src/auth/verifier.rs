//! Access-token verification, identical at the gateway and in every service:
//! EdDSA signature by a published key (refetched when an unknown `kid` shows up),
//! `exp`, `nbf`, `iss`, `aud`, and a live session in Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use super::{AccessClaims, Caller, KeySource, SessionStore};

/// Why a token was refused. Every variant is a 401; the message is for logs.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("session revoked or expired")]
    Revoked,
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;
/// An unknown `kid` triggers at most one JWKS fetch per this period, so a flood of
/// forged kids cannot hammer svc-auth.
const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

pub struct TokenVerifier {
    source: Arc<dyn KeySource>,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_refresh: Mutex<Option<Instant>>,
    sessions: SessionStore,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(
        source: Arc<dyn KeySource>,
        sessions: SessionStore,
        issuer: &str,
        audience: &str,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            source,
            keys: RwLock::new(HashMap::new()),
            last_refresh: Mutex::new(None),
            sessions,
            validation,
        }
    }

    /// Verifies an `Authorization` header value (`Bearer <jwt>`).
    pub async fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        self.verify(token).await
    }

    /// Verifies a raw JWT.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("no kid".into()))?;
        let key = self.key(&kid).await?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Invalid("sub".into()))?;
        let session_id =
            Uuid::parse_str(&claims.sid).map_err(|_| AuthError::Invalid("sid".into()))?;
        match self.sessions.is_active(session_id).await {
            Ok(true) => {}
            Ok(false) => return Err(AuthError::Revoked),
            Err(err) => return Err(AuthError::Unavailable(err.to_string())),
        }
        Ok(Caller {
            user_id,
            session_id,
            roles: claims.roles,
            expires_at: claims.exp,
        })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        self.refresh(kid).await?;
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or(AuthError::UnknownKey)
    }

    /// Refetches the JWKS for an unknown `kid`, at most once per
    /// [`REFRESH_INTERVAL`]. A caller inside the interval waits for it rather than
    /// being refused: right after a rotation the new key must be found even if
    /// the cache was refreshed a moment before, while forged kids still cost
    /// svc-auth no more than one fetch per interval.
    async fn refresh(&self, kid: &str) -> Result<(), AuthError> {
        let mut last = self.last_refresh.lock().await;
        if self.keys.read().await.contains_key(kid) {
            // Fetched by whoever held the lock before us.
            return Ok(());
        }
        if let Some(at) = *last {
            let wait = REFRESH_INTERVAL.saturating_sub(at.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let jwks = self
            .source
            .keys()
            .await
            .map_err(|e| AuthError::Unavailable(format!("cannot fetch signing keys: {e:#}")))?;
        let mut keys = HashMap::new();
        for jwk in jwks {
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
                continue;
            }
            if let Ok(key) = DecodingKey::from_ed_components(&jwk.x) {
                keys.insert(jwk.kid, key);
            }
        }
        *self.keys.write().await = keys;
        *last = Some(Instant::now());
        Ok(())
    }
}
