//! Notification rows and preferences in PostgreSQL: every SQL statement of
//! the service.
//!
//! A notification is inserted PENDING (or SKIPPED) by the event handler, in
//! the consumer's transaction, unique per (source event, channel). The sender
//! claims due PENDING rows with `FOR UPDATE SKIP LOCKED`, leasing them by
//! pushing `next_attempt_at` ahead, and settles each one in a transaction that
//! also writes `NotificationSent` to the outbox (`events.rs`) and `pg_notify`s
//! [`SETTLED_CHANNEL`] with the user id for WatchMyNotifications.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::error::StoreError;
use crate::events;
use crate::model::{Channel, EventType, NewNotification, Notification, Preference, Status};

/// Notified (payload: user id) when a notification becomes final.
pub const SETTLED_CHANNEL: &str = "notification_settled";
/// Notified when PENDING notifications are inserted: wakes the sender.
pub const PENDING_CHANNEL: &str = "notification_pending";

impl Notification {
    fn from_row(row: &PgRow) -> Result<Self, StoreError> {
        let channel: String = row.try_get("channel")?;
        let event_type: String = row.try_get("event_type")?;
        let status: String = row.try_get("status")?;
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            channel: Channel::parse(&channel).ok_or(StoreError::Corrupt(channel))?,
            event_type: EventType::parse(&event_type).ok_or(StoreError::Corrupt(event_type))?,
            source_event_id: row.try_get("source_event_id")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            status: Status::parse(&status).ok_or(StoreError::Corrupt(status))?,
            status_reason: row.try_get("status_reason")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
            sent_at: row.try_get("sent_at")?,
            settled_seq: row.try_get("settled_seq")?,
        })
    }
}

/// The columns [`Notification::from_row`] reads (a macro, for `concat!`:
/// SQL strings are static).
macro_rules! columns {
    () => {
        "id, user_id, channel, event_type, source_event_id, subject, body, status, \
         status_reason, attempts, created_at, sent_at, settled_seq"
    };
}

async fn notify(conn: &mut PgConnection, channel: &str, payload: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// The stored choice for one event type, or the default.
pub async fn preference(
    conn: &mut PgConnection,
    user_id: Uuid,
    event_type: EventType,
) -> Result<Preference, StoreError> {
    let row = sqlx::query(
        "SELECT email, sms FROM notification_preferences WHERE user_id = $1 AND event_type = $2",
    )
    .bind(user_id)
    .bind(event_type.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Preference {
            event_type,
            email: row.try_get("email")?,
            sms: row.try_get("sms")?,
        },
        None => Preference::default_for(event_type),
    })
}

/// Inserts a notification unless one exists for its event and channel;
/// whether it was inserted.
pub async fn insert(conn: &mut PgConnection, new: &NewNotification) -> Result<bool, StoreError> {
    let (status, reason) = match &new.skipped {
        None => (Status::Pending, String::new()),
        Some(reason) => (Status::Skipped, reason.clone()),
    };
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, user_id, channel, event_type, source_event_id, subject, \
             body, status, status_reason, settled_seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             CASE WHEN $8 = 'pending' THEN NULL ELSE nextval('notifications_settled_seq') END) \
         ON CONFLICT ON CONSTRAINT notifications_event_channel DO NOTHING",
    )
    .bind(id)
    .bind(new.user_id)
    .bind(new.channel.as_str())
    .bind(new.event_type.as_str())
    .bind(new.source_event_id)
    .bind(&new.subject)
    .bind(&new.body)
    .bind(status.as_str())
    .bind(&reason)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        match status {
            Status::Pending => notify(conn, PENDING_CHANNEL, "").await?,
            _ => notify(conn, SETTLED_CHANNEL, &new.user_id.to_string()).await?,
        }
    }
    Ok(inserted)
}

#[derive(Clone)]
pub struct Store {
    db: PgPool,
}

impl Store {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    /// Every event type's choice for `user_id` (defaults filled in) and when
    /// they were last changed.
    pub async fn preferences(
        &self,
        user_id: Uuid,
    ) -> Result<(Vec<Preference>, Option<DateTime<Utc>>), StoreError> {
        let rows = sqlx::query(
            "SELECT event_type, email, sms, updated_at FROM notification_preferences \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.db)
        .await?;
        let mut prefs: Vec<Preference> = EventType::ALL
            .into_iter()
            .map(Preference::default_for)
            .collect();
        let mut updated: Option<DateTime<Utc>> = None;
        for row in rows {
            let name: String = row.try_get("event_type")?;
            let Some(event_type) = EventType::parse(&name) else {
                continue;
            };
            let at: DateTime<Utc> = row.try_get("updated_at")?;
            updated = Some(updated.map_or(at, |u| u.max(at)));
            if let Some(p) = prefs.iter_mut().find(|p| p.event_type == event_type) {
                p.email = row.try_get("email")?;
                p.sms = row.try_get("sms")?;
            }
        }
        Ok((prefs, updated))
    }

    pub async fn update_preferences(
        &self,
        user_id: Uuid,
        changes: &[Preference],
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        for p in changes {
            sqlx::query(
                "INSERT INTO notification_preferences (user_id, event_type, email, sms) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, event_type) \
                 DO UPDATE SET email = $3, sms = $4, updated_at = now()",
            )
            .bind(user_id)
            .bind(p.event_type.as_str())
            .bind(p.email)
            .bind(p.sms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A page of `user_id`'s notifications older than `before`, newest first.
    pub async fn list(
        &self,
        user_id: Uuid,
        channel: Option<Channel>,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM notifications \
             WHERE user_id = $1 AND ($2::text IS NULL OR channel = $2) \
               AND ($3::uuid IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(user_id)
        .bind(channel.map(Channel::as_str))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(Notification::from_row).collect()
    }

    /// `user_id`'s final notifications settled after `after_seq`, in that order.
    pub async fn settled_since(
        &self,
        user_id: Uuid,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM notifications \
             WHERE user_id = $1 AND settled_seq > $2 ORDER BY settled_seq LIMIT $3"
        ))
        .bind(user_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(Notification::from_row).collect()
    }

    /// The newest settled position of `user_id`'s notifications (0 for none).
    pub async fn last_settled(&self, user_id: Uuid) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(max(settled_seq), 0) FROM notifications WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(&self.db)
        .await?)
    }

    /// One of `user_id`'s notifications.
    pub async fn notification_of(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Notification>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM notifications WHERE user_id = $1 AND id = $2"
        ))
        .bind(user_id)
        .bind(id)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(Notification::from_row).transpose()
    }

    /// Claims up to `limit` due PENDING notifications for one attempt each,
    /// counting the attempt and leasing them for `lease`.
    pub async fn claim_due(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE notifications SET attempts = attempts + 1, \
                 next_attempt_at = now() + make_interval(secs => $2) \
             WHERE id IN (SELECT id FROM notifications \
                 WHERE status = 'pending' AND next_attempt_at <= now() \
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            columns!()
        ))
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(Notification::from_row).collect()
    }

    /// Tries again after `wait`; `count_attempt: false` gives the attempt back
    /// (it never reached the provider, e.g. svc-user was down).
    pub async fn retry_later(
        &self,
        id: Uuid,
        wait: Duration,
        reason: &str,
        count_attempt: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET next_attempt_at = now() + make_interval(secs => $2), \
                 status_reason = $3, attempts = attempts - CASE WHEN $4 THEN 0 ELSE 1 END \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(wait.as_secs_f64())
        .bind(reason)
        .bind(count_attempt)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Marks a notification SENT to `recipient`, publishes NotificationSent and
    /// tells watchers, in one transaction.
    pub async fn mark_sent(
        &self,
        notification: &Notification,
        recipient: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let sent_at: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE notifications SET status = 'sent', status_reason = '', recipient = $2, \
                 sent_at = now(), settled_seq = nextval('notifications_settled_seq') \
             WHERE id = $1 AND status = 'pending' RETURNING sent_at",
        )
        .bind(notification.id)
        .bind(recipient)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(sent_at) = sent_at else {
            // Settled meanwhile by another sender whose lease ran out.
            return Ok(false);
        };
        events::publish_sent(&mut tx, notification, sent_at).await?;
        notify(&mut tx, SETTLED_CHANNEL, &notification.user_id.to_string()).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a notification FAILED or SKIPPED with `reason` and tells watchers.
    pub async fn mark_final(
        &self,
        notification: &Notification,
        failed: bool,
        reason: &str,
    ) -> Result<(), StoreError> {
        let status = if failed {
            Status::Failed
        } else {
            Status::Skipped
        };
        let mut tx = self.db.begin().await?;
        let changed = sqlx::query(
            "UPDATE notifications SET status = $2, status_reason = $3, \
                 settled_seq = nextval('notifications_settled_seq') \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(notification.id)
        .bind(status.as_str())
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            notify(&mut tx, SETTLED_CHANNEL, &notification.user_id.to_string()).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
