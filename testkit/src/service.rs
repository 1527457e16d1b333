//! A real service started in the test's process (`TestService`), or its binary
//! started as an operator runs it (`service_command`), and its metrics.

use std::future::Future;
use std::net::SocketAddr;

use shopmesh_platform::app::{Context, ServiceSettings, ServiceSpec};
use shopmesh_platform::grpc::GrpcServer;
use shopmesh_platform::settings::Env;
use sqlx::PgPool;

use crate::env::{INTERNAL_TOKEN, fresh_database_url, redis_url};

/// The sum of the samples of `metric` on `service`'s `/metrics` whose labels
/// include every one of `labels` (0 when there are none). Tests run many
/// services in one process, which share one recorder: the figures are the
/// process's.
pub async fn metric(service: &TestService, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(service.metrics_addr)
        .await
        .unwrap_or_else(|err| panic!("{}: {err}", service.metrics_addr));
    let request = "GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n";
    let _ = stream.write_all(request.as_bytes()).await;
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text).await;
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(name, value)| line.contains(&format!("{name}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A service running in this process on ephemeral ports, with its own
/// database when its spec has one.
pub struct TestService {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    db: Option<PgPool>,
    /// The service's database, e.g. to start it again on the same data
    /// (named even for a service without one, which ignores it).
    pub database_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestService {
    /// Starts the service as `main` would, with `extra` settings on top of the
    /// test defaults (fresh database, port 0, 2 s drain).
    pub async fn spawn<B, F>(
        spec: &'static ServiceSpec,
        extra: &[(&str, &str)],
        build: B,
    ) -> anyhow::Result<Self>
    where
        B: FnOnce(Context) -> F + Send + 'static,
        F: Future<Output = anyhow::Result<GrpcServer>> + Send,
    {
        let database_url = fresh_database_url();
        let mut env = Env::from_pairs([
            ("DATABASE_URL", database_url.as_str()),
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("SHUTDOWN_DRAIN_SECONDS", "2"),
            ("DB_MAX_CONNECTIONS", "5"),
            // Tests run many services and their clients on one test runtime,
            // where a late wake-up means a busy test, not an overloaded
            // service: only the in-flight limit guards them.
            ("OVERLOAD_LAG_TARGET_MS", "0"),
            ("REDIS_URL", redis_url().as_str()),
            ("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN),
        ]);
        if let Ok(brokers) = std::env::var("TEST_KAFKA_BROKERS") {
            env = env.with("KAFKA_BROKERS", brokers);
        }
        for (name, value) in extra {
            env = env.with(name, *value);
        }
        // A test may name the database itself, e.g. to restart on the same one.
        let database_url = env.raw("DATABASE_URL").unwrap_or(database_url);
        let settings = ServiceSettings::from_env(spec, &env)?;
        let running = shopmesh_platform::app::start(spec, env, settings, build).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (grpc_addr, metrics_addr) = (running.grpc_addr, running.metrics_addr);
        let task = tokio::spawn(running.serve(async {
            let _ = stopped.await;
        }));
        let db = match spec.migrator {
            Some(_) => Some(PgPool::connect(&database_url).await?),
            None => None,
        };
        Ok(Self {
            grpc_addr,
            metrics_addr,
            db,
            database_url,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A separate pool on the service's database, for assertions on rows;
    /// panics for a service without a database.
    pub fn db(&self) -> &PgPool {
        self.db
            .as_ref()
            .unwrap_or_else(|| panic!("this service has no database"))
    }

    /// `http://127.0.0.1:<port>`, for a tonic client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A connected channel to the service.
    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        Ok(tonic::transport::Endpoint::from_shared(self.endpoint())?
            .connect()
            .await?)
    }

    /// Triggers the same shutdown as SIGTERM and waits for the drain to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `endpoint` (`http://host:port`) until its overall gRPC health is SERVING,
/// for at most `timeout`; returns the connected channel.
pub async fn wait_until_serving(
    endpoint: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<tonic::transport::Channel> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let endpoint = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(channel) = endpoint.connect().await {
            let check = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if check.is_ok_and(|s| s.get_ref().status() == ServingStatus::Serving) {
                return Ok(channel);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "{} did not become SERVING within {timeout:?}",
        endpoint.uri()
    )
}

/// The service binary at `path` (`env!("CARGO_BIN_EXE_svc-x")`) as an operator
/// runs it, serving gRPC on 127.0.0.1:`port` with the test defaults: a fresh
/// database, the test Redis and broker, the test service token, a 3 s drain.
/// Output is captured and the process is killed if the command is dropped;
/// add or override settings with `.env(..)`.
pub fn service_command(path: &str, port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(path);
    command
        .env("DATABASE_URL", fresh_database_url())
        .env("GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("SHUTDOWN_DRAIN_SECONDS", "3")
        // A test machine runs many binaries at once on a few cores.
        .env("OVERLOAD_LAG_TARGET_MS", "0")
        .env("REDIS_URL", redis_url())
        .env("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Ok(brokers) = std::env::var("TEST_KAFKA_BROKERS") {
        command.env("KAFKA_BROKERS", brokers);
    }
    command
}

/// Runs `command`, which must fail to start, and returns what it printed
/// (stdout then stderr); panics if it exited successfully.
pub async fn refused_start(command: &mut tokio::process::Command) -> String {
    let output = command
        .output()
        .await
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "started although it should not: {said}"
    );
    said
}

/// Sends SIGTERM to `child`, as Kubernetes does to stop a pod.
pub fn sigterm(child: &tokio::process::Child) {
    let Some(pid) = child.id() else {
        panic!("the child has already exited");
    };
    let pid = pid.to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .is_ok_and(|status| status.success());
    assert!(sent, "kill -TERM {pid} failed");
}

/// Runs the service binary at `path` as an operator would with one bad
/// setting, `bad` (on top of `settings`), and a database nobody answers on,
/// and checks that it refuses to start with status 2 and a message naming the
/// variable. Settings are checked before any connection: one attempted first
/// would fail with status 1 instead. Returns what it printed on stderr.
pub fn assert_bad_setting_refused(
    path: &str,
    settings: &[(&str, &str)],
    bad: (&str, &str),
) -> String {
    let (name, value) = bad;
    let output = std::process::Command::new(path)
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/never_used")
        .env("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN)
        .envs(settings.iter().copied())
        .env(name, value)
        .output()
        .unwrap_or_else(|err| panic!("{path}: {err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
    assert!(stderr.contains(name), "{name}={value}: {stderr}");
    stderr.into_owned()
}

/// The `google.rpc.ErrorInfo` reason of `status` as it travels ("" when it
/// carries none), for tests that assert the exact string a client sees.
pub fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}
