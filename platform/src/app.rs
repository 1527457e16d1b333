//! The life of a service binary, identical for all nine: read settings, start
//! telemetry and metrics, connect and migrate the database, build the gRPC
//! services, serve until SIGTERM/SIGINT, drain.
//!
//! `svc-x migrate` only applies the migrations; `svc-x replay-dlq <topic> [group]`
//! republishes the dead letters of `<topic>.dlq` (docs/events.md).
//!
//! A service crate provides a [`ServiceSpec`] and an async `build` function from
//! a [`Context`] to a [`GrpcServer`] with its services added; its `main.rs` is
//! one call to [`main`]. Tests call the same `build` through `shopmesh_testkit::TestService::spawn`.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::{AccessControl, GrpcKeySource, SessionStore, TokenVerifier};
use crate::events::EventsSettings;
use crate::grpc::GrpcServer;
use crate::overload::OverloadSettings;
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
    /// Checks the service's own settings (its `settings.rs`) before anything
    /// starts or connects, when the binary is to serve: a bad value exits with
    /// status 2 naming the variable, as one of the common settings does.
    /// `build` reads them again.
    pub check_settings: fn(&Env) -> Result<(), SettingsError>,
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
    /// Kafka (`KAFKA_*`), for services that produce or consume events.
    pub events: EventsSettings,
    /// Limits on the work in flight (`OVERLOAD_*`, `GRPC_MAX_CONCURRENT_STREAMS`).
    pub overload: OverloadSettings,
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
            events: EventsSettings::from_env(env, spec.name)?,
            overload: OverloadSettings::from_env(env)?,
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
    /// Cancelled when shutdown begins: hand it to background work (the outbox
    /// relay, event consumers) so it stops while the gRPC calls drain.
    pub shutdown: CancellationToken,
}

/// Connects the database and binds the gRPC listener: everything `build` needs.
pub async fn prepare(
    spec: &ServiceSpec,
    env: Env,
    settings: ServiceSettings,
) -> anyhow::Result<Context> {
    let auth = &settings.auth;
    crate::events::set_producer_name(spec.name);
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
        .access_control(access.clone())
        .overload(settings.overload);
    Ok(Context {
        env,
        settings,
        db,
        grpc,
        redis,
        access,
        shutdown: CancellationToken::new(),
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The service's own settings matter only when it serves: `migrate` and
    // `replay-dlq` run with the common ones (e.g. a migration job's).
    let checked = ServiceSettings::from_env(spec, &env).and_then(|settings| {
        if args.is_empty() {
            (spec.check_settings)(&env)?;
        }
        Ok(settings)
    });
    let settings = match checked {
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
    let result = match args.as_slice() {
        [] => match start(spec, env, settings, build).await {
            Ok(running) => running.serve(crate::shutdown::shutdown_signal()).await,
            Err(err) => Err(err),
        },
        ["migrate"] => crate::db::connect_and_migrate(&settings.database, spec.migrator)
            .await
            .map(|_| tracing::info!(service = spec.name, "migrations applied")),
        ["replay-dlq", topic, rest @ ..] if rest.len() <= 1 => {
            crate::events::replay_dead_letters(&settings.events, topic, rest.first().copied())
                .await
                .map(|report| {
                    tracing::info!(
                        service = spec.name,
                        topic,
                        replayed = report.replayed,
                        skipped = report.skipped,
                        "dead letters replayed"
                    );
                })
                .map_err(anyhow::Error::from)
        }
        _ => {
            eprintln!(
                "{}: unknown command {:?}; usage: {} [migrate | replay-dlq <topic> [<consumer group>]]",
                spec.name,
                args.join(" "),
                spec.name
            );
            return ExitCode::from(2);
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
    shutdown: CancellationToken,
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
    let background = context.shutdown.clone();
    let grpc = build(context).await?;
    Ok(Running {
        grpc_addr: grpc.local_addr()?,
        metrics_addr,
        grpc,
        metrics_listener,
        db,
        shutdown: background,
    })
}

impl Running {
    /// Serves gRPC and `/metrics` until `shutdown` resolves, then drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = tokio::spawn(crate::metrics::serve(self.metrics_listener, async {
            let _ = metrics_stopped.await;
        }));
        let background = self.shutdown.clone();
        let served = self
            .grpc
            .serve(async move {
                shutdown.await;
                background.cancel();
            })
            .await;
        self.shutdown.cancel();
        let _ = metrics_stop.send(());
        let _ = metrics.await;
        self.db.close().await;
        served
    }
}
