//! The inventory service: stock per SKU, reservations that keep checkout from
//! overselling (all lines or none, expiring unless committed), an audit log of
//! every change, and a live stream of stock levels fed by PostgreSQL
//! LISTEN/NOTIFY. Seeded with the demo catalog's stock on first start.
//!
//! - The rules: `stock` (what a valid SKU, change and reservation request are,
//!   the states of a reservation), pure and tested without a database.
//! - Reservations: `reservations` (reserve, release, commit, expire: one
//!   transaction each) and `sweeper` (expiry on an interval).
//! - Storage: `store`, every SQL statement; `store::ledger` is the one way on
//!   hand and reserved change, each change written to the audit log in the
//!   same transaction.
//! - WatchStock: `watch` (one LISTEN connection per process, fanned out).
//! - `api` the gRPC surface, `error` what becomes which status, `settings`.

mod api;
mod error;
mod reservations;
mod settings;
mod stock;
mod store;
mod sweeper;
mod watch;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::inventory::v1::inventory_service_server::InventoryServiceServer;

pub use settings::InventorySettings;
pub use store::seed_if_empty;

use reservations::Reservations;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-inventory",
    grpc_port: 50054,
    metrics_port: 9104,
    migrator: Some(&MIGRATOR),
    check_settings: |env| InventorySettings::from_env(env).map(drop),
    extensions: &[],
};

/// Builds the service on a prepared context. When the service begins to shut
/// down (`ctx.shutdown`), open WatchStock streams end with UNAVAILABLE so that
/// they do not hold a draining server open and their clients reconnect to
/// another replica.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let db = ctx.database()?;
    let settings = InventorySettings::from_env(&ctx.env)?;
    if settings.seed_demo_stock {
        store::seed_if_empty(&db, &shopmesh_demo::demo_catalog()).await?;
    }
    let watch = watch::StockWatch::start(&db, ctx.shutdown.clone()).await?;
    let reservations = Reservations::new(db.clone());
    sweeper::spawn(reservations.clone(), settings.sweep_every);
    let api = api::InventoryApi::new(store::Store::new(db), reservations, watch);
    Ok(ctx.grpc.add_service(InventoryServiceServer::new(api)))
}

/// Expires every overdue reservation now, as the sweeper does on its interval;
/// returns how many expired.
pub async fn expire_overdue_reservations(db: &sqlx::PgPool) -> anyhow::Result<usize> {
    Ok(sweeper::sweep(&Reservations::new(db.clone())).await?)
}
