//! svc-notification: the notification gRPC service (email and SMS notifications from events).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_notification cargo run -p svc-notification`,
//! or the whole platform with `make run`.

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopmesh_platform::app::main(&svc_notification::SPEC, svc_notification::build).await
}
