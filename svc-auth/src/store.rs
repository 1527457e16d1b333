//! PostgreSQL access for identity: accounts and roles, refresh tokens, the
//! signing keys, and the profiles still owed to svc-user.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shopmesh_platform::auth::{ADMIN_ROLE, SigningKey};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Serialises signing-key changes across replicas (rotation, start-up, schedule).
const SIGNING_KEYS_LOCK: &str = "svc-auth:signing-keys";
/// Serialises admin-role changes, so two revocations cannot remove the last two admins.
const ADMIN_ROLE_LOCK: &str = "svc-auth:admin-role";

/// A new account, as the registration writes it.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub email_key: &'a str,
    pub password_hash: &'a str,
    pub display_name: &'a str,
}

/// What sign-in needs of an account.
#[derive(Debug, sqlx::FromRow)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: String,
}

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

/// A profile svc-user still has to create.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PendingProfile {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub attempts: i32,
}

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

/// The outcome of a role revocation.
#[derive(Debug)]
pub enum RoleRevocation {
    UnknownUser,
    LastAdmin,
    Done(Vec<String>),
}

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

    // ----- accounts and roles -------------------------------------------------

    /// Inserts the account; false when its email is taken (by the unique constraint,
    /// so two concurrent registrations cannot both win).
    #[tracing::instrument(skip_all, fields(user_id = %user.id))]
    pub async fn insert_user(conn: &mut PgConnection, user: &NewUser<'_>) -> sqlx::Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, email_key, password_hash, display_name) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id)
        .bind(user.email)
        .bind(user.email_key)
        .bind(user.password_hash)
        .bind(user.display_name)
        .execute(conn)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.constraint() == Some("users_email_key") => {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

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

    pub async fn insert_role(
        conn: &mut PgConnection,
        user_id: Uuid,
        role: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(role)
        .execute(conn)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn credentials(&self, email_key: &str) -> sqlx::Result<Option<Credentials>> {
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email_key = $1")
            .bind(email_key)
            .fetch_optional(&self.db)
            .await
    }

    /// The user's roles, sorted.
    pub async fn roles(&self, user_id: Uuid) -> sqlx::Result<Vec<String>> {
        roles(&mut *self.db.acquire().await?, user_id).await
    }

    /// Gives the admin role to the existing accounts with these emails.
    pub async fn grant_admin_by_email(&self, email_keys: &[String]) -> sqlx::Result<u64> {
        let granted = sqlx::query(
            "INSERT INTO user_roles (user_id, role) \
             SELECT id, $2 FROM users WHERE email_key = ANY($1) \
             ON CONFLICT DO NOTHING",
        )
        .bind(email_keys)
        .bind(ADMIN_ROLE)
        .execute(&self.db)
        .await?;
        Ok(granted.rows_affected())
    }

    /// Grants a role; None for an unknown user, else every role held after.
    #[tracing::instrument(skip(self))]
    pub async fn grant_role(&self, user_id: Uuid, role: &str) -> sqlx::Result<Option<Vec<String>>> {
        let mut tx = self.db.begin().await?;
        if role == ADMIN_ROLE {
            lock(&mut tx, ADMIN_ROLE_LOCK).await?;
        }
        if !user_exists(&mut tx, user_id).await? {
            return Ok(None);
        }
        Self::insert_role(&mut tx, user_id, role).await?;
        let roles = roles(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(Some(roles))
    }

    /// Revokes a role, refusing to take `admin` from the last admin.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_role(&self, user_id: Uuid, role: &str) -> sqlx::Result<RoleRevocation> {
        let mut tx = self.db.begin().await?;
        if role == ADMIN_ROLE {
            lock(&mut tx, ADMIN_ROLE_LOCK).await?;
        }
        if !user_exists(&mut tx, user_id).await? {
            return Ok(RoleRevocation::UnknownUser);
        }
        if role == ADMIN_ROLE {
            let (holds, admins): (Option<bool>, i64) = sqlx::query_as(
                "SELECT bool_or(user_id = $1), count(*) FROM user_roles WHERE role = $2",
            )
            .bind(user_id)
            .bind(ADMIN_ROLE)
            .fetch_one(&mut *tx)
            .await?;
            if holds == Some(true) && admins <= 1 {
                return Ok(RoleRevocation::LastAdmin);
            }
        }
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
            .bind(user_id)
            .bind(role)
            .execute(&mut *tx)
            .await?;
        let roles = roles(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(RoleRevocation::Done(roles))
    }

    // ----- refresh tokens -----------------------------------------------------

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

    // ----- profiles owed to svc-user ------------------------------------------

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

    // ----- signing keys -------------------------------------------------------

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

async fn lock(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

async fn user_exists(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(user_id)
        .fetch_one(conn)
        .await
}

async fn roles(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
        .bind(user_id)
        .fetch_all(conn)
        .await
}

async fn insert_key(conn: &mut PgConnection, key: &SigningKey) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO signing_keys (kid, seed) VALUES ($1, $2)")
        .bind(&key.kid)
        .bind(key.seed().as_slice())
        .execute(conn)
        .await?;
    Ok(())
}
