//! The recommendation service: product recommendations.
//!
//! Its contract (`proto/shop/recommendation/v1`) and plumbing are in place; every RPC
//! answers UNIMPLEMENTED until the recommendations issue (#6) lands.

mod api;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::recommendation::v1::recommendation_service_server::RecommendationServiceServer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-recommendation",
    grpc_port: 50059,
    metrics_port: 9109,
    migrator: &MIGRATOR,
};

pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    Ok(ctx
        .grpc
        .add_service(RecommendationServiceServer::new(api::RecommendationApi))
        .pending_note("it arrives with the recommendations issue (#6)"))
}
