//! PostgreSQL access for profiles and address books.
//!
//! Every write to one shopper's address book first locks their profile row, so
//! the book's rules (at most 20, exactly one default once any exist) hold
//! however many of their requests run at once; the partial unique index
//! `addresses_one_default_per_user` backs the default rule up.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::address::{AddressInput, AddressPage, MAX_ADDRESSES};
use crate::error::UserError;
use crate::profile::{NewProfile, ProfileChange};

/// A profile as stored, and as cached (with the version that orders cache writes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProfileRecord {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub phone: String,
    pub email_opt_in: bool,
    pub sms_opt_in: bool,
    /// Starts at 1; every update adds 1.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PROFILE_COLUMNS: &str = "user_id, email, display_name, phone, email_opt_in, sms_opt_in, \
     version, created_at, updated_at";

/// An address as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AddressRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub label: String,
    pub recipient: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country_code: String,
    pub phone: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ADDRESS_COLUMNS: &str = "id, user_id, label, recipient, line1, line2, city, region, \
     postal_code, country_code, phone, is_default, created_at, updated_at";

#[derive(Clone, Debug)]
pub struct Store {
    db: PgPool,
}

impl Store {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    /// Creates the profile, or returns the existing one unchanged; the flag says
    /// whether it was created now. Concurrent calls for one user create one row.
    #[tracing::instrument(skip(self, new), fields(user_id = %new.user_id))]
    pub async fn create_profile(&self, new: &NewProfile) -> sqlx::Result<(ProfileRecord, bool)> {
        let inserted: Option<ProfileRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO profiles (user_id, email, display_name) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO NOTHING RETURNING {PROFILE_COLUMNS}"
        )))
        .bind(new.user_id)
        .bind(&new.email)
        .bind(&new.display_name)
        .fetch_optional(&self.db)
        .await?;
        if let Some(profile) = inserted {
            return Ok((profile, true));
        }
        // A separate statement: it sees the row another transaction just committed.
        let existing = self.profile(new.user_id).await?;
        existing
            .map(|profile| (profile, false))
            .ok_or(sqlx::Error::RowNotFound)
    }

    #[tracing::instrument(skip(self))]
    pub async fn profile(&self, user_id: Uuid) -> sqlx::Result<Option<ProfileRecord>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles WHERE user_id = $1"
        )))
        .bind(user_id)
        .fetch_optional(&self.db)
        .await
    }

    /// Applies `change` and bumps the version, in one statement.
    #[tracing::instrument(skip(self, change))]
    pub async fn update_profile(
        &self,
        user_id: Uuid,
        change: &ProfileChange,
    ) -> Result<ProfileRecord, UserError> {
        let updated: Option<ProfileRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE profiles SET display_name = COALESCE($2, display_name), \
                                 phone = COALESCE($3, phone), \
                                 email_opt_in = COALESCE($4, email_opt_in), \
                                 sms_opt_in = COALESCE($5, sms_opt_in), \
                                 version = version + 1, updated_at = now() \
             WHERE user_id = $1 RETURNING {PROFILE_COLUMNS}"
        )))
        .bind(user_id)
        .bind(&change.display_name)
        .bind(&change.phone)
        .bind(change.email_opt_in)
        .bind(change.sms_opt_in)
        .fetch_optional(&self.db)
        .await
        .map_err(UserError::from_profile_update)?;
        updated.ok_or(UserError::ProfileNotFound(user_id))
    }

    /// One page of the address book in list order, plus one extra row when
    /// there is a next page.
    #[tracing::instrument(skip(self))]
    pub async fn addresses(
        &self,
        user_id: Uuid,
        page: &AddressPage,
    ) -> sqlx::Result<Vec<AddressRecord>> {
        // Every key descends, so one row comparison continues after the cursor.
        let (is_default, created_at, id) = match page.after {
            Some((is_default, micros, id)) => (
                Some(is_default),
                DateTime::<Utc>::from_timestamp_micros(micros),
                Some(id),
            ),
            None => (None, None, None),
        };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ADDRESS_COLUMNS} FROM addresses WHERE user_id = $1 \
               AND ($2::boolean IS NULL OR (is_default, created_at, id) < ($2, $3, $4)) \
             ORDER BY is_default DESC, created_at DESC, id DESC LIMIT $5"
        )))
        .bind(user_id)
        .bind(is_default)
        .bind(created_at)
        .bind(id)
        .bind(i64::from(page.page_size) + 1)
        .fetch_all(&self.db)
        .await
    }

    /// Adds an address; the first one of a book becomes its default.
    #[tracing::instrument(skip(self, input))]
    pub async fn create_address(
        &self,
        user_id: Uuid,
        input: &AddressInput,
    ) -> Result<AddressRecord, UserError> {
        let mut tx = self.db.begin().await?;
        if !lock_address_book(&mut tx, user_id).await? {
            return Err(UserError::ProfileNotFound(user_id));
        }
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM addresses WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        if count >= MAX_ADDRESSES {
            return Err(UserError::AddressBookFull);
        }
        let field = |value: &Option<String>| value.clone().unwrap_or_default();
        let address: AddressRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO addresses (id, user_id, label, recipient, line1, line2, city, region, \
                                    postal_code, country_code, phone, is_default) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {ADDRESS_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(user_id)
        .bind(field(&input.label))
        .bind(field(&input.recipient))
        .bind(field(&input.line1))
        .bind(field(&input.line2))
        .bind(field(&input.city))
        .bind(field(&input.region))
        .bind(field(&input.postal_code))
        .bind(field(&input.country_code))
        .bind(field(&input.phone))
        .bind(count == 0)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(address)
    }

    /// Changes the fields `input` sets. Neither the count nor the default
    /// changes, so no lock on the book is needed.
    #[tracing::instrument(skip(self, input))]
    pub async fn update_address(
        &self,
        user_id: Uuid,
        id: Uuid,
        input: &AddressInput,
    ) -> Result<AddressRecord, UserError> {
        let updated: Option<AddressRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE addresses SET label = COALESCE($3, label), recipient = COALESCE($4, recipient), \
                                  line1 = COALESCE($5, line1), line2 = COALESCE($6, line2), \
                                  city = COALESCE($7, city), region = COALESCE($8, region), \
                                  postal_code = COALESCE($9, postal_code), \
                                  country_code = COALESCE($10, country_code), \
                                  phone = COALESCE($11, phone), updated_at = now() \
             WHERE id = $1 AND user_id = $2 RETURNING {ADDRESS_COLUMNS}"
        )))
        .bind(id)
        .bind(user_id)
        .bind(&input.label)
        .bind(&input.recipient)
        .bind(&input.line1)
        .bind(&input.line2)
        .bind(&input.city)
        .bind(&input.region)
        .bind(&input.postal_code)
        .bind(&input.country_code)
        .bind(&input.phone)
        .fetch_optional(&self.db)
        .await?;
        updated.ok_or(UserError::AddressNotFound(id))
    }

    /// Deletes an address; when it was the default, the newest remaining one
    /// becomes the default.
    #[tracing::instrument(skip(self))]
    pub async fn delete_address(&self, user_id: Uuid, id: Uuid) -> Result<(), UserError> {
        let mut tx = self.db.begin().await?;
        lock_address_book(&mut tx, user_id).await?;
        let was_default: Option<bool> = sqlx::query_scalar(
            "DELETE FROM addresses WHERE id = $1 AND user_id = $2 RETURNING is_default",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        match was_default {
            None => return Err(UserError::AddressNotFound(id)),
            Some(true) => {
                sqlx::query(
                    "UPDATE addresses SET is_default = true, updated_at = now() \
                     WHERE id = (SELECT id FROM addresses WHERE user_id = $1 \
                                 ORDER BY created_at DESC, id DESC LIMIT 1)",
                )
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            }
            Some(false) => {}
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes an address the default and the previous default not, in one
    /// transaction. Setting the current default again changes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn set_default_address(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<AddressRecord, UserError> {
        let mut tx = self.db.begin().await?;
        lock_address_book(&mut tx, user_id).await?;
        let is_default: bool =
            sqlx::query_scalar("SELECT is_default FROM addresses WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(UserError::AddressNotFound(id))?;
        if !is_default {
            // Two statements, old default first: the unique index is checked row by row.
            sqlx::query(
                "UPDATE addresses SET is_default = false, updated_at = now() \
                 WHERE user_id = $1 AND is_default",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE addresses SET is_default = true, updated_at = now() WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let address = address_in(&mut *tx, user_id, id).await?;
        tx.commit().await?;
        address.ok_or(UserError::AddressNotFound(id))
    }

    /// One address, if it belongs to `user_id`.
    #[tracing::instrument(skip(self))]
    pub async fn user_address(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> sqlx::Result<Option<AddressRecord>> {
        address_in(&self.db, user_id, id).await
    }
}

/// Serialises writes to one address book by locking its owner's profile row.
/// False when the user has no profile (so no addresses either).
async fn lock_address_book(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<bool> {
    let locked: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM profiles WHERE user_id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(locked.is_some())
}

async fn address_in(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<AddressRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ADDRESS_COLUMNS} FROM addresses WHERE id = $1 AND user_id = $2"
    )))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}
