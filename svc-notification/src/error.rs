//! svc-notification's errors that reach the API, and their one conversion to
//! gRPC statuses. A shopper's own reads fail only for the database (internal)
//! or, for a watch, when the server shuts down (UNAVAILABLE: watch again).
//! The sender's failures (a recipient lookup, a provider refusal) never reach
//! a caller: they settle the notification (`recipients.rs`, `providers.rs`).

use shopmesh_platform::errors;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] shopmesh_events::OutboxError),
    #[error("stored value {0:?} is not known")]
    Corrupt(String),
}

/// How a watch ends other than by the client leaving.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The one place store errors become statuses.
impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        errors::internal(err)
    }
}

impl From<WatchEnd> for Status {
    fn from(end: WatchEnd) -> Self {
        match end {
            WatchEnd::ShuttingDown => {
                Status::unavailable("the server is shutting down: watch again to reconnect")
            }
            WatchEnd::Store(err) => err.into(),
        }
    }
}
