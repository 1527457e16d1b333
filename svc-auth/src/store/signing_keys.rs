//! The Ed25519 signing keys (`keys.rs` holds their life cycle).

use std::time::Duration;

use chrono::{DateTime, Utc};
use shopmesh_platform::auth::SigningKey;
use sqlx::PgConnection;

use super::{Store, lock, secs};

/// Serialises signing-key changes across replicas (rotation, start-up, schedule).
const SIGNING_KEYS_LOCK: &str = "svc-auth:signing-keys";

/// A stored signing key.
#[derive(Debug, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub seed: Vec<u8>,
    pub activated_at: Option<DateTime<Utc>>,
}

/// What a signing-key maintenance pass should do.
#[derive(Clone, Copy, Debug)]
pub enum KeyAction {
    /// Make sure there is a current and a next key; rotate nothing that exists.
    Ensure,
    /// Rotate when the current key has signed for this long.
    RotateIfDue(Duration),
    /// Rotate now.
    Rotate,
}

/// The outcome of a maintenance pass.
#[derive(Debug)]
pub struct KeyChange {
    /// The key this pass made current, if it rotated.
    pub activated: Option<KeyRow>,
    /// The key the rotation retired (none on first start).
    pub previous_kid: Option<String>,
}

impl Store {
    /// The key that signs tokens now.
    pub async fn current_signing_key(&self) -> sqlx::Result<Option<KeyRow>> {
        sqlx::query_as(
            "SELECT kid, seed, activated_at FROM signing_keys \
             WHERE activated_at IS NOT NULL AND retires_at IS NULL",
        )
        .fetch_optional(&self.db)
        .await
    }

    /// Every key whose tokens may be live or are about to be issued: the current
    /// key first, then retired keys newest first, then the next key.
    pub async fn live_signing_keys(&self) -> sqlx::Result<Vec<KeyRow>> {
        sqlx::query_as(
            "SELECT kid, seed, activated_at FROM signing_keys \
             WHERE retires_at IS NULL OR retires_at > now() \
             ORDER BY activated_at IS NULL, retires_at IS NOT NULL, activated_at DESC",
        )
        .fetch_all(&self.db)
        .await
    }

    /// Creates, rotates and deletes signing keys as `action` asks, under an
    /// advisory lock so replicas never rotate twice or race on start-up.
    /// `retire_after` is how long a replaced key stays verifiable.
    pub async fn maintain_signing_keys(
        &self,
        action: KeyAction,
        retire_after: Duration,
        generate: impl Fn() -> SigningKey,
    ) -> sqlx::Result<KeyChange> {
        let mut tx = self.db.begin().await?;
        lock(&mut tx, SIGNING_KEYS_LOCK).await?;
        // A key past retires_at verifies nothing any more; its seed goes.
        sqlx::query("DELETE FROM signing_keys WHERE retires_at <= now()")
            .execute(&mut *tx)
            .await?;
        let period = match action {
            KeyAction::RotateIfDue(period) => period,
            KeyAction::Ensure | KeyAction::Rotate => Duration::ZERO,
        };
        let current: Option<(String, bool)> = sqlx::query_as(
            "SELECT kid, activated_at + make_interval(secs => $1) <= now() FROM signing_keys \
             WHERE activated_at IS NOT NULL AND retires_at IS NULL",
        )
        .bind(secs(period))
        .fetch_optional(&mut *tx)
        .await?;
        let has_next: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE activated_at IS NULL)",
        )
        .fetch_one(&mut *tx)
        .await?;
        if !has_next {
            insert_key(&mut tx, &generate()).await?;
        }
        let rotate = match (&current, action) {
            (None, _) | (_, KeyAction::Rotate) => true,
            (Some((_, due)), KeyAction::RotateIfDue(_)) => *due,
            (Some(_), KeyAction::Ensure) => false,
        };
        let previous_kid = current.map(|(kid, _)| kid);
        if !rotate {
            tx.commit().await?;
            return Ok(KeyChange {
                activated: None,
                previous_kid,
            });
        }
        if let Some(kid) = &previous_kid {
            sqlx::query(
                "UPDATE signing_keys SET retires_at = now() + make_interval(secs => $2) WHERE kid = $1",
            )
            .bind(kid)
            .bind(secs(retire_after))
            .execute(&mut *tx)
            .await?;
        }
        let activated: KeyRow = sqlx::query_as(
            "UPDATE signing_keys SET activated_at = now() WHERE activated_at IS NULL \
             RETURNING kid, seed, activated_at",
        )
        .fetch_one(&mut *tx)
        .await?;
        insert_key(&mut tx, &generate()).await?;
        tx.commit().await?;
        Ok(KeyChange {
            activated: Some(activated),
            previous_kid,
        })
    }
}

async fn insert_key(conn: &mut PgConnection, key: &SigningKey) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO signing_keys (kid, seed) VALUES ($1, $2)")
        .bind(&key.kid)
        .bind(key.seed().as_slice())
        .execute(conn)
        .await?;
    Ok(())
}
