//! svc-product's own settings, on top of the ones every service has.

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};

#[derive(Clone, Debug)]
pub struct ProductSettings {
    /// `SEED_DEMO_CATALOG` (default true): load the demo catalog into an empty catalog.
    pub seed_demo_catalog: bool,
    /// `PRODUCT_CACHE_TTL_SECONDS` (default 300, at most 86400; 0 turns the cache off).
    pub cache_ttl: Option<Duration>,
    /// `PRODUCT_MEMORY_CACHE_MB` (default 32, at most 4096; 0 turns it off):
    /// what each replica may hold in memory in front of Redis, products and
    /// listing pages (about half each). Off whenever the Redis cache is off.
    pub memory_cache_bytes: usize,
    /// `PRODUCT_CACHE_PREFIX`: prepended to every Redis key; defaults to the
    /// database name and a colon, so catalogs sharing a Redis never see each
    /// other's entries.
    pub cache_prefix: Option<String>,
    /// `INVENTORY_GRPC_URL` (default http://127.0.0.1:50054): where WatchStock is.
    pub inventory_url: String,
    /// `CATALOG_CURRENCY` (default USD): the one ISO 4217 currency of every price.
    pub currency: String,
}

impl ProductSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let ttl_seconds: u64 = env.or("PRODUCT_CACHE_TTL_SECONDS", 300)?;
        if ttl_seconds > 86_400 {
            return Err(SettingsError {
                variable: "PRODUCT_CACHE_TTL_SECONDS".to_owned(),
                reason: format!("{ttl_seconds} is above 86400 seconds"),
            });
        }
        let memory_mb: usize = env.within("PRODUCT_MEMORY_CACHE_MB", 32, 0..=4096)?;
        let inventory_url = env.grpc_url("INVENTORY_GRPC_URL", "http://127.0.0.1:50054")?;
        let currency: String = env.or("CATALOG_CURRENCY", "USD".to_owned())?;
        if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(SettingsError {
                variable: "CATALOG_CURRENCY".to_owned(),
                reason: format!("{currency:?} is not an ISO 4217 code (three upper-case letters)"),
            });
        }
        Ok(Self {
            seed_demo_catalog: env.or("SEED_DEMO_CATALOG", true)?,
            cache_ttl: (ttl_seconds > 0).then(|| Duration::from_secs(ttl_seconds)),
            memory_cache_bytes: memory_mb << 20,
            cache_prefix: env.raw("PRODUCT_CACHE_PREFIX"),
            inventory_url,
            currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let settings = ProductSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert!(settings.seed_demo_catalog);
        assert_eq!(settings.cache_ttl, Some(Duration::from_secs(300)));
        assert_eq!(settings.inventory_url, "http://127.0.0.1:50054");
        assert_eq!(settings.currency, "USD");
        assert_eq!(settings.cache_prefix, None);
        assert_eq!(settings.memory_cache_bytes, 32 << 20);
    }

    #[test]
    fn zero_turns_the_cache_off() {
        let env = Env::from_pairs([("PRODUCT_CACHE_TTL_SECONDS", "0")]);
        assert_eq!(ProductSettings::from_env(&env).unwrap().cache_ttl, None);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("PRODUCT_CACHE_TTL_SECONDS", "86401"),
            ("PRODUCT_CACHE_TTL_SECONDS", "soon"),
            ("PRODUCT_MEMORY_CACHE_MB", "4097"),
            ("PRODUCT_MEMORY_CACHE_MB", "-1"),
            ("INVENTORY_GRPC_URL", "127.0.0.1:50054"),
            ("CATALOG_CURRENCY", "usd"),
            ("SEED_DEMO_CATALOG", "maybe"),
        ] {
            let err = ProductSettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }
}
