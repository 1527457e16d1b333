//! The life of a service binary, identical for all nine: read settings, start
//! telemetry and metrics, connect and migrate the database, build the gRPC
//! services, serve until SIGTERM/SIGINT, drain.
//!
//! A service crate provides a [`ServiceSpec`] and an async `build` function from
//! a [`Context`] to a [`GrpcServer`] with its services added; its `main.rs` is
//! one call to [`main`]. Tests call the same `build` through `testing::spawn`.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use std::sync::Arc;

use crate::auth::{AccessControl, GrpcKeySource, SessionStore, TokenVerifier};
use crate::grpc::GrpcServer;
use crate::settings::{
    AuthSettings, DatabaseSettings, Env, RedisSettings, SettingsError, TelemetrySettings,
    listen_addr,
};

/// What makes one service different from another at start-up.
#[derive(Debug)]
pub struct ServiceSpec {
    /// Binary name, e.g. `svc-product`.
    pub name: &'static str,
    pub grpc_port: u16,
    pub metrics_port: u16,
    /// The service's migrations (`sqlx::migrate!()` in the service crate).
    pub migrator: &'static Migrator,
}

/// Settings every service has.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub database: DatabaseSettings,
    pub drain: Duration,
    pub telemetry: TelemetrySettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
}

impl ServiceSettings {
    pub fn from_env(spec: &ServiceSpec, env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            grpc_addr: listen_addr(env, "GRPC_ADDR", spec.grpc_port)?,
            metrics_addr: listen_addr(env, "METRICS_ADDR", spec.metrics_port)?,
            database: DatabaseSettings::from_env(env)?,
            drain: env.seconds("SHUTDOWN_DRAIN_SECONDS", 15)?,
            telemetry: TelemetrySettings::from_env(env, spec.name)?,
            redis: RedisSettings::from_env(env)?,
            auth: AuthSettings::from_env(env)?,
        })
    }
}

/// What a service's `build` function receives.
pub struct Context {
    /// Where service-specific settings are read from (the process env, or a test map).
    pub env: Env,
    pub settings: ServiceSettings,
    /// The service's own database, migrated.
    pub db: PgPool,
    /// The bound gRPC server (access control already set); `build` adds its
    /// services and returns it.
    pub grpc: GrpcServer,
    /// Redis, for sessions and whatever else the service keeps there.
    pub redis: fred::prelude::Client,
    /// The access rules and token verifier the server enforces.
    pub access: AccessControl,
}

/// Connects the database and binds the gRPC listener: everything `build` needs.
pub async fn prepare(
    spec: &ServiceSpec,
    env: Env,
    settings: ServiceSettings,
) -> anyhow::Result<Context> {
    let auth = &settings.auth;
    let redis = crate::redis::connect(&settings.redis).await?;
    let db = crate::db::connect_and_migrate(&settings.database, spec.migrator).await?;
    crate::metrics::report_pool(db.clone());
    let verifier = TokenVerifier::new(
        Arc::new(GrpcKeySource::new(&auth.auth_url)?),
        SessionStore::new(redis.clone()),
        &auth.issuer,
        &auth.audience,
    );
    let access = AccessControl::new(Arc::new(verifier), auth.internal_token.clone())?;
    let grpc = GrpcServer::bind(settings.grpc_addr, settings.drain)
        .await?
        .access_control(access.clone());
    Ok(Context {
        env,
        settings,
        db,
        grpc,
        redis,
        access,
    })
}

/// The whole `main` of a service binary.
///
/// `svc-x` serves; `svc-x migrate` applies the migrations and exits (for a
/// deployment's migration job). Settings errors exit with status 2 and a message
/// naming the variable.
pub async fn main<B, F>(spec: &'static ServiceSpec, build: B) -> ExitCode
where
    B: FnOnce(Context) -> F,
    F: Future<Output = anyhow::Result<GrpcServer>>,
{
    let env = Env::process();
    let settings = match ServiceSettings::from_env(spec, &env) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{}: {err}", spec.name);
            return ExitCode::from(2);
        }
    };
    let _telemetry = match crate::telemetry::init(&settings.telemetry) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{}: {err:#}", spec.name);
            return ExitCode::from(2);
        }
    };
    let migrate_only = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("migrate") => true,
        Some(other) => {
            eprintln!(
                "{}: unknown command {other:?}; usage: {} [migrate]",
                spec.name, spec.name
            );
            return ExitCode::from(2);
        }
    };
    let result = if migrate_only {
        crate::db::connect_and_migrate(&settings.database, spec.migrator)
            .await
            .map(|_| tracing::info!(service = spec.name, "migrations applied"))
    } else {
        match start(spec, env, settings, build).await {
            Ok(running) => running.serve(crate::shutdown::shutdown_signal()).await,
            Err(err) => Err(err),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(
                error = format!("{err:#}"),
                service = spec.name,
                "service failed"
            );
            ExitCode::FAILURE
        }
    }
}

/// A service with its listeners bound and its services built, not yet serving.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    grpc: GrpcServer,
    metrics_listener: tokio::net::TcpListener,
    db: PgPool,
}

/// Binds the listeners, connects and migrates the database and builds the services.
pub async fn start<B, F>(
    spec: &ServiceSpec,
    env: Env,
    settings: ServiceSettings,
    build: B,
) -> anyhow::Result<Running>
where
    B: FnOnce(Context) -> F,
    F: Future<Output = anyhow::Result<GrpcServer>>,
{
    let metrics_listener = crate::metrics::bind(settings.metrics_addr).await?;
    let metrics_addr = metrics_listener.local_addr()?;
    let context = prepare(spec, env, settings).await?;
    let db = context.db.clone();
    let grpc = build(context).await?;
    Ok(Running {
        grpc_addr: grpc.local_addr()?,
        metrics_addr,
        grpc,
        metrics_listener,
        db,
    })
}

impl Running {
    /// Serves gRPC and `/metrics` until `shutdown` resolves, then drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = tokio::spawn(crate::metrics::serve(self.metrics_listener, async {
            let _ = metrics_stopped.await;
        }));
        let served = self.grpc.serve(shutdown).await;
        let _ = metrics_stop.send(());
        let _ = metrics.await;
        self.db.close().await;
        served
    }
}
