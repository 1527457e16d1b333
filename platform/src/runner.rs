//! The process plumbing of every shopmesh binary's `main`, written once: a bad
//! setting or command line exits with status 2 and a message naming it;
//! telemetry starts before any work; the work runs until SIGTERM/SIGINT
//! ([`shutdown_signal`]); a failure is logged once with its cause chain and
//! exits with status 1.
//!
//! ```ignore
//! let settings = match runner::settings_or_exit("gateway", GatewaySettings::from_env(&env)) {
//!     Ok(settings) => settings,
//!     Err(code) => return code,
//! };
//! runner::run("gateway", &settings.telemetry, |shutdown| async {
//!     Gateway::build(&settings).await?.serve(shutdown).await
//! })
//! .await
//! ```

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use crate::settings::{SettingsError, TelemetrySettings};
use crate::shutdown::shutdown_signal;

/// The exit status of a binary refused to start by its operator's input (a bad
/// setting or command line), as opposed to 1 for a failure while running.
const REFUSED: u8 = 2;

/// Resolves when the process is asked to stop ([`shutdown_signal`]): the
/// future a server stops accepting on and starts its drain.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The settings, or — for a bad one — `"<name>: <error naming the variable>"`
/// on stderr and the exit status 2 to return from `main`.
pub fn settings_or_exit<S>(name: &str, settings: Result<S, SettingsError>) -> Result<S, ExitCode> {
    settings.map_err(|err| {
        eprintln!("{name}: {err}");
        ExitCode::from(REFUSED)
    })
}

/// Prints `"<name>: unknown command "<command>"; usage: <usage>"` on stderr and
/// returns the exit status 2.
pub fn refuse_command(name: &str, command: &str, usage: &str) -> ExitCode {
    eprintln!("{name}: unknown command {command:?}; usage: {usage}");
    ExitCode::from(REFUSED)
}

/// Starts telemetry (exit status 2 if it cannot), then runs `work` with the
/// process's [`Shutdown`] signal: `work` serves until it resolves, then drains.
/// An error is logged once with its cause chain and exits with status 1.
pub async fn run<W, F>(name: &str, telemetry: &TelemetrySettings, work: W) -> ExitCode
where
    W: FnOnce(Shutdown) -> F,
    F: Future<Output = anyhow::Result<()>>,
{
    // Held to the end of `main`: dropping it flushes the pending spans.
    let _telemetry = match crate::telemetry::init(telemetry) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{name}: {err:#}");
            return ExitCode::from(REFUSED);
        }
    };
    match work(Box::pin(shutdown_signal())).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), service = name, "service failed");
            ExitCode::FAILURE
        }
    }
}
