//! Redis that stops answering: with `REDIS_COMMAND_TIMEOUT_MS` every command
//! gives up instead of hanging (a session check would otherwise wait out a
//! whole Sentinel failover), and the client serves again once Redis is back.
//! Runs its own `redis-server` on a free loopback port, so it can freeze and
//! kill it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fred::prelude::*;
use shopmesh_platform::settings::{RedisSettings, Secret};
use shopmesh_testkit::free_port;

struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian: redis-server)");
        Self { port, child }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(port: u16) -> Client {
    let settings = RedisSettings {
        url: Secret::new(format!("redis://127.0.0.1:{port}")),
        command_timeout: Duration::from_millis(300),
    };
    for _ in 0..100 {
        if let Ok(client) = shopmesh_platform::redis::connect(&settings).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server on {port} did not answer");
}

/// At most this for a command that must give up on its own (the bound is 300 ms).
const GIVES_UP_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_frozen_redis_times_commands_out_and_serves_again_when_it_thaws() {
    let server = Server::start(free_port());
    let client = connect(server.port).await;
    let () = client.set("k", "v", None, None, false).await.unwrap();

    server.signal("-STOP");
    let frozen = tokio::time::timeout(GIVES_UP_WITHIN, client.get::<Option<String>, _>("k"))
        .await
        .expect("the command gave up by itself");
    let error = frozen.expect_err("a frozen Redis cannot answer");
    assert_eq!(*error.kind(), ErrorKind::Timeout, "{error}");

    server.signal("-CONT");
    let mut value = None;
    for _ in 0..100 {
        if let Ok(v) = client.get::<Option<String>, _>("k").await {
            value = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_dead_redis_fails_commands_fast_and_a_restarted_one_is_reconnected() {
    let port = free_port();
    let server = Server::start(port);
    let client = connect(port).await;
    let () = client.set("k", "before", None, None, false).await.unwrap();

    drop(server);
    let dead = tokio::time::timeout(GIVES_UP_WITHIN, client.get::<Option<String>, _>("k"))
        .await
        .expect("the command gave up by itself");
    assert!(dead.is_err(), "a dead Redis cannot answer");

    // Back on the same port (empty: no persistence): the client reconnects.
    let _server = Server::start(port);
    let mut answered = false;
    for _ in 0..200 {
        if client
            .set::<(), _, _>("k", "after", None, None, false)
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "the client never reconnected");
    let value: Option<String> = client.get("k").await.unwrap();
    assert_eq!(value.as_deref(), Some("after"));
}
