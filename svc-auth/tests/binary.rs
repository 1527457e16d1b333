//! The real `svc-auth` binary, as an operator runs it: a bad svc-auth setting
//! stops it before it connects anywhere, with a message naming the variable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shopmesh_testkit::assert_bad_setting_refused;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-auth");

#[test]
fn a_bad_setting_stops_the_binary_naming_the_variable() {
    for (name, value) in [
        ("USER_GRPC_URL", "127.0.0.1:50052"),
        ("REFRESH_TOKEN_TTL_HOURS", "0"),
        ("SIGNING_KEY_ROTATION_HOURS", "monthly"),
        ("BOOTSTRAP_ADMIN_EMAILS", "root"),
        ("LOGIN_MAX_FAILURES_PER_CLIENT", "-1"),
    ] {
        assert_bad_setting_refused(BINARY, &[], (name, value));
    }
}
