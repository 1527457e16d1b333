//! svc-order: the order gRPC service (orders and the checkout saga).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_order cargo run -p svc-order`,
//! or the whole platform with `make run`.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_order::SPEC, svc_order::build).await
}
