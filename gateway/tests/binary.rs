//! The real `gateway` binary, as an operator runs it: a bad setting or an
//! unknown command stops it with status 2, naming what was wrong, before it
//! connects to anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shopmesh_testkit::assert_bad_setting_refused;

const BINARY: &str = env!("CARGO_BIN_EXE_gateway");

#[test]
fn a_bad_setting_stops_the_binary_naming_the_variable() {
    for (name, value) in [
        ("REQUEST_TIMEOUT_SECONDS", "abc"),
        ("TRUSTED_PROXY_HOPS", "abc"),
        ("BODY_LIMIT_BYTES", "12"),
        ("PRODUCT_GRPC_URL", "svc-product:50053"),
        ("CORS_ALLOWED_ORIGINS", "shop.example.com"),
        // Checked when telemetry starts, not when the settings are read.
        ("RUST_LOG", "gateway=loud"),
    ] {
        let stderr = assert_bad_setting_refused(BINARY, &[], (name, value));
        assert!(stderr.starts_with("gateway: "), "{name}={value}: {stderr}");
    }
}

#[test]
fn an_unknown_command_stops_the_binary_with_its_usage() {
    let output = std::process::Command::new(BINARY)
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown command \"serve\"; usage: gateway [openapi]"),
        "{stderr}"
    );
}
