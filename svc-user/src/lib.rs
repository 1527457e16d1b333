//! The user service: shopper profiles and their address books in PostgreSQL,
//! with a read-through Redis cache of profiles that an update never leaves stale.

mod address;
mod api;
mod cache;
mod profile;
mod profiles;
mod store;
mod update_mask;

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};
use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::user::v1::user_service_server::UserServiceServer;

pub use cache::{CacheError, ProfileCache};
pub use profiles::Profiles;
pub use store::{ProfileRecord, Store};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-user",
    grpc_port: 50052,
    metrics_port: 9102,
    migrator: Some(&MIGRATOR),
    check_settings: |env| UserSettings::from_env(env).map(drop),
    extensions: &[],
};

/// svc-user's own settings, on top of what every service has.
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

/// Builds the service on a prepared context.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let db = ctx.database()?;
    let settings = UserSettings::from_env(&ctx.env)?;
    let store = Store::new(db);
    let cache = ProfileCache::new(ctx.redis, settings.profile_cache_ttl);
    let api = api::UserApi::new(store.clone(), Profiles::new(store, cache));
    Ok(ctx.grpc.add_service(UserServiceServer::new(api)))
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
