//! Sessions in Redis (the seed's token store): a token is only good while its
//! session key exists, so logout takes effect at the next request everywhere.

use std::time::Duration;

use fred::prelude::*;
use fred::types::Expiration;
use uuid::Uuid;

#[derive(Clone)]
pub struct SessionStore {
    redis: Client,
}

fn session_key(session: Uuid) -> String {
    format!("auth:session:{session}")
}

fn user_key(user: Uuid) -> String {
    format!("auth:user-sessions:{user}")
}

impl SessionStore {
    pub fn new(redis: Client) -> Self {
        Self { redis }
    }

    /// Records a live session for `ttl` (the refresh-token lifetime).
    pub async fn open(&self, session: Uuid, user: Uuid, ttl: Duration) -> Result<(), Error> {
        let secs = ttl.as_secs().max(1) as i64;
        let tx = self.redis.multi();
        let () = tx
            .set(
                session_key(session),
                user.to_string(),
                Some(Expiration::EX(secs)),
                None,
                false,
            )
            .await?;
        let () = tx.sadd(user_key(user), session.to_string()).await?;
        let () = tx.expire(user_key(user), secs, None).await?;
        let _: Vec<Value> = tx.exec(true).await?;
        Ok(())
    }

    /// Extends a live session (on refresh). False when it no longer exists.
    pub async fn extend(&self, session: Uuid, user: Uuid, ttl: Duration) -> Result<bool, Error> {
        let secs = ttl.as_secs().max(1) as i64;
        let extended: bool = self.redis.expire(session_key(session), secs, None).await?;
        if extended {
            let _: bool = self.redis.expire(user_key(user), secs, None).await?;
        }
        Ok(extended)
    }

    /// Whether the session is live. Called on every authenticated request.
    pub async fn is_active(&self, session: Uuid) -> Result<bool, Error> {
        let count: i64 = self.redis.exists(session_key(session)).await?;
        Ok(count > 0)
    }

    /// Ends one session.
    pub async fn revoke(&self, session: Uuid, user: Uuid) -> Result<(), Error> {
        let _: i64 = self.redis.del(session_key(session)).await?;
        let _: i64 = self.redis.srem(user_key(user), session.to_string()).await?;
        Ok(())
    }

    /// Ends every session of a user; returns how many were live.
    pub async fn revoke_all(&self, user: Uuid) -> Result<usize, Error> {
        let sessions: Vec<String> = self.redis.smembers(user_key(user)).await?;
        let keys: Vec<String> = sessions
            .iter()
            .filter_map(|s| Uuid::parse_str(s).ok())
            .map(session_key)
            .collect();
        let live = if keys.is_empty() {
            0
        } else {
            let deleted: i64 = self.redis.del(keys).await?;
            deleted as usize
        };
        let _: i64 = self.redis.del(user_key(user)).await?;
        Ok(live)
    }
}
