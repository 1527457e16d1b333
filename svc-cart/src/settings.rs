//! svc-cart's own settings, on top of the ones every service has.

use std::time::Duration;

use shopmesh_platform::settings::{Env, RedisSettings, SettingsError};

/// Seven days: how long an anonymous cart lives without a change, by default.
pub const DEFAULT_IDLE_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// A year: the longest idle lifetime an operator may configure.
const MAX_IDLE_TTL_SECONDS: u64 = 365 * 24 * 3600;

#[derive(Clone, Debug)]
pub struct CartSettings {
    /// `CART_IDLE_TTL_SECONDS` (default 604800 = 7 days, 1 to 31536000): an
    /// anonymous cart expires this long after its last change.
    pub idle_ttl: Duration,
    /// `PRODUCT_GRPC_URL` (default http://127.0.0.1:50053): names and prices.
    pub product_url: String,
    /// `INVENTORY_GRPC_URL` (default http://127.0.0.1:50054): availability.
    pub inventory_url: String,
    /// `USER_GRPC_URL` (default http://127.0.0.1:50052): the shipping address
    /// at checkout.
    pub user_url: String,
    /// `ORDER_GRPC_URL` (default http://127.0.0.1:50056): CreateOrder at
    /// checkout.
    pub order_url: String,
    /// `CART_REDIS_URL`: a Redis of its own for the carts (persistent, never
    /// evicting); unset, carts live in the `REDIS_URL` Redis, beside sessions.
    pub cart_redis: Option<RedisSettings>,
}

impl CartSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        const TTL: &str = "CART_IDLE_TTL_SECONDS";
        let ttl: u64 = env.or(TTL, DEFAULT_IDLE_TTL_SECONDS)?;
        if !(1..=MAX_IDLE_TTL_SECONDS).contains(&ttl) {
            return Err(SettingsError {
                variable: TTL.to_owned(),
                reason: format!("{ttl} is outside 1..={MAX_IDLE_TTL_SECONDS} seconds (a year)"),
            });
        }
        Ok(Self {
            idle_ttl: Duration::from_secs(ttl),
            product_url: env.grpc_url("PRODUCT_GRPC_URL", "http://127.0.0.1:50053")?,
            inventory_url: env.grpc_url("INVENTORY_GRPC_URL", "http://127.0.0.1:50054")?,
            user_url: env.grpc_url("USER_GRPC_URL", "http://127.0.0.1:50052")?,
            order_url: env.grpc_url("ORDER_GRPC_URL", "http://127.0.0.1:50056")?,
            cart_redis: cart_redis(env)?,
        })
    }
}

/// `CART_REDIS_URL`, checked by the same rules as `REDIS_URL` (and named in the
/// error as itself).
fn cart_redis(env: &Env) -> Result<Option<RedisSettings>, SettingsError> {
    const NAME: &str = "CART_REDIS_URL";
    let Some(url) = env.raw(NAME) else {
        return Ok(None);
    };
    RedisSettings::from_env(&Env::from_pairs([("REDIS_URL", url)]))
        .map(Some)
        .map_err(|err| SettingsError {
            variable: NAME.to_owned(),
            reason: err.reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let settings = CartSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(settings.idle_ttl, Duration::from_secs(604_800));
        assert_eq!(settings.product_url, "http://127.0.0.1:50053");
        assert_eq!(settings.inventory_url, "http://127.0.0.1:50054");
        assert_eq!(settings.user_url, "http://127.0.0.1:50052");
        assert_eq!(settings.order_url, "http://127.0.0.1:50056");
        assert!(settings.cart_redis.is_none());
    }

    #[test]
    fn a_separate_cart_redis_is_optional_and_never_printed() {
        let env = Env::from_pairs([("CART_REDIS_URL", "redis://:hunter2@carts:6379/0")]);
        let settings = CartSettings::from_env(&env).unwrap();
        let redis = settings.cart_redis.unwrap();
        assert_eq!(redis.url.expose(), "redis://:hunter2@carts:6379/0");
        assert!(!format!("{redis:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("CART_IDLE_TTL_SECONDS", "0"),
            ("CART_IDLE_TTL_SECONDS", "31536001"),
            ("CART_IDLE_TTL_SECONDS", "a week"),
            ("PRODUCT_GRPC_URL", "127.0.0.1:50053"),
            ("INVENTORY_GRPC_URL", "inventory:50054"),
            ("USER_GRPC_URL", "user:50052"),
            ("ORDER_GRPC_URL", "grpc://order:50056"),
            ("CART_REDIS_URL", "http://carts:6379"),
        ] {
            let err = CartSettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }
}
