//! PostgreSQL access for identity, split by job: accounts and roles
//! (`accounts`), refresh tokens (`refresh_tokens`), the profiles still owed to
//! svc-user (`pending_profiles`) and the signing keys (`signing_keys`).
//! Functions that take a `&mut PgConnection` run in the caller's transaction.

mod accounts;
mod pending_profiles;
mod refresh_tokens;
mod signing_keys;

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

pub use accounts::{NewUser, RoleRevocation};
pub use pending_profiles::PendingProfile;
pub use refresh_tokens::NewRefreshToken;
pub use signing_keys::{KeyAction, KeyChange, KeyRow};

#[derive(Clone, Debug)]
pub struct Store {
    db: PgPool,
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl Store {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    pub async fn begin(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.db.begin().await
    }

    /// The pool is closed once the service has shut down; background tasks stop then.
    pub fn is_closed(&self) -> bool {
        self.db.is_closed()
    }
}

async fn lock(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}
