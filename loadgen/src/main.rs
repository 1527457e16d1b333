//! `loadgen`: open-loop load for shopmesh and its bare reference server.
//! `cargo run --release -p loadgen -- run --target grpc:get-product --steps 5k,10k,20k`;
//! `loadgen help` lists targets and options; `make load` runs the default plan.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match loadgen::cli::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("loadgen: {message}");
            return ExitCode::from(2);
        }
    };
    // A small fixed runtime: loadgen shares the machine with what it measures.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(command.workers())
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(loadgen::execute(command, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}
