//! The inventory service: stock per SKU, reservations that keep checkout from
//! overselling (all lines or none, expiring unless committed), an audit log of
//! every change, and a live stream of stock levels fed by PostgreSQL
//! LISTEN/NOTIFY. Seeded with the demo catalog's stock on first start.

mod api;
mod ledger;
mod reservations;
mod stock;
mod store;
mod sweeper;
mod watch;

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};
use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::inventory::v1::inventory_service_server::InventoryServiceServer;

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

/// svc-inventory's own settings, on top of what every service has.
#[derive(Clone, Debug)]
pub struct InventorySettings {
    /// Load the demo catalog's stock into an empty stock table (`SEED_DEMO_STOCK`,
    /// default true; false in a real shop).
    pub seed_demo_stock: bool,
    /// How often overdue reservations are expired (`RESERVATION_SWEEP_SECONDS`,
    /// 1 to 86400, default 30).
    pub sweep_every: Duration,
}

impl InventorySettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            seed_demo_stock: env.or("SEED_DEMO_STOCK", true)?,
            sweep_every: env.seconds("RESERVATION_SWEEP_SECONDS", 30)?,
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_seeding_and_a_30_second_sweep() {
        let settings = InventorySettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert!(settings.seed_demo_stock);
        assert_eq!(settings.sweep_every, Duration::from_secs(30));
    }

    #[test]
    fn bad_settings_are_named() {
        for (name, value) in [
            ("SEED_DEMO_STOCK", "maybe"),
            ("RESERVATION_SWEEP_SECONDS", "0"),
            ("RESERVATION_SWEEP_SECONDS", "often"),
        ] {
            let err = InventorySettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }
}
