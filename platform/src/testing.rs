//! Test support shared by every service's tests: a fresh migrated database per
//! test on the real PostgreSQL server, and the real service started on port 0.

use std::future::Future;
use std::net::SocketAddr;

use sqlx::PgPool;

use crate::app::{Context, ServiceSettings, ServiceSpec};
use crate::grpc::GrpcServer;
use crate::settings::Env;

/// The service credential every test service accepts.
pub const INTERNAL_TOKEN: &str = "test-internal-service-token";

/// Prefix of every database a test creates; `make test` drops leftovers.
pub const TEST_DATABASE_PREFIX: &str = "shopmesh_test_";

/// The PostgreSQL server tests run against (`TEST_DATABASE_URL`, any database on it).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis tests run against (`TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The Kafka-protocol broker tests run against: `TEST_KAFKA_BROKERS`, which
/// `make test` always sets. Panics when unset, so Kafka tests fail loudly
/// instead of skipping; run them through `scripts/test.sh`, or start a broker
/// (`eval "$(scripts/infra.sh kafka)"`) and export `TEST_KAFKA_BROKERS=$KAFKA_BROKERS`.
pub fn kafka_brokers() -> String {
    match std::env::var("TEST_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => panic!(
            "TEST_KAFKA_BROKERS is not set: run `make test`, or start a broker with \
             `eval \"$(scripts/infra.sh kafka)\"` and export TEST_KAFKA_BROKERS=$KAFKA_BROKERS"
        ),
    }
}

/// The events about `key` (the record key: the aggregate id) on `topic`, read
/// from the start of every partition, once at least `count` have arrived;
/// panics after 30 s naming what did arrive.
pub async fn wait_for_events(
    topic: &str,
    key: &str,
    count: usize,
) -> Vec<crate::events::EventEnvelope> {
    use crate::events::EnvelopeExt as _;
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

    let brokers = kafka_brokers();
    let settings = crate::events::EventsSettings::for_brokers(&brokers, "test");
    // Created here if the service has not yet (the same settings: idempotent).
    crate::events::ensure_topics(&settings, &[topic])
        .await
        .unwrap_or_else(|err| panic!("creating {topic}: {err}"));
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set(
            "group.id",
            format!("test-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|err| panic!("a Kafka consumer for {topic}: {err}"));
    let mut assignment = TopicPartitionList::new();
    for partition in 0..settings.topic_partitions {
        let _ = assignment.add_partition_offset(topic, partition, Offset::Beginning);
    }
    let _ = consumer.assign(&assignment);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut found = Vec::new();
    while found.len() < count {
        let Ok(received) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            let types: Vec<&str> = found
                .iter()
                .map(|e: &crate::events::EventEnvelope| e.event_type.as_str())
                .collect();
            panic!(
                "{topic}: {} of {count} events for {key} arrived: {types:?}",
                found.len()
            );
        };
        let Ok(message) = received else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        if message.key() == Some(key.as_bytes())
            && let Some(Ok(envelope)) = message
                .payload()
                .map(crate::events::EventEnvelope::decode_record)
        {
            found.push(envelope);
        }
    }
    found
}

/// Produces `envelope` to `topic`, keyed by its aggregate id, as the outbox
/// relay would (the same event twice is a redelivery).
pub async fn produce_event(topic: &str, envelope: &crate::events::EventEnvelope) {
    produce_event_on(&kafka_brokers(), topic, envelope).await;
}

/// [`produce_event`] to the broker at `brokers` (e.g. a [`TestBroker`]).
pub async fn produce_event_on(brokers: &str, topic: &str, envelope: &crate::events::EventEnvelope) {
    use prost::Message as _;
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap_or_else(|err| panic!("a Kafka producer: {err}"));
    producer
        .send(
            FutureRecord::to(topic)
                .key(&envelope.aggregate_id)
                .payload(&envelope.encode_to_vec()),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("producing to {topic}: {err}"));
}

/// Commits the end of every partition of `topics` (created if missing) for
/// consumer `group`, so a service started in that group consumes what is
/// produced from now on instead of every earlier test's events (a new group
/// reads from the earliest offset otherwise).
pub async fn skip_to_end(group: &str, topics: &[&str]) {
    skip_to_end_on(&kafka_brokers(), group, topics).await;
}

/// [`skip_to_end`] on the broker at `brokers` (e.g. a [`TestBroker`]).
pub async fn skip_to_end_on(brokers: &str, group: &str, topics: &[&str]) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let brokers = brokers.to_owned();
    let settings = crate::events::EventsSettings::for_brokers(&brokers, "test");
    crate::events::ensure_topics(&settings, topics)
        .await
        .unwrap_or_else(|err| panic!("creating {topics:?}: {err}"));
    let group = group.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let committed = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|err| err.to_string())?;
        let mut ends = TopicPartitionList::new();
        for topic in &topics {
            for partition in 0..settings.topic_partitions {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition, std::time::Duration::from_secs(10))
                    .map_err(|err| format!("{topic}/{partition}: {err}"))?;
                ends.add_partition_offset(topic, partition, Offset::Offset(high))
                    .map_err(|err| err.to_string())?;
            }
        }
        consumer
            .commit(&ends, CommitMode::Sync)
            .map_err(|err| err.to_string())
    })
    .await;
    match committed {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("skipping to the end of the topics: {err}"),
        Err(err) => panic!("skipping to the end of the topics: {err}"),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most 30 s;
/// panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

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

/// A URL naming a brand-new, not yet existing database on the test server.
pub fn fresh_database_url() -> String {
    let server = server_url();
    let base = match server.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &server[..slash],
        _ => server.as_str(),
    };
    let query = server.find('?').map(|q| &server[q..]).unwrap_or_default();
    format!(
        "{base}/{TEST_DATABASE_PREFIX}{}{query}",
        uuid::Uuid::now_v7().simple()
    )
}

/// A service running in this process on ephemeral ports with its own database.
pub struct TestService {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// A separate pool on the service's database, for assertions on rows.
    pub db: PgPool,
    /// The service's database, e.g. to start it again on the same data.
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
        let running = crate::app::start(spec, env, settings, build).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (grpc_addr, metrics_addr) = (running.grpc_addr, running.metrics_addr);
        let task = tokio::spawn(running.serve(async {
            let _ = stopped.await;
        }));
        let db = PgPool::connect(&database_url).await?;
        Ok(Self {
            grpc_addr,
            metrics_addr,
            db,
            database_url,
            stop: Some(stop),
            task: Some(task),
        })
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

/// A stand-in identity provider for tests of services other than svc-auth: it
/// publishes one signing key over the real `AuthService.GetJwks` RPC, and mints
/// access tokens for sessions it opens in the real Redis.
pub struct TestIdentity {
    pub key: crate::auth::SigningKey,
    /// Point a service's (or the gateway's) `AUTH_GRPC_URL` here.
    pub auth_url: String,
    pub sessions: crate::auth::SessionStore,
    server: tokio::task::JoinHandle<()>,
}

struct JwksOnly(crate::auth::Jwk);

#[tonic::async_trait]
impl shopmesh_proto::shop::auth::v1::auth_service_server::AuthService for JwksOnly {
    async fn get_jwks(
        &self,
        _request: tonic::Request<shopmesh_proto::shop::auth::v1::GetJwksRequest>,
    ) -> Result<tonic::Response<shopmesh_proto::shop::auth::v1::GetJwksResponse>, tonic::Status>
    {
        let jwk = &self.0;
        Ok(tonic::Response::new(
            shopmesh_proto::shop::auth::v1::GetJwksResponse {
                keys: vec![shopmesh_proto::shop::auth::v1::Jwk {
                    kty: jwk.kty.clone(),
                    crv: jwk.crv.clone(),
                    x: jwk.x.clone(),
                    kid: jwk.kid.clone(),
                    alg: jwk.alg.clone(),
                    r#use: jwk.key_use.clone(),
                }],
            },
        ))
    }
}

/// Issuer and audience every test token carries (the settings' defaults).
pub const TEST_ISSUER: &str = "shopmesh";

impl TestIdentity {
    pub async fn start() -> anyhow::Result<Self> {
        use shopmesh_proto::shop::auth::v1::auth_service_server::AuthServiceServer;
        let key =
            crate::auth::SigningKey::generate(format!("test-{}", uuid::Uuid::now_v7().simple()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let auth_url = format!("http://{}", listener.local_addr()?);
        let service = AuthServiceServer::new(JwksOnly(key.public_jwk()));
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        let redis = crate::redis::connect(&crate::settings::RedisSettings::from_env(
            &Env::process().with("REDIS_URL", redis_url()),
        )?)
        .await?;
        Ok(Self {
            key,
            auth_url,
            sessions: crate::auth::SessionStore::new(redis),
            server,
        })
    }

    /// Claims for a 15-minute token of `user` in `session`.
    pub fn claims(
        &self,
        user: uuid::Uuid,
        session: uuid::Uuid,
        roles: &[&str],
    ) -> crate::auth::AccessClaims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        crate::auth::AccessClaims {
            sub: user.to_string(),
            sid: session.to_string(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            iss: TEST_ISSUER.to_owned(),
            aud: TEST_ISSUER.to_owned(),
            iat: now,
            nbf: now,
            exp: now + 900,
            jti: uuid::Uuid::now_v7().to_string(),
        }
    }

    /// Opens a live session for a new user and returns `(user id, session id, token)`.
    pub async fn sign_in(
        &self,
        roles: &[&str],
    ) -> anyhow::Result<(uuid::Uuid, uuid::Uuid, String)> {
        let (user, session) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        self.sessions
            .open(session, user, std::time::Duration::from_secs(3600))
            .await?;
        let token = self.key.sign(&self.claims(user, session, roles))?;
        Ok((user, session, token))
    }
}

impl Drop for TestIdentity {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `message` with `authorization: Bearer <token>`, as the gateway forwards it.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
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

/// A local port nothing listens on at the moment of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("no free local port: {err}"))
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

/// The tansu broker binary: `tansu` on `PATH`, else `$CARGO_HOME/bin/tansu`
/// or `~/.cargo/bin/tansu` (where `scripts/infra.sh kafka` installs it).
pub fn tansu_binary() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo"))
        });
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin").join("tansu")))
        .find(|candidate| candidate.is_file())
}

/// A local port for a server a test stops and starts again: picked below the
/// kernel's ephemeral range, so no outgoing connection and no `free_port()`
/// of another test takes it while the server is down.
fn restartable_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    for _ in 0..1000 {
        let random = (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        let port = low + random;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free local port in {low}..{high}")
}

/// A private Kafka-protocol broker (tansu) on a port of its own, for a test
/// that stops and restarts its broker: the shared one other tests use
/// (`TEST_KAFKA_BROKERS`) is never touched. Killed, and its data deleted, when
/// dropped.
///
/// Its storage is SQLite in a temporary folder of its own, so like a Kafka
/// broker it keeps its topics, records, consumer group offsets and producer
/// state when killed and started again.
pub struct TestBroker {
    port: u16,
    /// The broker's working directory: `tansu.db` (and its WAL) and `tansu.log`.
    dir: std::path::PathBuf,
    process: Option<tokio::process::Child>,
}

impl TestBroker {
    /// Starts a broker on a free port and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("shopmesh-tansu-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        // tansu loads a .env from its working directory or the nearest parent
        // folder that has one: this empty one ends the search.
        std::fs::write(dir.join(".env"), "")?;
        let mut broker = Self {
            port: restartable_port(),
            dir,
            process: None,
        };
        broker.restart().await?;
        Ok(broker)
    }

    /// `127.0.0.1:<port>`, for `KAFKA_BROKERS`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Client settings for this broker, with every default.
    pub fn settings(&self) -> crate::events::EventsSettings {
        crate::events::EventsSettings::for_brokers(&self.brokers(), "test-broker")
    }

    /// Kills the broker (SIGKILL: no clean shutdown, as a crashed or
    /// unplugged broker) and waits until the process is gone.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
            let _ = process.wait().await;
        }
    }

    /// Starts the broker (again) on the same port and with the same data, and
    /// waits until it listens. A no-op when it runs.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let Some(binary) = tansu_binary() else {
            anyhow::bail!(
                "the tansu broker is not installed (not on PATH nor in ~/.cargo/bin): \
                 `scripts/infra.sh kafka` installs it"
            );
        };
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // TEST_TANSU_LOG=<file>: the broker's output appended there instead
        // (kept after the test, for debugging).
        let log_path = std::env::var_os("TEST_TANSU_LOG")
            .map_or_else(|| self.dir.join("tansu.log"), std::path::PathBuf::from);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut process = tokio::process::Command::new(binary)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // A sqlite:// path is relative to the working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = process.try_wait()? {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last: Vec<&str> = output.lines().rev().take(10).collect();
                anyhow::bail!(
                    "tansu exited at start ({status}); is port {} taken, or is it a build without \
                     the SQLite engine (`scripts/infra.sh kafka` reinstalls it)? Its last lines:\n{}",
                    self.port,
                    last.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = process.start_kill();
                anyhow::bail!("tansu did not listen on port {} within 60 s", self.port);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.process = Some(process);
        Ok(())
    }

    /// Creates `topics` and their `.dlq` topics as the services do at start
    /// ([`crate::events::ensure_topics`]), retrying for up to 60 s while the
    /// broker is coming up.
    pub async fn create_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let settings = self.settings();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match crate::events::ensure_topics(&settings, topics).await {
                Ok(()) => return Ok(()),
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.into()),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
        }
        // The killed broker may still hold the files open: harmless on Linux.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One record as read back from a topic.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Headers in record order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The key as text (`""` when absent or not UTF-8).
    pub fn key(&self) -> &str {
        self.key
            .as_deref()
            .and_then(|key| std::str::from_utf8(key).ok())
            .unwrap_or_default()
    }

    /// The first header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok())
    }

    /// The value as an event envelope, if it is one.
    pub fn envelope(&self) -> Option<crate::events::EventEnvelope> {
        use crate::events::EnvelopeExt as _;
        crate::events::EventEnvelope::decode_record(self.value.as_deref()?).ok()
    }
}

/// Every record of `topic` on `brokers`: each partition read from its
/// beginning to its end as reported when called, then on until nothing more
/// comes for a second (tansu 0.6 reports as a partition's end the last record
/// batch's base offset + 1, before the batch's other records). In partition
/// then offset order, so a key's records come in the order they were appended.
/// Errors when the topic does not exist or the broker does not answer; reads
/// for at most 30 s.
pub async fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::{Headers as _, Message as _};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::{Duration, Instant};

    const TIMEOUT: Duration = Duration::from_secs(10);
    const QUIET: Duration = Duration::from_secs(1);
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Record>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set(
                "group.id",
                format!("test-reader-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(
            !partitions.is_empty(),
            "topic {topic} does not exist on {brokers}"
        );
        let mut assignment = TopicPartitionList::new();
        // Per partition, the offset it must at least be read to.
        let mut ends = std::collections::HashMap::new();
        for partition in partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, partition, TIMEOUT)?;
            assignment.add_partition_offset(&topic, partition, Offset::Offset(low))?;
            if low < high {
                ends.insert(partition, high);
            }
        }
        consumer.assign(&assignment)?;
        let mut records: std::collections::BTreeMap<(i32, i64), Record> = Default::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_seen = Instant::now();
        while !ends.is_empty() || last_seen.elapsed() < QUIET {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{topic}: partitions {:?} not read to their end within 30 s",
                ends.keys().collect::<Vec<_>>()
            );
            let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = polled?;
            last_seen = Instant::now();
            let partition = message.partition();
            if ends
                .get(&partition)
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&partition);
            }
            records.insert(
                (partition, message.offset()),
                Record {
                    partition,
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                },
            );
        }
        Ok(records.into_values().collect())
    })
    .await?
}
