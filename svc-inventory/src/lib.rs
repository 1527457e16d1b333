//! The inventory service: stock per SKU, reservations, stock change stream.
//!
//! Its contract (`proto/shop/inventory/v1`) and plumbing are in place; every RPC
//! answers UNIMPLEMENTED until the catalog, cart and inventory issue (#4) lands.

mod api;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::inventory::v1::inventory_service_server::InventoryServiceServer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-inventory",
    grpc_port: 50054,
    metrics_port: 9104,
    migrator: &MIGRATOR,
};

pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    Ok(ctx
        .grpc
        .add_service(InventoryServiceServer::new(api::InventoryApi))
        .pending_note("it arrives with the catalog, cart and inventory issue (#4)"))
}
