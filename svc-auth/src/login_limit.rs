//! Failed sign-ins counted in Redis, per account and per client address, so
//! neither guessing one account's password nor spraying many accounts from one
//! address gets far.
//!
//! Each counter is a fixed window: the first attempt creates it with the window
//! as its expiry. An attempt is *admitted* only while both counters are below
//! their limits, and admission counts it at once, in one atomic script: a burst
//! of parallel guesses cannot all slip past the check before any is counted.
//! A successful sign-in gives its slot back (clearing the account's counter and
//! taking one off the client's), so only failures remain counted. Whether the
//! account exists changes nothing here, so a refusal reveals nothing about it.

use std::net::IpAddr;
use std::time::Duration;

use fred::prelude::*;
use sha2::{Digest, Sha256};

use crate::settings::LoginLimits;

#[derive(Clone)]
pub struct LoginLimiter {
    redis: Client,
    limits: LoginLimits,
}

/// The Redis key of an account's counter; the email is hashed so addresses do
/// not sit in Redis in clear.
fn account_key(email_key: &str) -> String {
    let digest = Sha256::digest(email_key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("auth:login-failures:account:{hex}")
}

fn client_key(client: &str) -> String {
    format!("auth:login-failures:client:{client}")
}

/// The bucket an address is counted in: an IPv4 address, or the /64 of an
/// IPv6 address (one subscriber usually holds a whole /64).
pub fn client_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Admits an attempt, or returns the milliseconds until the fuller counter expires.
/// KEYS: account counter, client counter. ARGV: account limit, client limit, window (s).
const ADMIT: &str = r"
local wait = -1
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = tonumber(ARGV[3]) * 1000 end
    if ttl > wait then wait = ttl end
  end
end
if wait >= 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[3], 'NX')
end
return -1
";

/// Gives a successful attempt's slot back. KEYS: account counter, client counter.
const FORGIVE: &str = r"
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECR', KEYS[2]) end
return 0
";

impl LoginLimiter {
    pub fn new(redis: Client, limits: LoginLimits) -> Self {
        Self { redis, limits }
    }

    /// Counts an attempt, or when the account or the client is locked out,
    /// returns how long until it may try again (whole seconds, rounded up: what
    /// a Retry-After header can say).
    pub async fn admit(&self, email_key: &str, client: &str) -> Result<Option<Duration>, Error> {
        let keys = vec![account_key(email_key), client_key(client)];
        let args = vec![
            i64::from(self.limits.per_account),
            i64::from(self.limits.per_client),
            self.limits.window.as_secs() as i64,
        ];
        let wait_ms: i64 = self.redis.eval(ADMIT, keys, args).await?;
        Ok((wait_ms >= 0).then(|| Duration::from_secs((wait_ms as u64).div_ceil(1000).max(1))))
    }

    /// Records that the admitted attempt succeeded. The client keeps its other
    /// failures: one good password must not wash a spraying address clean.
    pub async fn succeeded(&self, email_key: &str, client: &str) -> Result<(), Error> {
        let keys = vec![account_key(email_key), client_key(client)];
        let _: i64 = self.redis.eval(FORGIVE, keys, Vec::<i64>::new()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_bucket(a), client_bucket(b));
        assert_eq!(client_bucket(a), "2001:db8:1:2::/64");
        assert_eq!(
            client_bucket("::ffff:203.0.113.7".parse().unwrap()),
            "203.0.113.7"
        );
        assert_eq!(client_bucket("203.0.113.7".parse().unwrap()), "203.0.113.7");
    }

    #[test]
    fn account_keys_do_not_show_the_email() {
        let key = account_key("ada@example.com");
        assert!(!key.contains("ada"));
        assert_eq!(key, account_key("ada@example.com"));
    }
}
