//! Reading profiles through the cache and writing updated ones through to it.
//!
//! Read: cache hit → done; miss (or Redis unavailable) → PostgreSQL, then fill
//! the cache with what was read (refused if a newer version is already there).
//! Update: commit in PostgreSQL (the version goes up), then write the new
//! version through before answering, so the caller's next read sees it.
//!
//! If the write-through fails, the entry may still hold the old version.
//! This replica then bypasses the cache for that user and keeps retrying the
//! write-through in the background until it lands, or until any entry written
//! before it has surely expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shopmesh_platform::backoff::Backoff;
use shopmesh_platform::metrics::cache_lookup;
use uuid::Uuid;

use crate::cache::ProfileCache;
use crate::store::{ProfileRecord, Store};

/// The `cache` label of this cache's hit and miss counters.
const CACHE_NAME: &str = "profile";
const RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));

#[derive(Clone)]
pub struct Profiles {
    store: Store,
    cache: ProfileCache,
    /// Users with write-throughs still being retried (and how many): the cache
    /// may be stale for them.
    unsettled: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl Profiles {
    pub fn new(store: Store, cache: ProfileCache) -> Self {
        Self {
            store,
            cache,
            unsettled: Arc::default(),
        }
    }

    /// A profile, from the cache when it holds one, else from PostgreSQL.
    /// Redis trouble is logged and counted as a miss, never returned.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, user_id: Uuid) -> sqlx::Result<Option<ProfileRecord>> {
        let unsettled = self.is_unsettled(user_id);
        if !unsettled {
            match self.cache.get(user_id).await {
                Ok(Some(profile)) => {
                    cache_lookup(CACHE_NAME, true);
                    return Ok(Some(profile));
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "profile cache read failed, reading PostgreSQL")
                }
            }
        }
        cache_lookup(CACHE_NAME, false);
        let profile = self.store.profile(user_id).await?;
        if let Some(profile) = &profile
            && !unsettled
            && let Err(err) = self.cache.fill(profile).await
        {
            tracing::warn!(error = %err, "could not fill the profile cache");
        }
        Ok(profile)
    }

    /// Writes a just-committed profile through to the cache before the update
    /// is answered.
    #[tracing::instrument(skip_all, fields(user_id = %profile.user_id, version = profile.version))]
    pub async fn updated(&self, profile: &ProfileRecord) {
        match self.cache.write_through(profile).await {
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "profile write-through failed, retrying in the background");
                self.mark_unsettled(profile.user_id, true);
                let profiles = self.clone();
                let profile = profile.clone();
                tokio::spawn(async move { profiles.settle(profile).await });
            }
        }
    }

    /// Retries a failed write-through until it lands. Stops after a TTL (plus a
    /// margin for reads in flight): by then no entry older than this version can
    /// remain.
    async fn settle(&self, profile: ProfileRecord) {
        let give_up = Instant::now() + self.cache.ttl() + Duration::from_secs(60);
        let mut failures = 0;
        loop {
            failures += 1;
            tokio::time::sleep(RETRY.jittered(failures)).await;
            match self.cache.write_through(&profile).await {
                Ok(_) => {
                    tracing::info!(user_id = %profile.user_id, "profile cache settled");
                    break;
                }
                Err(err) if Instant::now() >= give_up => {
                    tracing::warn!(error = %err, "giving up the profile write-through");
                    break;
                }
                Err(_) => {}
            }
        }
        self.mark_unsettled(profile.user_id, false);
    }

    fn is_unsettled(&self, user_id: Uuid) -> bool {
        self.unsettled
            .lock()
            .map(|pending| pending.contains_key(&user_id))
            .unwrap_or(true)
    }

    fn mark_unsettled(&self, user_id: Uuid, unsettled: bool) {
        let Ok(mut pending) = self.unsettled.lock() else {
            return;
        };
        let count = pending.entry(user_id).or_default();
        if unsettled {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                pending.remove(&user_id);
            }
        }
    }
}
