//! The real `svc-cart` binary, as an operator runs it: a bad cart setting
//! stops it naming the variable; it starts and serves while svc-product and
//! svc-inventory, svc-user and svc-order are down (their channels connect
//! lazily; Checkout says UNAVAILABLE), and SIGTERM drains and exits cleanly.
//! It has no database: it runs without `DATABASE_URL`, and `migrate` has
//! nothing to do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use shopmesh_proto::shop::cart::v1::cart_service_client::CartServiceClient;
use shopmesh_proto::shop::cart::v1::{CheckoutRequest, CreateCartRequest};
use shopmesh_proto::shop::payment::v1::PaymentMethod;
use shopmesh_proto::shop::payment::v1::payment_method::Method;
use shopmesh_testkit::{
    INTERNAL_TOKEN, NOWHERE, TestIdentity, assert_bad_setting_refused, free_port, service_command,
    sigterm, wait_until_serving,
};
use tonic::Code;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-cart");
fn service(port: u16) -> tokio::process::Command {
    let mut command = service_command(BINARY, port);
    command
        .env_remove("DATABASE_URL")
        .env("SHUTDOWN_DRAIN_SECONDS", "3")
        .env("PRODUCT_GRPC_URL", NOWHERE)
        .env("INVENTORY_GRPC_URL", NOWHERE)
        .env("USER_GRPC_URL", NOWHERE)
        .env("ORDER_GRPC_URL", NOWHERE);
    command
}

#[test]
fn a_bad_cart_setting_stops_the_binary_naming_the_variable() {
    for (name, value) in [
        ("CART_IDLE_TTL_SECONDS", "0"),
        ("PRODUCT_GRPC_URL", "svc-product:50053"),
        ("ORDER_GRPC_URL", "svc-order:50056"),
        ("CART_REDIS_URL", "http://carts:6379"),
    ] {
        assert_bad_setting_refused(BINARY, &[], (name, value));
    }
}

#[test]
fn migrate_has_nothing_to_do_without_a_database() {
    let output = std::process::Command::new(BINARY)
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("nothing to migrate"), "{said}");
}

#[tokio::test]
async fn it_serves_without_its_dependencies_and_drains_on_sigterm() {
    let identity = TestIdentity::start().await.unwrap();
    let shopper = identity.signed_in(&[]).await.unwrap();
    let port = free_port();
    let mut child = service(port)
        .env("AUTH_GRPC_URL", &identity.auth_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = wait_until_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60))
        .await
        .expect("svc-cart became SERVING");

    let mut client = CartServiceClient::new(channel);
    let cart = client
        .create_cart(CreateCartRequest {})
        .await
        .unwrap()
        .into_inner()
        .cart
        .unwrap();
    assert!(cart.lines.is_empty());
    let err = client
        .checkout(shopper.request(CheckoutRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A valid request reads the cart (empty, so no dependency is needed).
    let err = client
        .checkout(shopper.request(CheckoutRequest {
            idempotency_key: "k1".into(),
            shipping_address_id: "0190b4a0-0000-7000-8000-000000000001".into(),
            payment_method: Some(PaymentMethod {
                method: Some(Method::TestCardNumber("4242424242424242".into())),
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    sigterm(&child);
    // A hang guard, not a speed check: the drain bound is 3 s.
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
