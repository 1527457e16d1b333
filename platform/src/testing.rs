//! Test support shared by every service's tests: a fresh migrated database per
//! test on the real PostgreSQL server, and the real service started on port 0.

use std::future::Future;
use std::net::SocketAddr;

use sqlx::PgPool;

use crate::app::{Context, ServiceSettings, ServiceSpec};
use crate::grpc::GrpcServer;
use crate::settings::Env;

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
            ("REDIS_URL", redis_url().as_str()),
        ]);
        for (name, value) in extra {
            env = env.with(name, *value);
        }
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
