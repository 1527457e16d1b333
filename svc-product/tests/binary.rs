//! The real `svc-product` binary, as an operator runs it: a bad setting stops it
//! with a message naming the variable, and SIGTERM drains and exits cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use shopmesh_testkit::{
    assert_bad_setting_refused, free_port, service_command, sigterm, wait_until_serving,
};

const BINARY: &str = env!("CARGO_BIN_EXE_svc-product");

#[test]
fn a_bad_setting_stops_the_binary_naming_the_variable() {
    for (name, value) in [
        ("GRPC_ADDR", "localhost"),
        ("DB_MAX_CONNECTIONS", "lots"),
        ("LOG_FORMAT", "xml"),
    ] {
        let output = Command::new(BINARY)
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/never_used")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    let output = Command::new(BINARY)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
    // svc-product's own, before any connection.
    for bad in [
        ("PRODUCT_CACHE_TTL_SECONDS", "forever"),
        ("INVENTORY_GRPC_URL", "svc-inventory:50054"),
    ] {
        assert_bad_setting_refused(BINARY, &[], bad);
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let port = free_port();
    let mut child = service_command(BINARY, port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    wait_until_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30))
        .await
        .expect("svc-product became SERVING");

    sigterm(&child);
    // A hang guard, not a speed check: the drain bound is 3 s.
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
