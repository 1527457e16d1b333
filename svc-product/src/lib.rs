//! The catalog service: products and the category tree in PostgreSQL, seeded with
//! a deterministic demo catalog on first start.

mod api;
mod catalog;
pub use store::seed_if_empty;
mod store;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::product::v1::product_service_server::ProductServiceServer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-product",
    grpc_port: 50053,
    metrics_port: 9103,
    migrator: &MIGRATOR,
};

/// Builds the service on a prepared context: seeds the demo catalog when asked
/// (`SEED_DEMO_CATALOG`, default true) and the catalog is empty.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    if ctx.env.or("SEED_DEMO_CATALOG", true)? {
        store::seed_if_empty(&ctx.db, &shopmesh_demo::demo_catalog()).await?;
    }
    let api = api::ProductApi::new(store::Store::new(ctx.db));
    Ok(ctx
        .grpc
        .add_service(ProductServiceServer::new(api))
        .pending_note("search and admin writes arrive with the catalog issue (#4)"))
}
