//! svc-recommendation: the recommendation gRPC service (product recommendations).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_recommendation cargo run -p svc-recommendation`,
//! or the whole platform with `make run`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_recommendation::SPEC, svc_recommendation::build).await
}
