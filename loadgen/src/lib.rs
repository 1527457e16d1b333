//! loadgen: an open-loop load generator for shopmesh. Arrivals follow a fixed
//! (or stepped, or Poisson) rate whatever the server does, and latency runs
//! from each arrival's intended start, so a slow server shows as latency and
//! errors rather than as a politely slower load (no coordinated omission).
//! Targets are REST scenarios through the gateway and single gRPC methods;
//! results are HDR percentiles, goodput and error mix per step, kind and
//! target, with the peak memory of the platform's processes, as Markdown and
//! JSON. `loadgen bare` is a trivial reference server to compare against.
//! See docs/benchmarks.md ("Load generator"). `loadgen audit` checks, after a
//! fault run, that the services' databases agree with each other.

pub mod audit;
pub mod bare;
pub mod catalog;
pub mod cli;
pub mod engine;
pub mod grpc;
pub mod http1;
pub mod plan;
pub mod report;
pub mod rest;
pub mod rng;
pub mod rss;
pub mod run;
pub mod scenarios;
pub mod schedule;
pub mod shoppers;
pub mod stats;

use cli::Command;

/// Runs a parsed command to its end.
pub async fn execute(command: Command, args: Vec<String>) -> anyhow::Result<()> {
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Command::Bare(options) => {
            bare::main(options.http, options.grpc, options.exit_on_stdin_eof).await
        }
        Command::Audit(options) => audit::main(&options).await,
        Command::Run(options) => {
            let report = run::run(&options, args).await?;
            run::write_outputs(&options, &report)
        }
    }
}
