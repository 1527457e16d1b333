//! The order service: orders and the checkout saga.
//!
//! Its contract (`proto/shop/order/v1`) and plumbing are in place; every RPC
//! answers UNIMPLEMENTED until the checkout issue (#5) lands.

mod api;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::order::v1::order_service_server::OrderServiceServer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-order",
    grpc_port: 50056,
    metrics_port: 9106,
    migrator: &MIGRATOR,
};

pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    Ok(ctx
        .grpc
        .add_service(OrderServiceServer::new(api::OrderApi))
        .pending_note("it arrives with the checkout issue (#5)"))
}
