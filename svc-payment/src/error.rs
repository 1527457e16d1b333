//! The payment service's errors and their one conversion to gRPC statuses.

use shopmesh_platform::errors::{self, ErrorReason};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::payment::PaymentStatus;
use crate::provider::TokenizeError;

/// Why an operation on a payment was refused.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payment {0} not found")]
    NotFound(Uuid),
    #[error("idempotency key {0:?} was already used with other parameters")]
    KeyReused(String),
    #[error("payment method: {0}")]
    InvalidMethod(String),
    #[error("payment {id} is {status}: {action} needs {needs}")]
    WrongState {
        id: Uuid,
        status: PaymentStatus,
        action: &'static str,
        needs: &'static str,
    },
    #[error("refund amount: {0}")]
    InvalidRefund(String),
    #[error("another {0} of this payment is in progress; retry it with its own key")]
    Busy(&'static str),
    #[error("the payment provider declined the {action}: {code}")]
    ProviderRefused { action: &'static str, code: String },
    #[error("the payment provider did not answer in time; retry with the same key")]
    ProviderUnavailable,
    #[error("the provider is still answering an earlier call with this key; retry shortly")]
    InProgress,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] shopmesh_events::OutboxError),
    #[error("stored payment is corrupt: {0}")]
    Corrupt(String),
}

/// A payment method the provider refused, or a provider that did not answer.
impl From<TokenizeError> for PaymentError {
    fn from(err: TokenizeError) -> Self {
        match err {
            TokenizeError::Invalid(reason) => Self::InvalidMethod(reason),
            TokenizeError::Unavailable(_) => Self::ProviderUnavailable,
        }
    }
}

impl From<PaymentError> for Status {
    fn from(err: PaymentError) -> Self {
        let message = err.to_string();
        match err {
            PaymentError::NotFound(id) => {
                errors::not_found(ErrorReason::PaymentNotFound, &id.to_string())
            }
            PaymentError::KeyReused(_) => errors::domain_error(
                Code::AlreadyExists,
                ErrorReason::IdempotencyKeyReused,
                message,
            ),
            PaymentError::InvalidMethod(reason) => errors::invalid_field("payment_method", &reason),
            PaymentError::InvalidRefund(reason) => errors::invalid_field("amount", &reason),
            PaymentError::WrongState { status, .. } => {
                errors::domain_error(Code::FailedPrecondition, state_reason(status), message)
            }
            PaymentError::Busy(_) => errors::domain_error(
                Code::Aborted,
                ErrorReason::PaymentOperationInProgress,
                message,
            ),
            PaymentError::ProviderRefused { .. } => errors::domain_error(
                Code::FailedPrecondition,
                ErrorReason::ProviderDeclined,
                message,
            ),
            PaymentError::ProviderUnavailable => {
                errors::domain_error(Code::Unavailable, ErrorReason::ProviderUnavailable, message)
            }
            PaymentError::InProgress => {
                errors::domain_error(Code::Unavailable, ErrorReason::PaymentInProgress, message)
            }
            PaymentError::Database(_) | PaymentError::Outbox(_) | PaymentError::Corrupt(_) => {
                errors::internal(err)
            }
        }
    }
}

/// The reason of an operation the payment's state does not allow: the state.
fn state_reason(status: PaymentStatus) -> ErrorReason {
    match status {
        PaymentStatus::Pending => ErrorReason::PaymentPending,
        PaymentStatus::Authorized => ErrorReason::PaymentAuthorized,
        PaymentStatus::Captured => ErrorReason::PaymentCaptured,
        PaymentStatus::Voided => ErrorReason::PaymentVoided,
        PaymentStatus::PartiallyRefunded => ErrorReason::PaymentPartiallyRefunded,
        PaymentStatus::Refunded => ErrorReason::PaymentRefunded,
        PaymentStatus::Failed => ErrorReason::PaymentFailed,
    }
}
