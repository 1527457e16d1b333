//! The order service: orders and the checkout saga.
//!
//! CreateOrder prices the lines from svc-product, tokenizes the payment
//! method with svc-payment, and stores the order PENDING together with its
//! saga in one transaction (idempotent per user and key). A runner then
//! drives the saga (reserve stock → authorize → commit stock → capture),
//! persisted step by step in PostgreSQL, compensating on failure; any
//! replica, or the same one after a restart, resumes what is in flight.
//! Status changes are announced with LISTEN/NOTIFY to WatchOrder streams and
//! to the RPCs waiting for a saga to settle. A consumer of
//! `shop.payment.events` keeps a payment ledger and checks it against the
//! orders (`ledger.rs`). See `docs/checkout.md`.
//!
//! Where things are: `api.rs` (the RPCs), `order.rs` (the order rules),
//! `saga.rs` (the saga as a pure state machine) driven by `runner.rs` through
//! `clients.rs`, `watch.rs` (status changes to streams), `ledger.rs`,
//! `store/` (every SQL statement: orders, `sagas`, `ledger`), `events.rs`
//! (the events published through the outbox), `error.rs` (errors → gRPC
//! statuses), `metrics.rs`, `settings.rs`.

mod api;
mod clients;
pub mod error;
pub mod events;
pub mod ledger;
mod metrics;
pub mod order;
mod runner;
pub mod saga;
pub mod settings;
mod store;
mod watch;

use futures::FutureExt;
use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::order::v1::order_service_server::OrderServiceServer;

pub use settings::OrderSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-order",
    grpc_port: 50056,
    metrics_port: 9106,
    migrator: Some(&MIGRATOR),
    check_settings: |env| OrderSettings::from_env(env).map(drop),
    extensions: &[&shopmesh_events::EVENTS],
};

/// Builds the service on a prepared context. When the service begins to shut
/// down (`ctx.shutdown`), the saga runner stops claiming sagas (each one it
/// drives finishes its current step and is let go, for another replica or the
/// next start) and open WatchOrder streams end with UNAVAILABLE so they do not
/// hold the drain open.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let db = ctx.database()?;
    let shutdown = ctx.shutdown.clone().cancelled_owned();
    let settings = OrderSettings::from_env(&ctx.env)?;
    shopmesh_events::start_relay(&ctx, &[events::TOPIC])?;
    shopmesh_events::start_consumer(
        &ctx,
        &settings.consumer_group,
        &[ledger::TOPIC],
        ledger::PaymentLedger,
        |c| c,
    )?;
    ledger::spawn_checker(db.clone(), settings.ledger_check, ctx.shutdown.clone());
    let credentials = ServiceCredentials::new(SPEC.name, &ctx.settings.auth.internal_token)?;
    let clients = clients::Clients::connect(&settings, credentials)?;
    let store = store::Store::new(db.clone());
    let shutdown = shutdown.shared();
    let watch = watch::OrderWatch::start(&db, ctx.shutdown.clone()).await?;
    let runner = runner::spawn(store.clone(), clients.clone(), &settings, shutdown);
    let api = api::OrderApi::new(
        store,
        clients,
        runner,
        watch,
        settings.saga_timeout,
        settings.response_wait,
    );
    Ok(ctx.grpc.add_service(OrderServiceServer::new(api)))
}
