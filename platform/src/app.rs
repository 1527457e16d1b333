//! The life of a service binary, identical for all nine: read settings, start
//! telemetry and metrics, connect and migrate the database (for a service that
//! has one), build the gRPC services, serve until SIGTERM/SIGINT, drain.
//!
//! `svc-x migrate` only applies the migrations. What only some services carry
//! joins through [`Extension`]s named in their spec: shopmesh-events adds the
//! outbox and inbox tables and `svc-x replay-dlq <topic> [group]`
//! (docs/events.md).
//!
//! A service crate provides a [`ServiceSpec`] and an async `build` function from
//! a [`Context`] to a [`GrpcServer`] with its services added; its `main.rs` is
//! one call to [`main`]. Tests call the same `build` through `shopmesh_testkit::TestService::spawn`.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::auth::{AccessControl, GrpcKeySource, SessionStore, TokenVerifier};
use crate::grpc::GrpcServer;
use crate::overload::OverloadSettings;
use crate::runner;
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
    /// The service's migrations (`sqlx::migrate!()` in the service crate), or
    /// `None` for a service that keeps nothing in PostgreSQL (svc-cart): it
    /// reads no `DATABASE_URL` and opens no pool.
    pub migrator: Option<&'static Migrator>,
    /// Checks the service's own settings (its `settings.rs`) before anything
    /// starts or connects, when the binary is to serve: a bad value exits with
    /// status 2 naming the variable, as one of the common settings does.
    /// `build` reads them again.
    pub check_settings: fn(&Env) -> Result<(), SettingsError>,
    /// The parts of the runtime the service carries beyond the common ones,
    /// e.g. `&[&shopmesh_events::EVENTS]` for a service that publishes or
    /// consumes events.
    pub extensions: &'static [&'static dyn Extension],
}

impl std::fmt::Debug for dyn Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A part of the runtime that only some services carry, named in their
/// [`ServiceSpec::extensions`] and called at the same points of the binary's
/// life as the common parts, so a service without it neither links nor
/// configures it.
pub trait Extension: Sync {
    /// For messages, e.g. `events`.
    fn name(&self) -> &'static str;
    /// Checks the extension's settings before anything connects; an error
    /// exits with status 2 like a bad common setting.
    fn check_settings(&self, service: &'static str, env: &Env) -> Result<(), SettingsError>;
    /// Called once, before the service connects to anything.
    fn init(&self, _service: &'static str) {}
    /// Creates or updates the extension's tables in the service's database,
    /// after the service's own migrations.
    fn migrate<'a>(&'a self, db: &'a PgPool) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Runs `svc-x <args>` when `args` is one of the extension's commands;
    /// `None` when it is not.
    fn command<'a>(
        &'a self,
        service: &'static str,
        env: &'a Env,
        args: &'a [&'a str],
    ) -> Option<BoxFuture<'a, anyhow::Result<()>>>;
    /// Its commands for the usage message, e.g. `replay-dlq <topic> [<consumer group>]`.
    fn usage(&self) -> &'static str;
}

/// Settings every service has.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// `None` for a service without a database.
    pub database: Option<DatabaseSettings>,
    pub drain: Duration,
    pub telemetry: TelemetrySettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    /// Limits on the work in flight (`OVERLOAD_*`, `GRPC_MAX_CONCURRENT_STREAMS`).
    pub overload: OverloadSettings,
}

impl ServiceSettings {
    pub fn from_env(spec: &ServiceSpec, env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            grpc_addr: listen_addr(env, "GRPC_ADDR", spec.grpc_port)?,
            metrics_addr: listen_addr(env, "METRICS_ADDR", spec.metrics_port)?,
            database: spec
                .migrator
                .map(|_| DatabaseSettings::from_env(env))
                .transpose()?,
            drain: env.seconds("SHUTDOWN_DRAIN_SECONDS", 15)?,
            telemetry: TelemetrySettings::from_env(env, spec.name)?,
            redis: RedisSettings::from_env(env)?,
            auth: AuthSettings::from_env(env)?,
            overload: OverloadSettings::from_env(env)?,
        })
    }
}

/// What a service's `build` function receives.
pub struct Context {
    /// The service's name (its binary's), e.g. `svc-order`.
    pub name: &'static str,
    /// Where service-specific settings are read from (the process env, or a test map).
    pub env: Env,
    pub settings: ServiceSettings,
    /// The service's own database, migrated; `None` for a service whose spec
    /// has no migrator. [`Context::database`] for a service that has one.
    pub db: Option<PgPool>,
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

impl Context {
    /// The service's database; an error for a service whose spec declares none.
    pub fn database(&self) -> anyhow::Result<PgPool> {
        self.db.clone().with_context(|| {
            format!(
                "{} has no database (its ServiceSpec has no migrator)",
                self.name
            )
        })
    }
}

/// Connects the service's database (creating it if needed) and applies the
/// service's migrations, then its extensions'; `None` for a service without a
/// database.
pub async fn connect_and_migrate(
    spec: &ServiceSpec,
    settings: &ServiceSettings,
) -> anyhow::Result<Option<PgPool>> {
    let (Some(migrator), Some(database)) = (spec.migrator, &settings.database) else {
        return Ok(None);
    };
    let db = crate::db::connect_and_migrate(database, migrator).await?;
    for extension in spec.extensions {
        extension
            .migrate(&db)
            .await
            .with_context(|| format!("{} migration failed", extension.name()))?;
    }
    Ok(Some(db))
}

/// Connects the database and binds the gRPC listener: everything `build` needs.
pub async fn prepare(
    spec: &ServiceSpec,
    env: Env,
    settings: ServiceSettings,
) -> anyhow::Result<Context> {
    let auth = &settings.auth;
    for extension in spec.extensions {
        extension.init(spec.name);
    }
    let redis = crate::redis::connect(&settings.redis).await?;
    let db = connect_and_migrate(spec, &settings).await?;
    if let Some(db) = &db {
        crate::metrics::report_pool(db.clone());
    }
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
        name: spec.name,
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
    // the extensions' commands run with the common ones (e.g. a migration
    // job's) and the extensions'.
    let checked = ServiceSettings::from_env(spec, &env).and_then(|settings| {
        for extension in spec.extensions {
            extension.check_settings(spec.name, &env)?;
        }
        if args.is_empty() {
            (spec.check_settings)(&env)?;
        }
        Ok(settings)
    });
    let settings = match runner::settings_or_exit(spec.name, checked) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let command = spec
        .extensions
        .iter()
        .find_map(|extension| extension.command(spec.name, &env, &args));
    // `start` takes the settings: the runner gets its own copy of telemetry's.
    let telemetry = settings.telemetry.clone();
    match (args.as_slice(), command) {
        ([], _) => {
            runner::run(spec.name, &telemetry, |shutdown| async {
                start(spec, env.clone(), settings, build)
                    .await?
                    .serve(shutdown)
                    .await
            })
            .await
        }
        (["migrate"], _) => {
            runner::run(spec.name, &telemetry, |_| async {
                match connect_and_migrate(spec, &settings).await? {
                    Some(_) => tracing::info!(service = spec.name, "migrations applied"),
                    None => tracing::info!(service = spec.name, "no database: nothing to migrate"),
                }
                Ok(())
            })
            .await
        }
        (_, Some(command)) => runner::run(spec.name, &telemetry, |_| command).await,
        (_, None) => {
            let mut usage = vec!["migrate"];
            usage.extend(spec.extensions.iter().map(|extension| extension.usage()));
            runner::refuse_command(
                spec.name,
                &args.join(" "),
                &format!("{} [{}]", spec.name, usage.join(" | ")),
            )
        }
    }
}

/// A service with its listeners bound and its services built, not yet serving.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    grpc: GrpcServer,
    metrics_listener: tokio::net::TcpListener,
    db: Option<PgPool>,
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
        if let Some(db) = self.db {
            db.close().await;
        }
        served
    }
}
