#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `svc-payment` binary, as an operator runs it: a bad payment
//! setting stops it naming the variable, and with good ones it serves and
//! exits cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use shopmesh_testkit::{
    assert_bad_setting_refused, free_port, service_command, sigterm, wait_until_serving,
};

const BINARY: &str = env!("CARGO_BIN_EXE_svc-payment");

fn service(port: u16) -> tokio::process::Command {
    let mut command = service_command(BINARY, port);
    command.env("SHUTDOWN_DRAIN_SECONDS", "5");
    command
}

#[test]
fn a_bad_payment_setting_stops_the_binary_naming_the_variable() {
    let http: &[(&str, &str)] = &[("PAYMENT_PROVIDER", "http")];
    for (settings, bad) in [
        (&[][..], ("PAYMENT_PROVIDER", "stripe")),
        (&[][..], ("PAYMENT_PROVIDER_TIMEOUT_MS", "0")),
        (http, ("PAYMENT_HTTP_BASE_URL", "payments.example/v1")),
    ] {
        assert_bad_setting_refused(BINARY, settings, bad);
    }
}

#[tokio::test]
async fn the_api_key_never_reaches_the_output() {
    let output = service(free_port())
        .env("PAYMENT_PROVIDER", "http")
        .env("PAYMENT_HTTP_BASE_URL", "ftp://provider.example")
        .env("PAYMENT_HTTP_API_KEY", "sk_live_must_not_print")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("PAYMENT_HTTP_BASE_URL"), "{said}");
    assert!(!said.contains("sk_live_must_not_print"), "{said}");
}

#[tokio::test]
async fn it_serves_and_exits_zero_on_sigterm() {
    let port = free_port();
    let mut child = service(port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60))
        .await
        .expect("svc-payment became SERVING");
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
