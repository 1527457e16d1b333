//! The profile cache in Redis, ordered by profile version.
//!
//! An entry is a hash at `user:profile:<uuid>`: `v`, the profile's version, and
//! `p`, the profile as JSON. Every write goes through one Lua script that
//! stores the profile only when the entry is absent or holds a lower version,
//! atomically. So a read that loaded version 1 from PostgreSQL before an update
//! committed version 2 cannot put version 1 back once version 2 was written
//! through: the write that loses the race is refused, whichever order they reach
//! Redis in.
//!
//! Redis is an optimisation here, never a dependency: every call is bounded by
//! a short timeout and skipped outright while the client is disconnected, and
//! callers fall back to PostgreSQL on any error.

use std::future::Future;
use std::time::Duration;

use fred::prelude::{HashesInterface, LuaInterface};
use uuid::Uuid;

use crate::store::ProfileRecord;

/// How long a cache read or fill may take before the caller gives up on Redis.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// The write-through after an update may wait longer: the reads that follow
/// depend on it.
const WRITE_THROUGH_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS[1] = entry; ARGV = version, profile JSON, TTL seconds.
/// Returns 1 when stored, 0 when the entry already held that version or a newer one.
const STORE_IF_NEWER: &str = r"
local cached = tonumber(redis.call('HGET', KEYS[1], 'v'))
if cached and cached >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'p', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Redis(#[from] shopmesh_platform::redis::BoundedError),
    #[error("the cached profile is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Cached profiles, shared by every handler (cloning shares the connection).
#[derive(Clone)]
pub struct ProfileCache {
    redis: fred::prelude::Client,
    ttl: Duration,
}

/// The Redis key of a user's cached profile.
pub fn key(user_id: Uuid) -> String {
    format!("user:profile:{user_id}")
}

impl ProfileCache {
    pub fn new(redis: fred::prelude::Client, ttl: Duration) -> Self {
        Self { redis, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The cached profile, if any.
    pub async fn get(&self, user_id: Uuid) -> Result<Option<ProfileRecord>, CacheError> {
        let json: Option<String> = self
            .bounded(READ_TIMEOUT, self.redis.hget(key(user_id), "p"))
            .await?;
        // An entry written by an older release that no longer decodes counts as
        // unreadable; the caller serves PostgreSQL until the entry expires or a
        // newer version replaces it.
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    /// Caches a profile just read from PostgreSQL, unless the entry already holds
    /// this version or a newer one. True when stored.
    pub async fn fill(&self, profile: &ProfileRecord) -> Result<bool, CacheError> {
        self.store_if_newer(profile, READ_TIMEOUT).await
    }

    /// Caches a profile just updated, unless an even newer version got there first.
    pub async fn write_through(&self, profile: &ProfileRecord) -> Result<bool, CacheError> {
        self.store_if_newer(profile, WRITE_THROUGH_TIMEOUT).await
    }

    async fn store_if_newer(
        &self,
        profile: &ProfileRecord,
        timeout: Duration,
    ) -> Result<bool, CacheError> {
        let args = vec![
            profile.version.to_string(),
            serde_json::to_string(profile)?,
            self.ttl.as_secs().max(1).to_string(),
        ];
        let stored: i64 = self
            .bounded(
                timeout,
                self.redis.eval(STORE_IF_NEWER, key(profile.user_id), args),
            )
            .await?;
        Ok(stored == 1)
    }

    /// Runs one command unless Redis is known to be down, for at most `timeout`.
    /// A command cut off here may still run later; the version check keeps that
    /// harmless for writes.
    async fn bounded<T>(
        &self,
        timeout: Duration,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        Ok(shopmesh_platform::redis::bounded(&self.redis, timeout, command).await?)
    }
}
