//! Identity for every binary: access-token claims, the signing keys and their
//! JWKS form, sessions in Redis, token verification, the server-side access
//! layer that enforces each method's declared access, and the credentials one
//! service presents to another.

mod keys;
mod layer;
mod sessions;
mod verifier;

use serde::{Deserialize, Serialize};
use tonic::Status;
use uuid::Uuid;

pub use keys::{GrpcKeySource, Jwk, KeySource, SigningKey, StaticKeySource};
pub use layer::{AccessControl, AccessLayer, ServiceCredentials, auth_status};
pub use sessions::SessionStore;
pub use verifier::{AuthError, TokenVerifier};

/// The role that unlocks ACCESS_ADMIN methods.
pub const ADMIN_ROLE: &str = "admin";

/// Claims of a shopmesh access token (a JWT signed with EdDSA).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The session id; revoking the session revokes the token.
    pub sid: String,
    pub roles: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// A signed-in user, as every handler sees them: verified token, live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub roles: Vec<String>,
    /// Token expiry (seconds since the epoch).
    pub expires_at: i64,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    /// The caller of a USER or ADMIN method (the access layer guarantees one).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .ok_or_else(|| Status::unauthenticated("a valid access token is required"))
    }

    /// The caller of a PUBLIC method, when it sent a valid token.
    pub fn optional<T>(request: &tonic::Request<T>) -> Option<&Caller> {
        request.extensions().get::<Caller>()
    }
}

/// Another shopmesh service calling an INTERNAL method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCaller {
    pub name: String,
}

impl ServiceCaller {
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&ServiceCaller, Status> {
        request
            .extensions()
            .get::<ServiceCaller>()
            .ok_or_else(|| Status::unauthenticated("a service credential is required"))
    }
}
