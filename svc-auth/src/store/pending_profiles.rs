//! The profiles svc-user still has to create (`profiles.rs` retries them).

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use super::{Store, secs};

/// A profile svc-user still has to create.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PendingProfile {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub attempts: i32,
}

impl Store {
    /// Records that svc-user owes this user a profile. The caller makes the
    /// first attempt itself right after the commit (counted here); the retry
    /// task leaves the row alone for `first_retry_in` meanwhile.
    pub async fn insert_pending_profile(
        conn: &mut PgConnection,
        user_id: Uuid,
        first_retry_in: Duration,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO pending_profiles (user_id, attempts, next_attempt_at) \
             VALUES ($1, 1, now() + make_interval(secs => $2))",
        )
        .bind(user_id)
        .bind(secs(first_retry_in))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Claims up to `limit` due rows for `lease` (so another replica does not
    /// retry them meanwhile) and counts the attempt.
    pub async fn claim_due_profiles(
        &self,
        limit: i64,
        lease: Duration,
    ) -> sqlx::Result<Vec<PendingProfile>> {
        sqlx::query_as(
            "WITH due AS ( \
                 SELECT user_id FROM pending_profiles WHERE next_attempt_at <= now() \
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE pending_profiles p \
             SET attempts = p.attempts + 1, next_attempt_at = now() + make_interval(secs => $2) \
             FROM due, users u WHERE p.user_id = due.user_id AND u.id = p.user_id \
             RETURNING p.user_id, u.email, u.display_name, p.attempts",
        )
        .bind(limit)
        .bind(secs(lease))
        .fetch_all(&self.db)
        .await
    }

    pub async fn profile_created(&self, user_id: Uuid) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM pending_profiles WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn profile_failed(
        &self,
        user_id: Uuid,
        retry_in: Duration,
        error: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE pending_profiles \
             SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3 \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(secs(retry_in))
        .bind(error)
        .execute(&self.db)
        .await?;
        Ok(())
    }
}
