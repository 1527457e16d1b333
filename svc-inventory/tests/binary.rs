//! The real `svc-inventory` binary, as an operator runs it: a bad setting of
//! its own stops it naming the variable, and SIGTERM ends open WatchStock
//! streams at once, so the drain is not held open by them, and exits cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use shopmesh_proto::shop::inventory::v1::WatchStockRequest;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_testkit::{
    assert_bad_setting_refused, free_port, service_command, sigterm, wait_until_serving,
};
use tonic::Code;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-inventory");
/// Longer than the test waits: an exit before it proves the streams ended early.
const DRAIN_SECONDS: u64 = 60;

fn service(port: u16) -> tokio::process::Command {
    let mut command = service_command(BINARY, port);
    command.env("SHUTDOWN_DRAIN_SECONDS", DRAIN_SECONDS.to_string());
    command
}

#[test]
fn a_bad_inventory_setting_stops_the_binary_naming_the_variable() {
    for (name, value) in [
        ("RESERVATION_SWEEP_SECONDS", "0"),
        ("SEED_DEMO_STOCK", "maybe"),
    ] {
        assert_bad_setting_refused(BINARY, &[], (name, value));
    }
}

#[tokio::test]
async fn sigterm_ends_open_watches_and_exits_zero_before_the_drain_bound() {
    let port = free_port();
    let mut child = service(port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = wait_until_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60))
        .await
        .expect("svc-inventory became SERVING");

    // The demo stock is seeded by default: watch one of its SKUs.
    let sku = shopmesh_demo::demo_catalog().products[0].sku.clone();
    let mut stream = InventoryServiceClient::new(channel)
        .watch_stock(WatchStockRequest {
            skus: vec![sku.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.message().await.unwrap().unwrap().stock.unwrap().sku,
        sku
    );

    let sent = Instant::now();
    sigterm(&child);
    let end = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("the watch ends after SIGTERM");
    let end = end.unwrap_err();
    assert_eq!(
        end.code(),
        Code::Unavailable,
        "clients are told to reconnect"
    );
    assert!(end.message().contains("shutting down"), "{end:?}");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits well before the drain bound")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(DRAIN_SECONDS));
}
