//! The user service: user profiles and addresses.
//!
//! Its contract (`proto/shop/user/v1`) and plumbing are in place; every RPC
//! answers UNIMPLEMENTED until the identity issue (#3) lands.

mod api;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::user::v1::user_service_server::UserServiceServer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-user",
    grpc_port: 50052,
    metrics_port: 9102,
    migrator: &MIGRATOR,
};

pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    Ok(ctx
        .grpc
        .add_service(UserServiceServer::new(api::UserApi))
        .pending_note("it arrives with the identity issue (#3)"))
}
