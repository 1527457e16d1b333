//! The auth service: identity: registration, login, tokens, sessions, signing keys.
//!
//! Its contract (`proto/shop/auth/v1`) and plumbing are in place; every RPC
//! answers UNIMPLEMENTED until the identity issue (#3) lands.

mod api;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::auth::v1::auth_service_server::AuthServiceServer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-auth",
    grpc_port: 50051,
    metrics_port: 9101,
    migrator: &MIGRATOR,
};

pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    Ok(ctx
        .grpc
        .add_service(AuthServiceServer::new(api::AuthApi))
        .pending_note("it arrives with the identity issue (#3)"))
}
