//! Accounts and their roles.

use shopmesh_platform::auth::ADMIN_ROLE;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Store, lock};

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

/// The outcome of a role revocation.
#[derive(Debug)]
pub enum RoleRevocation {
    UnknownUser,
    LastAdmin,
    Done(Vec<String>),
}

impl Store {
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
