//! What a profile or address-book call can fail with, besides a malformed
//! request, and the one place those errors become gRPC statuses.

use shopmesh_platform::errors::{self, ErrorReason};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::address::MAX_ADDRESSES;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0} has no profile")]
    ProfileNotFound(Uuid),
    #[error("address {0} not found")]
    AddressNotFound(Uuid),
    #[error("the address book already holds {MAX_ADDRESSES} addresses")]
    AddressBookFull,
    #[error("SMS marketing needs a phone number")]
    SmsNeedsPhone,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The CHECK constraint that keeps SMS consent tied to a phone number.
const SMS_NEEDS_PHONE: &str = "profiles_sms_needs_phone";

impl UserError {
    /// Maps a failed profile update by the constraint it broke, never by its message.
    pub fn from_profile_update(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.constraint() == Some(SMS_NEEDS_PHONE) => {
                Self::SmsNeedsPhone
            }
            _ => Self::Database(err),
        }
    }
}

impl From<UserError> for Status {
    fn from(err: UserError) -> Self {
        match err {
            UserError::ProfileNotFound(user_id) => {
                errors::not_found(ErrorReason::UserNotFound, &user_id.to_string())
            }
            UserError::AddressNotFound(id) => {
                errors::not_found(ErrorReason::AddressNotFound, &id.to_string())
            }
            UserError::AddressBookFull => errors::domain_error(
                Code::FailedPrecondition,
                ErrorReason::AddressBookFull,
                format!(
                    "the address book already holds {MAX_ADDRESSES} addresses; delete one first"
                ),
            ),
            UserError::SmsNeedsPhone => errors::invalid_field(
                "profile.marketing.sms_opt_in",
                "needs a phone number: set profile.phone too, or leave SMS marketing off",
            ),
            UserError::Database(err) => errors::internal(err),
        }
    }
}
