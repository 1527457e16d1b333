//! svc-recommendation: the recommendation gRPC service (similar products, bought
//! together, personal recommendations). Run it with
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_recommendation cargo run -p svc-recommendation`,
//! or the whole platform with `make run`.
//!
//! `svc-recommendation evaluate --data PATH [--tune]` prints the offline evaluation
//! of the algorithms on a MovieLens `.inter` file (docs/recommendations-evaluation.md)
//! and needs no service settings.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(exit) = svc_recommendation::evaluate::command(&args) {
        return exit;
    }
    shopmesh_platform::app::main(&svc_recommendation::SPEC, svc_recommendation::build).await
}
