//! The payment service: card payments for orders through a provider (the
//! simulated card network by default, or a Stripe-like HTTP provider).
//! Authorize, capture, void and refund are idempotent by key; every provider
//! call is a recorded transaction; a card number is never stored or logged.
//!
//! `api.rs` validates a request and hands it to the lifecycle
//! (`lifecycle.rs`), which locks the payment and records a PENDING provider
//! transaction (`store.rs`), calls the provider (`provider/`) outside any
//! database transaction, then records the answer and its event
//! (`events.rs`, through the outbox) in one transaction. `payment.rs` is the
//! model; `error.rs` turns what goes wrong into gRPC statuses.

mod api;
mod error;
pub mod events;
mod lifecycle;
pub mod payment;
pub mod provider;
pub mod settings;
mod store;

use std::sync::Arc;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::payment::v1::payment_service_server::PaymentServiceServer;

use crate::provider::{PaymentProvider, Provider};
use crate::settings::PaymentSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-payment",
    grpc_port: 50057,
    metrics_port: 9107,
    migrator: Some(&MIGRATOR),
    check_settings: |env| PaymentSettings::from_env(env).map(drop),
    extensions: &[&shopmesh_events::EVENTS],
};

/// Builds the service with the provider its settings name.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let settings = PaymentSettings::from_env(&ctx.env)?;
    let provider = settings.provider()?;
    serve(ctx, provider)
}

/// Builds the service on `provider` (tests bring their own, to count calls),
/// bounded by the configured provider timeout.
pub async fn build_with_provider(
    ctx: Context,
    provider: Arc<dyn PaymentProvider>,
) -> anyhow::Result<GrpcServer> {
    let settings = PaymentSettings::from_env(&ctx.env)?;
    serve(ctx, Provider::new(provider, settings.provider_timeout))
}

fn serve(ctx: Context, provider: Provider) -> anyhow::Result<GrpcServer> {
    shopmesh_events::start_relay(&ctx, &[events::TOPIC])?;
    let payments = lifecycle::Payments::new(ctx.database()?, provider);
    Ok(ctx
        .grpc
        .add_service(PaymentServiceServer::new(api::PaymentApi::new(payments))))
}
