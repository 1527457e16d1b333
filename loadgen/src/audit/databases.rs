//! The services' databases on one PostgreSQL server, `shop_<service><suffix>`
//! as `scripts/run.sh` names them.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// SQLSTATE invalid_catalog_name: the database does not exist.
const NO_SUCH_DATABASE: &str = "3D000";

/// A pool on each audited service's database. svc-cart has none (Redis holds
/// the carts).
pub struct Databases {
    pub order: PgPool,
    pub payment: PgPool,
    pub inventory: PgPool,
    pub notification: PgPool,
    pub recommendation: PgPool,
    pub product: PgPool,
    pub auth: PgPool,
    pub user: PgPool,
    suffix: String,
}

impl Databases {
    /// Opens a small pool on each database and checks it answers. A database
    /// that does not exist is an error at once; one that cannot be reached
    /// (PostgreSQL restarting after a fault) is tried again until `deadline`.
    pub async fn connect(url: &str, suffix: &str, deadline: Instant) -> anyhow::Result<Self> {
        let server = PgConnectOptions::from_str(url)
            .context("--database-url is not a valid PostgreSQL URL")?;
        let open = |service: &str| {
            let name = database_name(service, suffix);
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(server.clone().database(&name));
            async move {
                reachable(&pool, &name, deadline).await?;
                anyhow::Ok(pool)
            }
        };
        Ok(Self {
            order: open("order").await?,
            payment: open("payment").await?,
            inventory: open("inventory").await?,
            notification: open("notification").await?,
            recommendation: open("recommendation").await?,
            product: open("product").await?,
            auth: open("auth").await?,
            user: open("user").await?,
            suffix: suffix.to_owned(),
        })
    }

    /// Every database with its name.
    pub fn all(&self) -> [(String, &PgPool); 8] {
        [
            ("order", &self.order),
            ("payment", &self.payment),
            ("inventory", &self.inventory),
            ("notification", &self.notification),
            ("recommendation", &self.recommendation),
            ("product", &self.product),
            ("auth", &self.auth),
            ("user", &self.user),
        ]
        .map(|(service, pool)| (database_name(service, &self.suffix), pool))
    }
}

fn database_name(service: &str, suffix: &str) -> String {
    format!("shop_{service}{suffix}")
}

async fn reachable(pool: &PgPool, name: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let err = match sqlx::query("SELECT 1").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if let sqlx::Error::Database(db) = &err
            && db.code().as_deref() == Some(NO_SUCH_DATABASE)
        {
            bail!(
                "database {name} does not exist (is --db-suffix right? each service \
                 creates its database when it first starts)"
            );
        }
        if Instant::now() >= deadline {
            return Err(err).context(format!("cannot read database {name}"));
        }
        eprintln!("audit: cannot reach database {name} yet: {err}");
        tokio::time::sleep(super::RECHECK_EVERY).await;
    }
}
