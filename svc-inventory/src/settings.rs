//! The settings svc-inventory reads besides the common ones, checked before
//! any connection (a bad one stops the binary with exit 2, naming it).

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};

/// svc-inventory's own settings, on top of what every service has.
#[derive(Clone, Debug)]
pub struct InventorySettings {
    /// Load the demo catalog's stock into an empty stock table (`SEED_DEMO_STOCK`,
    /// default true; false in a real shop).
    pub seed_demo_stock: bool,
    /// How often overdue reservations are expired (`RESERVATION_SWEEP_SECONDS`,
    /// 1 to 86400, default 30).
    pub sweep_every: Duration,
}

impl InventorySettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            seed_demo_stock: env.or("SEED_DEMO_STOCK", true)?,
            sweep_every: env.seconds("RESERVATION_SWEEP_SECONDS", 30)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_seeding_and_a_30_second_sweep() {
        let settings = InventorySettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert!(settings.seed_demo_stock);
        assert_eq!(settings.sweep_every, Duration::from_secs(30));
    }

    #[test]
    fn bad_settings_are_named() {
        for (name, value) in [
            ("SEED_DEMO_STOCK", "maybe"),
            ("RESERVATION_SWEEP_SECONDS", "0"),
            ("RESERVATION_SWEEP_SECONDS", "often"),
        ] {
            let err = InventorySettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }
}
