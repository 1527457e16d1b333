//! svc-auth: the auth gRPC service (identity: registration, login, tokens, sessions, signing keys).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_auth cargo run -p svc-auth`,
//! or the whole platform with `make run`.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    shopmesh_platform::app::main(&svc_auth::SPEC, svc_auth::build).await
}
