//! What an identity call can fail with, besides a malformed request, and the
//! one place those errors become gRPC statuses.

use std::time::Duration;

use shopmesh_platform::errors::{self, ErrorReason};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Unknown email and wrong password alike.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins; retry in {} s", retry_after.as_secs())]
    TooManyAttempts { retry_after: Duration },
    /// Unknown, expired or revoked.
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    /// A rotated token came back: its session has been revoked.
    #[error("the refresh token was already used; the session is revoked")]
    RefreshTokenReused,
    #[error("user {0} not found")]
    UserNotFound(Uuid),
    #[error("the last admin cannot lose the admin role")]
    LastAdmin,
    /// Redis (sessions, counters) cannot be reached.
    #[error("session store unavailable: {0}")]
    Unavailable(#[from] fred::error::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for IdentityError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<IdentityError> for Status {
    fn from(err: IdentityError) -> Self {
        let message = err.to_string();
        match err {
            IdentityError::EmailTaken => {
                errors::domain_error(Code::AlreadyExists, ErrorReason::EmailTaken, message)
            }
            IdentityError::InvalidCredentials => errors::domain_error(
                Code::Unauthenticated,
                ErrorReason::InvalidCredentials,
                message,
            ),
            IdentityError::TooManyAttempts { retry_after } => {
                let mut details = errors::error_info(ErrorReason::TooManyFailedLogins);
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            IdentityError::InvalidRefreshToken => errors::domain_error(
                Code::Unauthenticated,
                ErrorReason::InvalidRefreshToken,
                message,
            ),
            IdentityError::RefreshTokenReused => errors::domain_error(
                Code::Unauthenticated,
                ErrorReason::RefreshTokenReused,
                message,
            ),
            IdentityError::UserNotFound(id) => {
                errors::not_found(ErrorReason::UserNotFound, &id.to_string())
            }
            IdentityError::LastAdmin => {
                errors::domain_error(Code::FailedPrecondition, ErrorReason::LastAdmin, message)
            }
            IdentityError::Unavailable(err) => {
                tracing::warn!(error = %err, "Redis unavailable");
                Status::unavailable("cannot reach the session store right now")
            }
            IdentityError::Internal(err) => errors::internal(err),
        }
    }
}
