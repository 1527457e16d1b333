//! The cart service: shopping carts in Redis, checkout.
//!
//! Its contract (`proto/shop/cart/v1`) and plumbing are in place; every RPC
//! answers UNIMPLEMENTED until the catalog, cart and inventory issue (#4) lands.

mod api;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::cart::v1::cart_service_server::CartServiceServer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-cart",
    grpc_port: 50055,
    metrics_port: 9105,
    migrator: &MIGRATOR,
};

pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    Ok(ctx
        .grpc
        .add_service(CartServiceServer::new(api::CartApi))
        .pending_note("it arrives with the catalog, cart and inventory issue (#4)"))
}
