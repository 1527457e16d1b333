//! svc-inventory: the inventory gRPC service (stock per SKU, reservations, stock change stream).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_inventory cargo run -p svc-inventory`,
//! or the whole platform with `make run`.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_inventory::SPEC, svc_inventory::build).await
}
