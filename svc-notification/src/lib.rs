//! The notification service: email and SMS to shoppers about their orders
//! and account (docs/notifications.md).
//!
//! A consumer in group `svc-notification` turns order, payment and auth
//! events into notification rows (one per channel, by the shopper's
//! preferences) inside its inbox transaction; a sender task claims the
//! PENDING rows, looks the recipient up in svc-user, sends through SMTP or
//! the SMS provider and settles each row with `NotificationSent` in the
//! outbox. History, preferences and a live stream are served over gRPC.

mod api;
pub mod consumer;
mod error;
mod events;
pub mod model;
pub mod providers;
mod recipients;
mod sender;
pub mod settings;
mod store;
pub mod templates;
mod watch;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::notification::v1::notification_service_server::NotificationServiceServer;

pub use events::TOPIC;
pub use settings::NotificationSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-notification",
    grpc_port: 50058,
    metrics_port: 9108,
    migrator: Some(&MIGRATOR),
    check_settings: |env| NotificationSettings::from_env(env).map(drop),
    extensions: &[&shopmesh_events::EVENTS],
};

/// Builds the service on a prepared context: the event consumer, the sender
/// and the outbox relay run until `ctx.shutdown`.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let db = ctx.database()?;
    let settings = NotificationSettings::from_env(&ctx.env)?;
    let credentials = ServiceCredentials::new(SPEC.name, &ctx.settings.auth.internal_token)?;
    let store = store::Store::new(db.clone());
    let sender = sender::Sender {
        store: store.clone(),
        recipients: recipients::Recipients::new(&settings.user_url, credentials)?,
        mailer: providers::Mailer::from_settings(&settings)?,
        sms: providers::sms_provider(&settings)?,
        max_attempts: settings.max_attempts,
        max_backoff: settings.max_backoff,
    };
    let watch = watch::NotificationWatch::start(&db, ctx.shutdown.clone()).await?;
    shopmesh_events::start_relay(&ctx, &[TOPIC])?;
    shopmesh_events::start_consumer(
        &ctx,
        &settings.consumer_group,
        consumer::TOPICS,
        consumer::NotificationHandler,
        |c| c,
    )?;
    sender.spawn(&db, ctx.shutdown.clone()).await?;
    let api = api::NotificationApi::new(store, watch);
    Ok(ctx.grpc.add_service(NotificationServiceServer::new(api)))
}
