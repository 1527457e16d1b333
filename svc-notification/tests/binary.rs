#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `svc-notification` binary, as an operator runs it: a bad setting
//! of its own stops it naming the variable (and never prints the SMS API
//! key), and SIGTERM ends open WatchMyNotifications streams at once and exits
//! cleanly.

use std::process::Stdio;
use std::time::{Duration, Instant};

use shopmesh_proto::shop::notification::v1::WatchMyNotificationsRequest;
use shopmesh_proto::shop::notification::v1::notification_service_client::NotificationServiceClient;
use shopmesh_testkit::{
    TestIdentity, assert_bad_setting_refused, free_port, fresh_database_url, service_command,
    sigterm, wait_until_serving,
};
use tonic::Code;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-notification");
/// Longer than the test waits: an exit before it proves the streams ended early.
const DRAIN_SECONDS: u64 = 60;
const SECRET_KEY: &str = "very-secret-sms-key";

fn service(port: u16, database_url: &str) -> tokio::process::Command {
    let mut command = service_command(BINARY, port);
    command
        .env("DATABASE_URL", database_url)
        .env("SHUTDOWN_DRAIN_SECONDS", DRAIN_SECONDS.to_string())
        .env("SMTP_URL", "log:")
        .env("USER_GRPC_URL", "http://127.0.0.1:9");
    command
}

#[tokio::test]
async fn a_bad_notification_setting_stops_the_binary_naming_the_variable() {
    for (name, value) in [
        ("SMTP_URL", "smtps://mail.example:465"),
        ("SMTP_FROM", "not an address"),
        ("SMS_PROVIDER_URL", "sms.example/v1"),
        ("USER_GRPC_URL", "user:50052"),
        ("NOTIFICATION_MAX_ATTEMPTS", "0"),
    ] {
        let settings = [("SMTP_URL", "log:"), ("SMS_PROVIDER_API_KEY", SECRET_KEY)];
        let said = assert_bad_setting_refused(BINARY, &settings, (name, value));
        assert!(
            !said.contains(SECRET_KEY),
            "the API key was printed: {said}"
        );
    }
    let output = service(free_port(), &fresh_database_url())
        .env("SMS_PROVIDER_URL", "http://127.0.0.1:9/v1/sms")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("SMS_PROVIDER_API_KEY"), "{said}");
}

#[tokio::test]
async fn sigterm_ends_open_watches_and_exits_zero() {
    let identity = TestIdentity::start().await.unwrap();
    let shopper = identity.signed_in(&[]).await.unwrap();
    let port = free_port();
    let mut child = service(port, &fresh_database_url())
        .env("AUTH_GRPC_URL", &identity.auth_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = wait_until_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60))
        .await
        .expect("svc-notification became SERVING");
    let mut stream = NotificationServiceClient::new(channel)
        .watch_my_notifications(shopper.request(WatchMyNotificationsRequest::default()))
        .await
        .unwrap()
        .into_inner();

    let sent = Instant::now();
    sigterm(&child);
    let end = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("the watch ends after SIGTERM")
        .unwrap_err();
    assert_eq!(
        end.code(),
        Code::Unavailable,
        "clients are told to reconnect"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits well before the drain bound")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(DRAIN_SECONDS));
}
