//! The account events svc-auth publishes on `shop.auth.events` (key: the user
//! id, aggregate type "user"), written into the platform's transactional
//! outbox in the transaction that creates the account: no account without its
//! event, no event without its account. svc-notification sends the welcome
//! email from `UserRegistered`.

use shopmesh_events::OutboxError;
use shopmesh_proto::shop::events::v1::UserRegistered;
use sqlx::PgConnection;
use uuid::Uuid;

/// Where account events go.
pub const TOPIC: &str = shopmesh_proto::topics::AUTH_EVENTS;
/// The aggregate type of every account event.
pub const AGGREGATE_TYPE: &str = "user";

/// An account was registered just now.
pub fn user_registered(user_id: Uuid, email: &str, display_name: &str) -> UserRegistered {
    UserRegistered {
        user_id: user_id.to_string(),
        email: email.to_owned(),
        display_name: display_name.to_owned(),
        register_time: Some(std::time::SystemTime::now().into()),
    }
}

/// Writes `event` into the outbox on `conn`, the registration's transaction.
pub async fn publish_user_registered(
    conn: &mut PgConnection,
    event: &UserRegistered,
) -> Result<(), OutboxError> {
    shopmesh_events::publish(conn, TOPIC, AGGREGATE_TYPE, event.user_id.clone(), event).await
}
