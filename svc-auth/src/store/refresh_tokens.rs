//! Refresh tokens: stored as their hash, rotated in families, revoked by
//! session, by user or by family.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Store, secs};

/// A refresh token row (the token itself is never stored).
#[derive(Debug, sqlx::FromRow)]
pub struct StoredRefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct NewRefreshToken<'a> {
    pub token_hash: &'a [u8],
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub family_id: Uuid,
    pub ttl: Duration,
}

impl Store {
    pub async fn insert_refresh_token(
        conn: &mut PgConnection,
        token: &NewRefreshToken<'_>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (id, token_hash, user_id, session_id, family_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        )
        .bind(Uuid::now_v7())
        .bind(token.token_hash)
        .bind(token.user_id)
        .bind(token.session_id)
        .bind(token.family_id)
        .bind(secs(token.ttl))
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn insert_refresh_token_now(&self, token: &NewRefreshToken<'_>) -> sqlx::Result<()> {
        Self::insert_refresh_token(&mut *self.db.acquire().await?, token).await
    }

    /// The token with this hash, locked until the transaction ends, so two
    /// concurrent uses of one token are decided one after the other.
    pub async fn refresh_token_for_update(
        conn: &mut PgConnection,
        token_hash: &[u8],
    ) -> sqlx::Result<Option<StoredRefreshToken>> {
        sqlx::query_as(
            "SELECT id, user_id, session_id, family_id, expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        )
        .bind(token_hash)
        .fetch_optional(conn)
        .await
    }

    /// Marks a token rotated: from now on presenting it is reuse.
    pub async fn mark_refresh_token_used(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
        sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Kills every token of a family (a sign-in's rotation chain).
    pub async fn revoke_family(conn: &mut PgConnection, family_id: Uuid) -> sqlx::Result<u64> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .execute(conn)
        .await?;
        Ok(revoked.rows_affected())
    }

    pub async fn revoke_session_tokens(&self, session_id: Uuid) -> sqlx::Result<u64> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE session_id = $1 AND revoked_at IS NULL",
        )
        .bind(session_id)
        .execute(&self.db)
        .await?;
        Ok(revoked.rows_affected())
    }

    pub async fn revoke_user_tokens(&self, user_id: Uuid) -> sqlx::Result<u64> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .execute(&self.db)
        .await?;
        Ok(revoked.rows_affected())
    }
}
