//! gateway: the shopmesh REST edge (REST/JSON → gRPC) on :8080, metrics on :9100.
//! `cargo run -p gateway` serves; `cargo run -p gateway -- openapi` prints the
//! OpenAPI document. Settings: docs/conventions.md.

use std::process::ExitCode;

use gateway::Gateway;
use gateway::settings::GatewaySettings;
use shopmesh_platform::settings::Env;

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("openapi") => {
            return match gateway::openapi_json() {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("gateway: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(other) => {
            eprintln!("gateway: unknown command {other:?}; usage: gateway [openapi]");
            return ExitCode::from(2);
        }
    }
    let settings = match GatewaySettings::from_env(&Env::process()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("gateway: {err}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = match shopmesh_platform::telemetry::init(&settings.telemetry) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("gateway: {err:#}");
            return ExitCode::from(2);
        }
    };
    let result = match Gateway::build(&settings).await {
        Ok(gateway) => {
            gateway
                .serve(shopmesh_platform::shutdown::shutdown_signal())
                .await
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "gateway failed");
            ExitCode::FAILURE
        }
    }
}
