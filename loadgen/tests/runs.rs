//! Short real runs of the loadgen binary: against the bare reference servers
//! (started here on port 0), with `--bare` (loadgen starts its own as a child
//! process), and against a server that never answers, for client-side
//! overflow. Counts only: nothing here depends on how fast the machine is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct Bare {
    http: SocketAddr,
    grpc: SocketAddr,
    _stop: watch::Sender<bool>,
}

async fn bare() -> Bare {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(loadgen::bare::serve(http, grpc, stopped));
    Bare {
        http: http_addr,
        grpc: grpc_addr,
        _stop: stop,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the loadgen binary; returns its JSON report and Markdown.
async fn loadgen(dir: &std::path::Path, args: &[&str]) -> (Value, String) {
    let (json, markdown) = (dir.join("report.json"), dir.join("report.md"));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&markdown)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let markdown = std::fs::read_to_string(markdown).unwrap();
    assert_eq!(stdout, markdown, "stdout is the Markdown report");
    let report = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (report, markdown)
}

fn only_step(target: &Value) -> &Value {
    let steps = target["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    &steps[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_reads_of_the_bare_servers_all_succeed() {
    let bare = bare().await;
    let dir = scratch("reads");
    let (http, grpc) = (
        format!("http://{}", bare.http),
        format!("http://{}", bare.grpc),
    );
    let (report, markdown) = loadgen(
        &dir,
        &[
            "--target",
            "rest:product,grpc:get-product",
            "--rate",
            "500",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--http-url",
            &http,
            "--grpc-url",
            &grpc,
        ],
    )
    .await;
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for (target, kind) in targets.iter().zip(["product", "GetProduct"]) {
        assert_eq!(target["system"], "real");
        let step = only_step(target);
        assert_eq!(step["rate"], 500.0);
        let kinds = step["kinds"].as_array().unwrap();
        assert_eq!(kinds.len(), 1);
        assert_eq!(kinds[0]["kind"], kind);
        for counts in [&kinds[0], &step["total"]] {
            assert_eq!(counts["offered"], 500, "{counts}");
            assert_eq!(counts["sent"], 500, "{counts}");
            assert_eq!(counts["ok"], 500, "{counts}");
            assert_eq!(counts["errors"], serde_json::json!({}), "{counts}");
            assert_eq!(counts["offered_per_s"], 500.0);
            for field in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
                assert!(
                    counts["latency_ok"][field].as_f64().unwrap() > 0.0,
                    "{field}"
                );
            }
            assert_eq!(counts["latency_all"]["count"], 500);
        }
        assert!(step["peak_rss_mib"]["loadgen"].as_f64().unwrap() > 0.0);
        assert!(step["lag"]["p99_ms"].is_number());
    }
    assert_eq!(report["plan"]["rates"], serde_json::json!([500.0]));
    for needle in [
        "### rest:product — real",
        "### grpc:get-product — real",
        "| rate/s | kind | offered/s | sent/s | goodput/s | errors | p50 | p90 | p99 | p99.9 | max | p99 all | lag p99 |",
        "| 500 | product | 500 | 500 |",
        "| 500 | GetProduct | 500 | 500 |",
        "| loadgen |",
    ] {
        assert!(markdown.contains(needle), "{needle:?} not in\n{markdown}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_runs_the_same_plan_as_a_child_process_and_reports_ratios() {
    let bare = bare().await;
    let dir = scratch("ratios");
    let pids = dir.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    std::fs::write(pids.join("tester.pid"), std::process::id().to_string()).unwrap();
    let http = format!("http://{}", bare.http);
    let (report, markdown) = loadgen(
        &dir,
        &[
            "--target",
            "rest:product",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--bare",
            "--http-url",
            &http,
            "--watch-pids-dir",
            pids.to_str().unwrap(),
        ],
    )
    .await;
    let targets = report["targets"].as_array().unwrap();
    let systems: Vec<&str> = targets
        .iter()
        .map(|t| t["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["real", "bare"]);
    for target in targets {
        let step = only_step(target);
        assert_eq!(step["total"]["ok"], 200, "{}", target["system"]);
        for process in ["loadgen", "loadgen-bare", "tester"] {
            assert!(
                step["peak_rss_mib"][process].as_f64().unwrap() > 0.0,
                "{process}"
            );
        }
    }
    let ratios = report["vs_bare"].as_array().unwrap();
    assert_eq!(ratios.len(), 1);
    assert_eq!(ratios[0]["target"], "rest:product");
    assert!(ratios[0]["goodput_ratio"].as_f64().unwrap() > 0.0);
    assert!(ratios[0]["p99_ratio"].as_f64().unwrap() > 0.0);
    assert!(markdown.contains("### Real over bare"), "{markdown}");
    assert!(markdown.contains("| rest:product | 200 |"), "{markdown}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Answers the product list (discovery) and 404s; never answers a product
/// read, so those requests pile up until they time out.
async fn stalling_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_until_a_product_read(socket));
        }
    });
    addr
}

async fn serve_until_a_product_read(mut socket: TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        let path = head.split_whitespace().nth(1).unwrap_or_default();
        let (status, body) = if path.starts_with("/v1/products?") {
            (
                "200 OK",
                r#"{"products":[{"id":"p1","sku":"S-1","name":"Stalled Kettle"}]}"#,
            )
        } else if path.starts_with("/v1/products/") {
            // Hold the connection without a word until the client gives up.
            let _ = socket.read(&mut chunk).await;
            return;
        } else {
            ("404 Not Found", "{}")
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if socket.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_beyond_max_in_flight_are_counted_as_client_overflow() {
    let addr = stalling_server().await;
    let dir = scratch("overflow");
    let http = format!("http://{addr}");
    // 100 arrivals in 0.5 s; the first 10 are admitted (4 on connections, 6
    // waiting for one) and time out after 2 s, after the step's last arrival:
    // every other arrival finds 10 in flight.
    let (report, markdown) = loadgen(
        &dir,
        &[
            "--target",
            "rest:product",
            "--rate",
            "200",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--connections",
            "4",
            "--max-in-flight",
            "10",
            "--timeout",
            "2s",
            "--http-url",
            &http,
        ],
    )
    .await;
    let total = &only_step(&report["targets"][0])["total"];
    assert_eq!(total["offered"], 100, "{total}");
    assert_eq!(total["sent"], 10, "{total}");
    assert_eq!(total["ok"], 0, "{total}");
    assert_eq!(
        total["errors"],
        serde_json::json!({"client_overflow": 90, "timeout": 10}),
        "{total}"
    );
    assert_eq!(total["latency_all"]["count"], 10);
    assert!(total["latency_ok"].is_null());
    assert!(
        markdown.contains("100.0 %: client_overflow 90, timeout 10"),
        "{markdown}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn non_loopback_targets_are_refused_without_allow_remote() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--target", "rest:product", "--rate", "1"])
        .args(["--http-url", "http://192.0.2.1:8080"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

#[tokio::test]
async fn a_plan_above_max_requests_is_refused_before_it_starts() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            "--target",
            "grpc:get-product",
            "--steps",
            "1000,2000",
        ])
        .args([
            "--duration",
            "10s",
            "--warmup",
            "0s",
            "--max-requests",
            "1000",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("30000 arrivals"), "{stderr}");
}
