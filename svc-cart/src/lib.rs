//! The cart service: shopping carts in Redis, for anonymous visitors and
//! signed-in shoppers, showing current prices and stock on every read.
//!
//! - What a cart is (which cart a call names, its lines, the limits): `cart`.
//! - Storage and atomicity: `store` (one Redis hash per cart, every change one
//!   Lua script, the scripts in `store::scripts`). Carts are the only copy of
//!   what a shopper picked: run their Redis with AOF persistence (`appendonly
//!   yes`, `appendfsync everysec`) and `maxmemory-policy noeviction`,
//!   optionally as a Redis of its own (`CART_REDIS_URL`); see docs/deploy.md,
//!   "Redis for carts".
//! - Current prices and availability: `catalog` (svc-product, svc-inventory)
//!   and `view`.
//! - Checkout: `checkout` (svc-user for the address, svc-order for the
//!   order and its saga, the attempt recorded per idempotency key) and the
//!   checkout attempts in `store`.
//! - `api` the gRPC surface, `error` what becomes which status, `metrics`,
//!   `settings`.
//!
//! Nothing is kept in PostgreSQL: the spec declares no database, so the
//! service reads no `DATABASE_URL` and opens no pool.

mod api;
mod cart;
mod catalog;
mod checkout;
mod error;
mod metrics;
mod settings;
mod store;
mod view;

pub use settings::CartSettings;

use anyhow::Context as _;
use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::cart::v1::cart_service_server::CartServiceServer;

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-cart",
    grpc_port: 50055,
    metrics_port: 9105,
    migrator: None,
    check_settings: |env| CartSettings::from_env(env).map(drop),
    extensions: &[],
};

/// Builds the service on a prepared context. The channels to svc-product,
/// svc-inventory, svc-user and svc-order connect lazily, so the cart starts
/// while they are down.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let settings = CartSettings::from_env(&ctx.env)?;
    let redis = match &settings.cart_redis {
        Some(cart_redis) => shopmesh_platform::redis::connect(cart_redis)
            .await
            .context("cannot reach the cart Redis at CART_REDIS_URL")?,
        None => ctx.redis.clone(),
    };
    let credentials = ServiceCredentials::new(SPEC.name, &ctx.settings.auth.internal_token)?;
    let catalog = catalog::Catalog::connect(&settings, credentials.clone())?;
    let ordering = checkout::Ordering::connect(&settings, credentials)?;
    let carts = store::Carts::new(redis, settings.idle_ttl);
    let api = api::CartApi::new(carts, catalog, ordering);
    Ok(ctx.grpc.add_service(CartServiceServer::new(api)))
}
