//! svc-user's own settings, on top of the ones every service has. They are
//! checked before any connection: a bad value stops the binary (exit 2) naming
//! its variable.

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};

/// What svc-user reads from the environment besides the common settings.
#[derive(Clone, Debug)]
pub struct UserSettings {
    /// How long a cached profile lives (`PROFILE_CACHE_TTL_SECONDS`, 300 to 3600, default 900).
    pub profile_cache_ttl: Duration,
}

impl UserSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        const VARIABLE: &str = "PROFILE_CACHE_TTL_SECONDS";
        let secs: u64 = env.or(VARIABLE, 900)?;
        if !(300..=3600).contains(&secs) {
            return Err(SettingsError {
                variable: VARIABLE.to_owned(),
                reason: format!("{secs} is outside 300..=3600 seconds (5 to 60 minutes)"),
            });
        }
        Ok(Self {
            profile_cache_ttl: Duration::from_secs(secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_ttl_defaults_to_15_minutes_and_stays_within_5_to_60() {
        let unset = Env::from_pairs::<&str, &str>([]);
        assert_eq!(
            UserSettings::from_env(&unset).unwrap().profile_cache_ttl,
            Duration::from_secs(900)
        );
        for bad in ["299", "3601", "0", "-5", "soon"] {
            let env = Env::from_pairs([("PROFILE_CACHE_TTL_SECONDS", bad)]);
            let err = UserSettings::from_env(&env).unwrap_err();
            assert_eq!(err.variable, "PROFILE_CACHE_TTL_SECONDS", "{bad}");
        }
        let env = Env::from_pairs([("PROFILE_CACHE_TTL_SECONDS", "3600")]);
        assert_eq!(
            UserSettings::from_env(&env).unwrap().profile_cache_ttl,
            Duration::from_secs(3600)
        );
    }
}
