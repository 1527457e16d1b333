//! The user service: shopper profiles and their address books in PostgreSQL,
//! with a read-through Redis cache of profiles that an update never leaves stale.
//!
//! svc-auth creates a profile when an account registers (CreateProfile, as a
//! service); the shopper then reads and edits it and keeps an address book of
//! at most 20 addresses, one of them the default. Other services read one user's
//! data as services: checkout (svc-cart) the shipping address, svc-notification
//! the email and phone. The rules of a valid profile and address are in `profile.rs` and
//! `address.rs`; `cached_profiles.rs` reads profiles through the Redis cache
//! (`cache.rs`, ordered by profile version) and writes updates through to it.

mod address;
mod api;
mod cache;
mod cached_profiles;
mod error;
mod profile;
pub mod settings;
mod store;
mod update_mask;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::user::v1::user_service_server::UserServiceServer;

pub use cache::{CacheError, ProfileCache};
pub use cached_profiles::Profiles;
pub use settings::UserSettings;
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

/// Builds the service on a prepared context.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let db = ctx.database()?;
    let settings = UserSettings::from_env(&ctx.env)?;
    let store = Store::new(db);
    let cache = ProfileCache::new(ctx.redis, settings.profile_cache_ttl);
    let api = api::UserApi::new(store.clone(), Profiles::new(store, cache));
    Ok(ctx.grpc.add_service(UserServiceServer::new(api)))
}
