//! svc-cart: the cart gRPC service (shopping carts in Redis, checkout).
//! Run it with `REDIS_URL=redis://127.0.0.1:6379 cargo run -p svc-cart` (it has
//! no database), or the whole platform with `make run`.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_cart::SPEC, svc_cart::build).await
}
