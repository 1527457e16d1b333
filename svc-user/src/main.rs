//! svc-user: the user gRPC service (user profiles and addresses).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_user cargo run -p svc-user`,
//! or the whole platform with `make run`.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_user::SPEC, svc_user::build).await
}
