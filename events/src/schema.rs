//! The `outbox` and `inbox` tables, owned by platform and created in every
//! service's own database next to the service's tables.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// Where applied events migrations are recorded, apart from the service's own
/// `_sqlx_migrations` (whose versions would otherwise collide with ours).
pub const MIGRATIONS_TABLE: &str = "_shopmesh_events_migrations";

fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/events");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Creates or updates the `outbox` and `inbox` tables. Idempotent, and safe for
/// replicas starting together: sqlx holds the database's migration advisory
/// lock while it runs.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    migrator().run(pool).await
}
