//! The AuthService gRPC API: proto ↔ identity. Identity errors become
//! statuses in `error.rs`.

use std::net::IpAddr;
use std::sync::Arc;

use shopmesh_platform::auth::{Caller, Jwk, TokenVerifier, auth_status};
use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_proto::shop::auth::v1 as pb;
use shopmesh_proto::shop::auth::v1::auth_service_server::AuthService;
use tonic::{Request, Response, Status};

use crate::credentials::{self, Email};
use crate::identity::{Identity, KNOWN_ROLES, Registration, SessionTokens};
use crate::login_limit::client_bucket;
use crate::tokens::verified_claims;

/// Set by the gateway to the address of the client it serves.
const CLIENT_IP_HEADER: &str = "x-client-ip";

pub struct AuthApi {
    identity: Identity,
    verifier: Arc<TokenVerifier>,
}

impl AuthApi {
    pub fn new(identity: Identity, verifier: Arc<TokenVerifier>) -> Self {
        Self { identity, verifier }
    }
}

fn token_pair(tokens: SessionTokens) -> pb::TokenPair {
    pb::TokenPair {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        token_type: "Bearer".to_owned(),
        expires_in_seconds: seconds(tokens.access_expires_in),
        refresh_expires_in_seconds: seconds(tokens.refresh_expires_in),
    }
}

fn seconds(duration: std::time::Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

fn jwk(key: Jwk) -> pb::Jwk {
    pb::Jwk {
        kty: key.kty,
        crv: key.crv,
        x: key.x,
        kid: key.kid,
        alg: key.alg,
        r#use: key.key_use,
    }
}

fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// The client a sign-in is counted against: `x-client-ip` from the gateway,
/// else the peer of the call.
fn client_of<T>(request: &Request<T>) -> String {
    let forwarded = request
        .metadata()
        .get(CLIENT_IP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    match forwarded.or_else(|| request.remote_addr().map(|addr| addr.ip())) {
        Some(ip) => client_bucket(ip),
        None => "unknown".to_owned(),
    }
}

/// Validates a registration, naming every bad field at once.
fn registration(request: &pb::RegisterRequest) -> Result<Registration, Status> {
    let email = Email::parse(&request.email);
    let password = credentials::check_new_password(&request.password, email.as_ref().ok());
    let display_name = credentials::check_display_name(&request.display_name);
    match (email, password, display_name) {
        (Ok(email), Ok(()), Ok(display_name)) => Ok(Registration {
            email,
            password: request.password.clone(),
            display_name,
        }),
        (email, password, display_name) => {
            let mut violations = FieldViolations::new();
            let problems = [
                ("email", email.err()),
                ("password", password.err()),
                ("display_name", display_name.err()),
            ];
            for (field, problem) in problems {
                if let Some(problem) = problem {
                    violations.add(field, problem);
                }
            }
            Err(violations
                .into_result()
                .err()
                .unwrap_or_else(|| Status::invalid_argument("invalid registration")))
        }
    }
}

fn role(raw: &str) -> Result<String, Status> {
    let role = raw.trim();
    if !KNOWN_ROLES.contains(&role) {
        return Err(errors::invalid_field(
            "role",
            &format!("is not a known role (known: {})", KNOWN_ROLES.join(", ")),
        ));
    }
    Ok(role.to_owned())
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let registration = registration(request.get_ref())?;
        let (user_id, tokens) = self.identity.register(registration).await?;
        Ok(Response::new(pb::RegisterResponse {
            user_id: user_id.to_string(),
            tokens: Some(token_pair(tokens)),
        }))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let client = client_of(&request);
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        violations.check(!body.email.trim().is_empty(), "email", "is required");
        violations.check(!body.password.is_empty(), "password", "is required");
        violations.into_result()?;
        let tokens = self
            .identity
            .login(&body.email, &body.password, &client)
            .await?;
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(token_pair(tokens)),
        }))
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let presented = request.get_ref().refresh_token.trim();
        if presented.is_empty() {
            return Err(errors::invalid_field("refresh_token", "is required"));
        }
        let tokens = self.identity.refresh(presented).await?;
        Ok(Response::new(pb::RefreshTokenResponse {
            tokens: Some(token_pair(tokens)),
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let caller = Caller::of(&request)?;
        self.identity
            .logout(caller.user_id, caller.session_id)
            .await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<pb::LogoutAllRequest>,
    ) -> Result<Response<pb::LogoutAllResponse>, Status> {
        let caller = Caller::of(&request)?;
        let revoked = self.identity.logout_all(caller.user_id).await?;
        Ok(Response::new(pb::LogoutAllResponse {
            revoked_sessions: i32::try_from(revoked).unwrap_or(i32::MAX),
        }))
    }

    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = request.get_ref().access_token.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        if token.is_empty() {
            return Err(errors::invalid_field("access_token", "is required"));
        }
        let caller = self.verifier.verify(token).await.map_err(auth_status)?;
        // The verifier has checked the signature; `iat` is read from the same payload.
        let issued_at = verified_claims(token).map_or(0, |claims| claims.iat);
        Ok(Response::new(pb::ValidateTokenResponse {
            user_id: caller.user_id.to_string(),
            session_id: caller.session_id.to_string(),
            roles: caller.roles,
            expire_time: Some(timestamp(caller.expires_at)),
            issue_time: Some(timestamp(issued_at)),
        }))
    }

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let keys = self.identity.jwks().await?;
        Ok(Response::new(pb::GetJwksResponse {
            keys: keys.into_iter().map(jwk).collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let caller = Caller::of(&request)?;
        let rotation = self.identity.rotate_signing_key().await?;
        tracing::info!(admin = %caller.user_id, kid = %rotation.current.kid, "signing key rotated on command");
        Ok(Response::new(pb::RotateSigningKeyResponse {
            key: Some(jwk(rotation.current)),
            previous_kid: rotation.previous_kid,
        }))
    }

    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> Result<Response<pb::GrantRoleResponse>, Status> {
        let body = request.get_ref();
        let user_id = errors::parse_uuid("user_id", &body.user_id)?;
        let role = role(&body.role)?;
        let roles = self.identity.grant_role(user_id, &role).await?;
        Ok(Response::new(pb::GrantRoleResponse {
            user_id: user_id.to_string(),
            roles,
        }))
    }

    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Result<Response<pb::RevokeRoleResponse>, Status> {
        let body = request.get_ref();
        let user_id = errors::parse_uuid("user_id", &body.user_id)?;
        let role = role(&body.role)?;
        let roles = self.identity.revoke_role(user_id, &role).await?;
        Ok(Response::new(pb::RevokeRoleResponse {
            user_id: user_id.to_string(),
            roles,
        }))
    }
}
