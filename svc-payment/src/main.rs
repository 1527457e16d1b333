//! svc-payment: the payment gRPC service (payments through provider adapters).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_payment cargo run -p svc-payment`,
//! or the whole platform with `make run`.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_payment::SPEC, svc_payment::build).await
}
