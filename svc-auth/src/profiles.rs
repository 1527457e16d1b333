//! The svc-user profile every account must have. Registration writes a
//! `pending_profiles` row in the account's own transaction and calls
//! CreateProfile at once; if svc-user cannot be reached, a background task
//! retries the row with exponential backoff until svc-user answers. CreateProfile
//! is idempotent by user id, so a retry after a lost answer does no harm.

use std::time::Duration;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::backoff::Backoff;
use shopmesh_platform::clients::{Authenticated, LazyChannel};
use shopmesh_proto::shop::user::v1::CreateProfileRequest;
use shopmesh_proto::shop::user::v1::user_service_client::UserServiceClient;
use uuid::Uuid;

use crate::store::{PendingProfile, Store};

/// How long a claimed row is left alone while one attempt runs.
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(30);
/// How often the retry task looks for due rows.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Rows retried per query.
const BATCH: i64 = 16;
/// First wait after a failed attempt; doubles with each attempt.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// svc-user as svc-auth calls it: connect within 2 s, every call within 5 s.
const USER_SERVICE: LazyChannel =
    LazyChannel::new(Duration::from_secs(2)).call_timeout(Duration::from_secs(5));

#[derive(Clone)]
pub struct ProfileSync {
    store: Store,
    client: UserServiceClient<Authenticated>,
    max_backoff: Duration,
}

impl ProfileSync {
    /// Connects lazily: svc-auth starts (and registers users) while svc-user is down.
    pub fn new(
        store: Store,
        user_url: &str,
        credentials: ServiceCredentials,
        max_backoff: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            client: UserServiceClient::new(USER_SERVICE.authenticated(user_url, credentials)?),
            max_backoff,
        })
    }

    /// One attempt for a pending row; `attempts` counts this one. Failures are
    /// logged and rescheduled, never returned: the row guarantees a later retry.
    pub async fn attempt(&self, profile: &PendingProfile) {
        let request = CreateProfileRequest {
            user_id: profile.user_id.to_string(),
            email: profile.email.clone(),
            display_name: profile.display_name.clone(),
        };
        let outcome = self.client.clone().create_profile(request).await;
        let stored = match outcome {
            Ok(_) => {
                tracing::info!(user_id = %profile.user_id, attempts = profile.attempts, "profile created in svc-user");
                self.store.profile_created(profile.user_id).await
            }
            Err(status) => {
                let retry_in = Backoff::new(FIRST_BACKOFF, self.max_backoff)
                    .jittered(profile.attempts.try_into().unwrap_or(0));
                tracing::warn!(
                    user_id = %profile.user_id,
                    attempts = profile.attempts,
                    retry_in_seconds = retry_in.as_secs(),
                    code = ?status.code(),
                    message = status.message(),
                    "cannot create the profile in svc-user yet"
                );
                let error = format!("{:?}: {}", status.code(), status.message());
                self.store
                    .profile_failed(profile.user_id, retry_in, &error)
                    .await
            }
        };
        if let Err(err) = stored {
            // The lease runs out and the row is retried; nothing is lost.
            tracing::warn!(user_id = %profile.user_id, error = %err, "cannot record the profile attempt");
        }
    }

    /// Creates the profile of an account registered this instant.
    pub async fn create_now(&self, user_id: Uuid, email: &str, display_name: &str) {
        self.attempt(&PendingProfile {
            user_id,
            email: email.to_owned(),
            display_name: display_name.to_owned(),
            attempts: 1,
        })
        .await;
    }

    /// Retries due rows until the service shuts down.
    pub async fn retry_pending(self) {
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            if self.store.is_closed() {
                return;
            }
            loop {
                let due = match self.store.claim_due_profiles(BATCH, ATTEMPT_LEASE).await {
                    Ok(due) => due,
                    Err(err) => {
                        if !self.store.is_closed() {
                            tracing::warn!(error = %err, "cannot read pending profiles");
                        }
                        break;
                    }
                };
                if due.is_empty() {
                    break;
                }
                for profile in &due {
                    self.attempt(profile).await;
                }
            }
        }
    }
}
