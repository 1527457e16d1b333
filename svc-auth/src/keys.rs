//! The Ed25519 keys that sign access tokens, kept in PostgreSQL so every
//! replica signs with the same current key and publishes the same JWKS.
//!
//! Life of a key: it is created as the *next* key (known to svc-auth's own
//! verifier, not yet published), becomes *current* at a rotation (signs every
//! token, first in the JWKS), is *retired* at the following rotation (still in
//! the JWKS until `retires_at` = rotation time + access-token lifetime + a
//! minute, so no token it signed is refused), and is then deleted.

use std::time::Duration;

use shopmesh_platform::auth::{Jwk, KeySource, SigningKey};
use uuid::Uuid;

use crate::settings::ACCESS_TOKEN_TTL;
use crate::store::{KeyAction, KeyChange, KeyRow, Store};

/// How long a retired key outlives its last possible token.
const RETIREMENT_MARGIN: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct KeyRing {
    store: Store,
}

/// A rotation's result: the new current key and the one it replaced.
#[derive(Debug)]
pub struct Rotation {
    pub current: Jwk,
    pub previous_kid: String,
}

fn new_key() -> SigningKey {
    SigningKey::generate(Uuid::now_v7().to_string())
}

fn signing_key(row: &KeyRow) -> anyhow::Result<SigningKey> {
    SigningKey::from_seed(row.kid.clone(), &row.seed)
        .ok_or_else(|| anyhow::anyhow!("signing key {} has a malformed seed", row.kid))
}

impl KeyRing {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// How long a replaced key stays published.
    pub fn retire_after() -> Duration {
        ACCESS_TOKEN_TTL + RETIREMENT_MARGIN
    }

    async fn maintain(&self, action: KeyAction) -> anyhow::Result<KeyChange> {
        let change = self
            .store
            .maintain_signing_keys(action, Self::retire_after(), new_key)
            .await?;
        if let Some(activated) = &change.activated {
            tracing::info!(
                kid = %activated.kid,
                previous_kid = change.previous_kid.as_deref().unwrap_or(""),
                ?action,
                "signing key rotated"
            );
        }
        Ok(change)
    }

    /// Makes sure a current and a next key exist (first start).
    pub async fn ensure(&self) -> anyhow::Result<()> {
        self.maintain(KeyAction::Ensure).await.map(drop)
    }

    /// Rotates now (RotateSigningKey).
    pub async fn rotate(&self) -> anyhow::Result<Rotation> {
        let change = self.maintain(KeyAction::Rotate).await?;
        // The key this rotation activated, even if another has followed it since.
        let activated = change
            .activated
            .ok_or_else(|| anyhow::anyhow!("a rotation activated no key"))?;
        Ok(Rotation {
            current: signing_key(&activated)?.public_jwk(),
            previous_kid: change.previous_kid.unwrap_or_default(),
        })
    }

    /// The key that signs tokens now.
    pub async fn current(&self) -> anyhow::Result<SigningKey> {
        let row = self
            .store
            .current_signing_key()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no current signing key"))?;
        signing_key(&row)
    }

    /// The JWKS: the current key first, then retired keys whose tokens may still be live.
    pub async fn published(&self) -> anyhow::Result<Vec<Jwk>> {
        let rows = self.store.live_signing_keys().await?;
        rows.iter()
            .filter(|row| row.activated_at.is_some())
            .map(|row| signing_key(row).map(|key| key.public_jwk()))
            .collect()
    }

    /// What svc-auth's own verifier accepts: the published keys and the next
    /// one, so a token signed right after a rotation never hits a verifier
    /// that has not heard of its key yet.
    async fn verifiable(&self) -> anyhow::Result<Vec<Jwk>> {
        let rows = self.store.live_signing_keys().await?;
        rows.iter()
            .map(|row| signing_key(row).map(|key| key.public_jwk()))
            .collect()
    }

    /// Rotates whenever the current key has signed for `period`, checking every
    /// `check_every`, until the service shuts down. Every replica runs this; the
    /// advisory lock in the store makes exactly one of them rotate.
    pub async fn rotate_on_schedule(self, period: Duration, check_every: Duration) {
        let mut ticks = tokio::time::interval(check_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.store.is_closed() {
                return;
            }
            if let Err(err) = self.maintain(KeyAction::RotateIfDue(period)).await {
                if self.store.is_closed() {
                    return;
                }
                tracing::warn!(
                    error = format!("{err:#}"),
                    "signing key schedule check failed"
                );
            }
        }
    }
}

/// svc-auth's own verifier reads the key table directly instead of calling
/// GetJwks on itself over the network.
pub struct OwnKeySource(pub KeyRing);

#[tonic::async_trait]
impl KeySource for OwnKeySource {
    async fn keys(&self) -> anyhow::Result<Vec<Jwk>> {
        self.0.verifiable().await
    }
}
