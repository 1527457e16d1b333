//! svc-product: the catalog gRPC service (products, categories, search).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_product cargo run -p svc-product`,
//! or the whole platform with `make run`.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_product::SPEC, svc_product::build).await
}
