//! Ed25519 signing keys, their public JWK form, and where verifiers get the JWKS.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use shopmesh_proto::shop::auth::v1::GetJwksRequest;
use shopmesh_proto::shop::auth::v1::auth_service_client::AuthServiceClient;

use super::AccessClaims;

/// PKCS#8 v1 prefix of an Ed25519 private key: the DER that wraps a 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A public key in JWK form (RFC 8037 OKP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: String,
}

/// A private signing key. Its Debug output never shows the seed.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    seed: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key with the given id.
    pub fn generate(kid: impl Into<String>) -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        Self {
            kid: kid.into(),
            seed: key.to_bytes(),
        }
    }

    /// A key from its stored 32-byte seed.
    pub fn from_seed(kid: impl Into<String>, seed: &[u8]) -> Option<Self> {
        Some(Self {
            kid: kid.into(),
            seed: seed.try_into().ok()?,
        })
    }

    /// The seed, for storage only.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    pub fn public_jwk(&self) -> Jwk {
        let public = ed25519_dalek::SigningKey::from_bytes(&self.seed).verifying_key();
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            kid: self.kid.clone(),
            alg: "EdDSA".to_owned(),
            key_use: "sig".to_owned(),
        }
    }

    /// Signs `claims` as a JWT with `alg: EdDSA` and this key's `kid`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(&self.seed);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
    }
}

/// Where a verifier gets the current public keys.
#[tonic::async_trait]
pub trait KeySource: Send + Sync {
    async fn keys(&self) -> anyhow::Result<Vec<Jwk>>;
}

/// The JWKS served by svc-auth's `GetJwks`, fetched over gRPC.
pub struct GrpcKeySource {
    channel: tonic::transport::Channel,
}

impl GrpcKeySource {
    /// Connects lazily, so a service starts before svc-auth does.
    pub fn new(auth_url: &str) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(auth_url.to_owned())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_secs(5))
            .connect_lazy();
        Ok(Self { channel })
    }
}

#[tonic::async_trait]
impl KeySource for GrpcKeySource {
    async fn keys(&self) -> anyhow::Result<Vec<Jwk>> {
        let response = AuthServiceClient::new(self.channel.clone())
            .get_jwks(GetJwksRequest {})
            .await?
            .into_inner();
        Ok(response
            .keys
            .into_iter()
            .map(|k| Jwk {
                kty: k.kty,
                crv: k.crv,
                x: k.x,
                kid: k.kid,
                alg: k.alg,
                key_use: k.r#use,
            })
            .collect())
    }
}

/// A fixed key set (tests, and svc-auth reading its own keys).
pub struct StaticKeySource(pub std::sync::RwLock<Vec<Jwk>>);

impl StaticKeySource {
    pub fn new(keys: Vec<Jwk>) -> Self {
        Self(std::sync::RwLock::new(keys))
    }
    pub fn replace(&self, keys: Vec<Jwk>) {
        if let Ok(mut guard) = self.0.write() {
            *guard = keys;
        }
    }
}

#[tonic::async_trait]
impl KeySource for StaticKeySource {
    async fn keys(&self) -> anyhow::Result<Vec<Jwk>> {
        self.0
            .read()
            .map(|k| k.clone())
            .map_err(|_| anyhow::anyhow!("key set lock poisoned"))
    }
}
