//! The binary as an operator runs it: `svc-recommendation evaluate` needs its
//! data file and says how to call it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

const BINARY: &str = env!("CARGO_BIN_EXE_svc-recommendation");

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
