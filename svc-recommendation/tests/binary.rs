//! The binary as an operator runs it: a bad setting of its own stops it
//! naming the variable, and `svc-recommendation evaluate` needs its data file
//! and says how to call it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shopmesh_testkit::assert_bad_setting_refused;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-recommendation");

#[test]
fn a_bad_recommendation_setting_stops_the_binary_naming_the_variable() {
    for bad in [
        ("RECOMMENDATION_TRAIN_INTERVAL_SECONDS", "hourly"),
        ("PRODUCT_GRPC_URL", "svc-product:50053"),
    ] {
        assert_bad_setting_refused(BINARY, &[], bad);
    }
}

#[tokio::test]
async fn evaluate_says_how_to_call_it() {
    let output = tokio::process::Command::new(BINARY)
        .arg("evaluate")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("usage: svc-recommendation evaluate --data"),
        "{said}"
    );

    let output = tokio::process::Command::new(BINARY)
        .args(["evaluate", "--data", "/nonexistent/ml-100k.inter"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("/nonexistent/ml-100k.inter"), "{said}");
}
