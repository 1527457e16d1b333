//! The sender: a background task on every replica that claims due PENDING
//! notifications (`FOR UPDATE SKIP LOCKED`, leased by `next_attempt_at`),
//! looks up the recipient in svc-user, hands the message to its provider and
//! settles the row — SENT with `NotificationSent` in the outbox, or after a
//! refusal retried with exponential backoff until `max_attempts`, then FAILED.
//! It wakes on `pg_notify` from the handler, and polls every second as well
//! (for retries that come due, and in case a notification is lost).
//!
//! Delivery is at-least-once towards the provider: a crash after the provider
//! accepted a message but before the row is marked SENT sends it again once
//! the lease ends, with the same Message-ID / Idempotency-Key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use shopmesh_platform::backoff::Backoff;
use shopmesh_platform::db::relay_notifications;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::model::{Channel, Notification};
use crate::providers::{Email, Mailer, SendError, Sms, SmsProvider};
use crate::recipients::{LookupError, Recipients};
use crate::store::{PENDING_CHANNEL, Store};

/// How long a claimed notification is left alone while one attempt runs
/// (longer than the SMTP/HTTP timeouts plus the svc-user call).
const LEASE: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const BATCH: i64 = 16;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

pub struct Sender {
    pub store: Store,
    pub recipients: Recipients,
    pub mailer: Mailer,
    pub sms: Arc<dyn SmsProvider>,
    pub max_attempts: i32,
    pub max_backoff: Duration,
}

/// How long a notification waits for its recipient's profile to exist before
/// it fails: longer than svc-auth takes to create it after a registration,
/// even across a short svc-user outage.
const PROFILE_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// The wait before the attempt after `attempts` failed ones: 1 s doubling,
/// at most `max`, jittered.
fn backoff(attempts: i32, max: Duration) -> Duration {
    Backoff::new(FIRST_BACKOFF, max).jittered(attempts.try_into().unwrap_or(0))
}

impl Sender {
    /// Runs until `shutdown`; a claimed batch is finished first.
    pub async fn spawn(
        self,
        db: &PgPool,
        shutdown: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        relay_notifications(db, PENDING_CHANNEL, move |_| woken.notify_one()).await?;
        Ok(tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                let busy = match self.send_due().await {
                    Ok(n) => n > 0,
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming notifications failed");
                        false
                    }
                };
                if busy {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        }))
    }

    /// One batch: how many notifications were claimed.
    pub async fn send_due(&self) -> Result<usize, StoreError> {
        let due = self.store.claim_due(BATCH, LEASE).await?;
        let claimed = due.len();
        let sends = due.into_iter().map(|n| async move {
            if let Err(err) = self.deliver(&n).await {
                tracing::warn!(notification_id = %n.id, error = %err, "settling a notification failed; retried after its lease");
            }
        });
        futures::future::join_all(sends).await;
        Ok(claimed)
    }

    async fn deliver(&self, n: &Notification) -> Result<(), StoreError> {
        let channel = n.channel.as_str();
        let contact = match self.recipients.contact(n.user_id).await {
            Ok(contact) => contact,
            // svc-auth creates the profile right after the account, and
            // retries while svc-user is down: a welcome can arrive first.
            Err(LookupError::NotFound) if Utc::now() - n.created_at < PROFILE_GRACE => {
                outcome(channel, "deferred");
                return self
                    .store
                    .retry_later(
                        n.id,
                        backoff(3, self.max_backoff),
                        "waiting for the recipient's profile",
                        false,
                    )
                    .await;
            }
            Err(LookupError::NotFound) => {
                outcome(channel, "failed");
                return self
                    .store
                    .mark_final(n, true, "the user has no profile")
                    .await;
            }
            Err(LookupError::Unavailable(reason)) => {
                // Never the provider's fault: the attempt is given back and the
                // notification waits for svc-user however long it takes.
                outcome(channel, "deferred");
                tracing::warn!(notification_id = %n.id, %reason, "recipient lookup failed; retrying");
                let wait = backoff(2, self.max_backoff);
                return self
                    .store
                    .retry_later(n.id, wait, "waiting for the recipient's profile", false)
                    .await;
            }
        };
        let started = Instant::now();
        let (recipient, result) = match n.channel {
            Channel::Email => {
                if contact.email.is_empty() {
                    outcome(channel, "skipped");
                    return self
                        .store
                        .mark_final(n, false, "no email on the profile")
                        .await;
                }
                let email = Email {
                    notification_id: n.id,
                    to: &contact.email,
                    subject: &n.subject,
                    body: &n.body,
                };
                (contact.email.clone(), self.mailer.send(&email).await)
            }
            Channel::Sms => {
                if contact.phone.is_empty() {
                    outcome(channel, "skipped");
                    return self
                        .store
                        .mark_final(n, false, "no phone on the profile")
                        .await;
                }
                let sms = Sms {
                    notification_id: n.id,
                    to: &contact.phone,
                    text: &n.body,
                };
                (contact.phone.clone(), self.sms.send(&sms).await)
            }
        };
        metrics::histogram!("notification_send_seconds", "channel" => channel)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                outcome(channel, "sent");
                tracing::info!(notification_id = %n.id, channel, attempts = n.attempts, "notification sent");
                self.store.mark_sent(n, &recipient).await.map(|_| ())
            }
            Err(SendError { permanent, message })
                if permanent || n.attempts >= self.max_attempts =>
            {
                outcome(channel, "failed");
                tracing::warn!(notification_id = %n.id, channel, attempts = n.attempts, %message, "notification failed");
                self.store.mark_final(n, true, &message).await
            }
            Err(SendError { message, .. }) => {
                outcome(channel, "retry");
                let wait = backoff(n.attempts, self.max_backoff);
                tracing::info!(notification_id = %n.id, channel, attempts = n.attempts, %message, retry_in = ?wait, "send failed; retrying");
                self.store.retry_later(n.id, wait, &message, true).await
            }
        }
    }
}

fn outcome(channel: &'static str, outcome: &'static str) {
    metrics::counter!("notifications_sent_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
}
