//! Carts survive a Redis restart when Redis persists them (AOF), as
//! docs/deploy.md asks of the carts' Redis: a private `redis-server` with
//! `appendonly yes` is killed outright after a merge and started again on the
//! same data; the merged cart is all there. While it is down, the cart says
//! UNAVAILABLE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shopmesh_proto::shop::cart::v1::MergeCartsRequest;
use support::{Shop, add, cart_of, eventually, get, new_cart, quantities, stocked_products};
use tonic::Code;

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` of the test's own with AOF on; killed, and its folder
/// removed, when the guard drops, whatever the test did.
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("svc-cart-aof-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.launch();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on the guard's port and folder, and waits until it answers.
    fn launch(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if pong {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer", self.port);
    }

    /// Kills the server outright (SIGKILL: no shutdown save), and waits for it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_merged_cart_survives_a_redis_restart_with_aof() {
    let mut redis = PrivateRedis::start();
    let cart_redis = redis.url();
    // Sessions stay on the shared Redis (REDIS_URL); carts go to the private one.
    let shop = Shop::start_with(&[("CART_REDIS_URL", cart_redis.as_str())]).await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let ada = shop.shopper().await;

    let anonymous = new_cart(&mut client).await;
    client
        .add_cart_item(add(&anonymous, &products[0], 2))
        .await
        .unwrap();
    client
        .add_cart_item(add(&anonymous, &products[1], 5))
        .await
        .unwrap();
    client
        .add_cart_item(ada.request(add("mine", &products[1], 3)))
        .await
        .unwrap();
    let merged = cart_of(
        client
            .merge_carts(ada.request(MergeCartsRequest {
                anonymous_cart_id: anonymous.clone(),
            }))
            .await,
    );
    let expected = vec![(products[1].sku.clone(), 8), (products[0].sku.clone(), 2)];
    assert_eq!(quantities(&merged), expected);

    redis.kill();
    let err = client.get_cart(ada.request(get("mine"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    redis.launch();
    let after = eventually(30, "the cart Redis is back", || {
        let mut client = client.clone();
        let request = ada.request(get("mine"));
        async move { client.get_cart(request).await.ok() }
    })
    .await
    .into_inner()
    .cart
    .unwrap();
    assert_eq!(quantities(&after), expected);
    assert_eq!(after.id, merged.id);
    assert_eq!(after.create_time, merged.create_time);
    let err = client.get_cart(get(&anonymous)).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "the merged anonymous cart stays gone"
    );
}
