//! svc-recommendation's own settings, on top of the ones every service has.

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};

#[derive(Clone, Debug)]
pub struct RecommendationSettings {
    /// svc-product, for the catalog (`PRODUCT_GRPC_URL`).
    pub product_url: String,
    /// svc-inventory, for availability (`INVENTORY_GRPC_URL`, WatchStock).
    pub inventory_url: String,
    /// How often a new model is trained (`RECOMMENDATION_TRAIN_INTERVAL_SECONDS`,
    /// default 3600): a replica trains when the newest model is older than this.
    pub train_interval: Duration,
    /// How often the live catalog (deletions, new products) is re-read from
    /// svc-product between trainings (`RECOMMENDATION_CATALOG_REFRESH_SECONDS`, 60).
    pub catalog_refresh: Duration,
    /// How often replicas look for a newer persisted model besides LISTEN
    /// (`RECOMMENDATION_MODEL_POLL_SECONDS`, 30).
    pub model_poll: Duration,
    /// Items the personal model covers, the best sellers first
    /// (`RECOMMENDATION_PERSONAL_MAX_ITEMS`, 2000; memory and training time grow
    /// with its square and cube).
    pub personal_max_items: usize,
    /// Seed the demo purchase history into an empty purchase table
    /// (`SEED_DEMO_ORDERS`, default true; false in production).
    pub seed_demo_orders: bool,
    /// The Kafka consumer group (`RECOMMENDATION_CONSUMER_GROUP`,
    /// `svc-recommendation`); the same on every replica. Tests use their own.
    pub consumer_group: String,
}

impl RecommendationSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let personal_max_items: usize = env.or("RECOMMENDATION_PERSONAL_MAX_ITEMS", 2000)?;
        if !(1..=10_000).contains(&personal_max_items) {
            return Err(SettingsError {
                variable: "RECOMMENDATION_PERSONAL_MAX_ITEMS".to_owned(),
                reason: format!("{personal_max_items} is outside 1..=10000"),
            });
        }
        Ok(Self {
            product_url: env.grpc_url("PRODUCT_GRPC_URL", "http://127.0.0.1:50053")?,
            inventory_url: env.grpc_url("INVENTORY_GRPC_URL", "http://127.0.0.1:50054")?,
            train_interval: env.seconds("RECOMMENDATION_TRAIN_INTERVAL_SECONDS", 3600)?,
            catalog_refresh: env.seconds("RECOMMENDATION_CATALOG_REFRESH_SECONDS", 60)?,
            model_poll: env.seconds("RECOMMENDATION_MODEL_POLL_SECONDS", 30)?,
            personal_max_items,
            seed_demo_orders: env.or("SEED_DEMO_ORDERS", true)?,
            consumer_group: env.or(
                "RECOMMENDATION_CONSUMER_GROUP",
                "svc-recommendation".to_owned(),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let settings =
            RecommendationSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(settings.product_url, "http://127.0.0.1:50053");
        assert_eq!(settings.inventory_url, "http://127.0.0.1:50054");
        assert_eq!(settings.train_interval, Duration::from_secs(3600));
        assert_eq!(settings.catalog_refresh, Duration::from_secs(60));
        assert_eq!(settings.model_poll, Duration::from_secs(30));
        assert_eq!(settings.personal_max_items, 2000);
        assert!(settings.seed_demo_orders);
        assert_eq!(settings.consumer_group, "svc-recommendation");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("RECOMMENDATION_TRAIN_INTERVAL_SECONDS", "0"),
            ("RECOMMENDATION_TRAIN_INTERVAL_SECONDS", "hourly"),
            ("RECOMMENDATION_CATALOG_REFRESH_SECONDS", "100000"),
            ("RECOMMENDATION_MODEL_POLL_SECONDS", "-1"),
            ("RECOMMENDATION_PERSONAL_MAX_ITEMS", "0"),
            ("PRODUCT_GRPC_URL", "127.0.0.1:50053"),
            ("INVENTORY_GRPC_URL", "inventory"),
            ("SEED_DEMO_ORDERS", "maybe"),
        ] {
            let err =
                RecommendationSettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }
}
