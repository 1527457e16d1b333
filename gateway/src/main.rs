//! gateway: the shopmesh REST edge (REST/JSON → gRPC) on :8080, metrics on :9100.
//! `cargo run -p gateway` serves; `cargo run -p gateway -- openapi` prints the
//! OpenAPI document. Settings: docs/conventions.md.

use std::process::ExitCode;

use gateway::Gateway;
use gateway::settings::GatewaySettings;
use shopmesh_platform::runner;
use shopmesh_platform::settings::Env;

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

const NAME: &str = "gateway";

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
                    eprintln!("{NAME}: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(other) => return runner::refuse_command(NAME, other, "gateway [openapi]"),
    }
    let settings = match runner::settings_or_exit(NAME, GatewaySettings::from_env(&Env::process()))
    {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    runner::run(NAME, &settings.telemetry, |shutdown| async {
        Gateway::build(&settings).await?.serve(shutdown).await
    })
    .await
}
