//! The real `svc-user` binary, as an operator runs it: a bad setting of its
//! own stops it before it connects anywhere, naming the variable.

use shopmesh_testkit::assert_bad_setting_refused;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-user");

#[test]
fn a_bad_user_setting_stops_the_binary_naming_the_variable() {
    for bad in [
        ("PROFILE_CACHE_TTL_SECONDS", "0"),
        ("PROFILE_CACHE_TTL_SECONDS", "a day"),
    ] {
        assert_bad_setting_refused(BINARY, &[], bad);
    }
}
