//! svc-order's own settings, on top of the ones every service has.

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};

use crate::clients::CALL_DEADLINE;
use crate::ledger::CheckSettings;

#[derive(Clone, Debug)]
pub struct OrderSettings {
    /// svc-product, for pricing (`PRODUCT_GRPC_URL`).
    pub product_url: String,
    /// svc-inventory, for reservations (`INVENTORY_GRPC_URL`).
    pub inventory_url: String,
    /// svc-payment (`PAYMENT_GRPC_URL`).
    pub payment_url: String,
    /// How long the forward steps of a saga may keep failing transiently
    /// before it compensates and the order FAILs (`ORDER_SAGA_TIMEOUT_SECONDS`, 60).
    pub saga_timeout: Duration,
    /// How long a runner holds a saga it claimed without recording progress;
    /// a crashed runner's sagas are picked up after it (`ORDER_SAGA_LEASE_SECONDS`,
    /// 30, at least 10: longer than one call to a dependency).
    pub saga_lease: Duration,
    /// Longest wait between two tries of a compensation step
    /// (`ORDER_SAGA_MAX_BACKOFF_SECONDS`, 30). Forward steps wait at most 5 s.
    pub max_backoff: Duration,
    /// How long CreateOrder and CancelOrder wait for the saga to settle
    /// before answering with the order as it stands, unless the call's
    /// deadline is nearer (`ORDER_RESPONSE_WAIT_SECONDS`, 10).
    pub response_wait: Duration,
    /// The Kafka consumer group of the payment ledger (`ORDER_CONSUMER_GROUP`,
    /// `svc-order`); the same on every replica (KEDA scales on its lag).
    pub consumer_group: String,
    /// How long after an order settled its payment books are checked
    /// (`ORDER_LEDGER_GRACE_SECONDS`, 300), and how often
    /// (`ORDER_LEDGER_CHECK_SECONDS`, 60).
    pub ledger_check: CheckSettings,
}

impl OrderSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let saga_lease = env.seconds("ORDER_SAGA_LEASE_SECONDS", 30)?;
        if saga_lease < CALL_DEADLINE * 2 {
            return Err(SettingsError {
                variable: "ORDER_SAGA_LEASE_SECONDS".to_owned(),
                reason: format!(
                    "{} is below 10 seconds, twice a call's deadline",
                    saga_lease.as_secs()
                ),
            });
        }
        Ok(Self {
            product_url: env.grpc_url("PRODUCT_GRPC_URL", "http://127.0.0.1:50053")?,
            inventory_url: env.grpc_url("INVENTORY_GRPC_URL", "http://127.0.0.1:50054")?,
            payment_url: env.grpc_url("PAYMENT_GRPC_URL", "http://127.0.0.1:50057")?,
            saga_timeout: env.seconds("ORDER_SAGA_TIMEOUT_SECONDS", 60)?,
            saga_lease,
            max_backoff: env.seconds("ORDER_SAGA_MAX_BACKOFF_SECONDS", 30)?,
            response_wait: env.seconds("ORDER_RESPONSE_WAIT_SECONDS", 10)?,
            consumer_group: env.or("ORDER_CONSUMER_GROUP", "svc-order".to_owned())?,
            ledger_check: CheckSettings {
                grace: env.seconds("ORDER_LEDGER_GRACE_SECONDS", 300)?,
                interval: env.seconds("ORDER_LEDGER_CHECK_SECONDS", 60)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let settings = OrderSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(settings.payment_url, "http://127.0.0.1:50057");
        assert_eq!(settings.inventory_url, "http://127.0.0.1:50054");
        assert_eq!(settings.product_url, "http://127.0.0.1:50053");
        assert_eq!(settings.saga_timeout, Duration::from_secs(60));
        assert_eq!(settings.saga_lease, Duration::from_secs(30));
        assert_eq!(settings.response_wait, Duration::from_secs(10));
        assert_eq!(settings.consumer_group, "svc-order");
        assert_eq!(settings.ledger_check.grace, Duration::from_secs(300));
        assert_eq!(settings.ledger_check.interval, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("PAYMENT_GRPC_URL", "127.0.0.1:50057"),
            ("PRODUCT_GRPC_URL", "grpc://x"),
            ("INVENTORY_GRPC_URL", "x"),
            ("ORDER_SAGA_TIMEOUT_SECONDS", "0"),
            ("ORDER_SAGA_LEASE_SECONDS", "5"),
            ("ORDER_SAGA_MAX_BACKOFF_SECONDS", "soon"),
            ("ORDER_RESPONSE_WAIT_SECONDS", "-1"),
            ("ORDER_LEDGER_CHECK_SECONDS", "0"),
        ] {
            let err = OrderSettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }
}
