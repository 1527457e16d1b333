//! svc-recommendation: the recommendation gRPC service (similar products, bought
//! together, personal recommendations). Run it with
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_recommendation cargo run -p svc-recommendation`,
//! or the whole platform with `make run`.
//!
//! `svc-recommendation evaluate --data PATH [--tune]` prints the offline evaluation
//! of the algorithms on a MovieLens `.inter` file (docs/recommendations-evaluation.md)
//! and needs no service settings.

use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("evaluate") {
        return evaluate(&args[1..]);
    }
    shopmesh_platform::app::main(&svc_recommendation::SPEC, svc_recommendation::build).await
}

fn evaluate(args: &[String]) -> ExitCode {
    const USAGE: &str =
        "usage: svc-recommendation evaluate --data <path of a .inter file> [--tune]";
    let (mut data, mut tune) = (None, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next().map(PathBuf::from),
            "--tune" => tune = true,
            other => {
                eprintln!("svc-recommendation evaluate: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(data) = data else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match svc_recommendation::evaluate::run(&data, tune) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("svc-recommendation evaluate: {err:#}");
            ExitCode::FAILURE
        }
    }
}
