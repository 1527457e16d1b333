//! The auth service: accounts (Argon2id), sign-in with per-account and
//! per-client limits, sessions in Redis, EdDSA access tokens from rotating keys
//! in PostgreSQL, rotating refresh tokens with reuse detection, and roles.
//! A registration publishes `UserRegistered` on `shop.auth.events` through
//! the transactional outbox (`events.rs`) and owes the account a profile in
//! svc-user (`profiles.rs`).
//!
//! Background tasks (every replica runs them; the database coordinates): the
//! signing-key schedule and the retries of profiles owed to svc-user.

mod api;
mod credentials;
mod error;
mod events;
mod identity;
mod keys;
mod login_limit;
mod profiles;
pub mod settings;
mod store;
mod tokens;

use std::collections::HashSet;
use std::sync::Arc;

use shopmesh_platform::auth::{AccessControl, ServiceCredentials, SessionStore, TokenVerifier};
use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::auth::v1::auth_service_server::AuthServiceServer;

use crate::credentials::PasswordHasher;
use crate::identity::Identity;
use crate::keys::{KeyRing, OwnKeySource};
use crate::login_limit::LoginLimiter;
use crate::profiles::ProfileSync;
use crate::settings::AuthServiceSettings;
use crate::store::Store;
use crate::tokens::AccessTokenIssuer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-auth",
    grpc_port: 50051,
    metrics_port: 9101,
    migrator: Some(&MIGRATOR),
    check_settings: |env| AuthServiceSettings::from_env(env).map(drop),
    extensions: &[&shopmesh_events::EVENTS],
};

/// Builds the service on a prepared context: makes sure signing keys exist,
/// grants the bootstrap admins, starts the background tasks, and verifies
/// USER/ADMIN calls against its own key table (the default access control would
/// fetch the JWKS from AUTH_GRPC_URL, that is, from itself over the network).
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let db = ctx.database()?;
    let settings = AuthServiceSettings::from_env(&ctx.env)?;
    let auth = &ctx.settings.auth;
    let store = Store::new(db.clone());

    shopmesh_events::start_relay(&ctx, &[events::TOPIC])?;
    let keys = KeyRing::new(store.clone());
    keys.ensure().await?;
    if !settings.bootstrap_admins.is_empty() {
        let granted = store
            .grant_admin_by_email(&settings.bootstrap_admins)
            .await?;
        tracing::info!(granted, "bootstrap admins checked");
    }

    let sessions = SessionStore::new(ctx.redis.clone());
    let verifier = Arc::new(TokenVerifier::new(
        Arc::new(OwnKeySource(keys.clone())),
        sessions.clone(),
        &auth.issuer,
        &auth.audience,
    ));
    let access = AccessControl::new(verifier.clone(), auth.internal_token.clone())?;
    let profiles = ProfileSync::new(
        store.clone(),
        &settings.user_url,
        ServiceCredentials::new(SPEC.name, &auth.internal_token)?,
        settings.profile_retry_max_backoff,
    )?;

    tokio::spawn(profiles.clone().retry_pending());
    tokio::spawn(
        keys.clone()
            .rotate_on_schedule(settings.key_rotation, settings.key_check_interval),
    );

    let identity = Identity {
        store,
        hasher: PasswordHasher::new()?,
        issuer: AccessTokenIssuer::new(keys.clone(), &auth.issuer, &auth.audience),
        keys,
        sessions,
        limiter: LoginLimiter::new(ctx.redis.clone(), settings.login_limits),
        profiles,
        refresh_ttl: settings.refresh_ttl,
        bootstrap_admins: settings
            .bootstrap_admins
            .into_iter()
            .collect::<HashSet<_>>(),
    };
    Ok(ctx
        .grpc
        .access_control(access)
        .add_service(AuthServiceServer::new(api::AuthApi::new(
            identity, verifier,
        ))))
}
