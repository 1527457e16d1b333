//! A stand-in svc-auth for the tests of the services that verify tokens: the
//! real JWKS RPC and real sessions in Redis, with a key of its own; the
//! signed-in users it mints; and the credentials a test presents as another
//! service.

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::clients::Authenticated;
use shopmesh_platform::settings::{Env, Secret};

use crate::env::{INTERNAL_TOKEN, redis_url};

/// A user signed in through [`TestIdentity`]: a live session and a valid
/// access token, as a shopper (or an admin) calls a service through the
/// gateway.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub id: uuid::Uuid,
    pub session: uuid::Uuid,
    pub token: String,
}

impl SignedIn {
    /// `message` with this user's bearer token, as the gateway forwards it.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        with_bearer(message, &self.token)
    }
}

/// The credentials of service `name` with the test services' shared token.
pub fn service_credentials(name: &str) -> ServiceCredentials {
    ServiceCredentials::new(name, &Secret::new(INTERNAL_TOKEN.to_owned()))
        .unwrap_or_else(|err| panic!("credentials of {name}: {err}"))
}

/// `channel` presenting the credentials of service `name` on every call: a
/// test calling INTERNAL methods as that service does.
pub fn as_service(channel: tonic::transport::Channel, name: &str) -> Authenticated {
    shopmesh_platform::clients::authenticated(channel, service_credentials(name))
}

/// A stand-in identity provider for tests of services other than svc-auth: it
/// publishes one signing key over the real `AuthService.GetJwks` RPC, and mints
/// access tokens for sessions it opens in the real Redis.
pub struct TestIdentity {
    pub key: shopmesh_platform::auth::SigningKey,
    /// Point a service's (or the gateway's) `AUTH_GRPC_URL` here.
    pub auth_url: String,
    pub sessions: shopmesh_platform::auth::SessionStore,
    server: tokio::task::JoinHandle<()>,
}

struct JwksOnly(shopmesh_platform::auth::Jwk);

#[tonic::async_trait]
impl shopmesh_proto::shop::auth::v1::auth_service_server::AuthService for JwksOnly {
    async fn get_jwks(
        &self,
        _request: tonic::Request<shopmesh_proto::shop::auth::v1::GetJwksRequest>,
    ) -> Result<tonic::Response<shopmesh_proto::shop::auth::v1::GetJwksResponse>, tonic::Status>
    {
        let jwk = &self.0;
        Ok(tonic::Response::new(
            shopmesh_proto::shop::auth::v1::GetJwksResponse {
                keys: vec![shopmesh_proto::shop::auth::v1::Jwk {
                    kty: jwk.kty.clone(),
                    crv: jwk.crv.clone(),
                    x: jwk.x.clone(),
                    kid: jwk.kid.clone(),
                    alg: jwk.alg.clone(),
                    r#use: jwk.key_use.clone(),
                }],
            },
        ))
    }
}

/// Issuer and audience every test token carries (the settings' defaults).
pub const TEST_ISSUER: &str = "shopmesh";

impl TestIdentity {
    pub async fn start() -> anyhow::Result<Self> {
        use shopmesh_proto::shop::auth::v1::auth_service_server::AuthServiceServer;
        let key = shopmesh_platform::auth::SigningKey::generate(format!(
            "test-{}",
            uuid::Uuid::now_v7().simple()
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let auth_url = format!("http://{}", listener.local_addr()?);
        let service = AuthServiceServer::new(JwksOnly(key.public_jwk()));
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        let redis = shopmesh_platform::redis::connect(
            &shopmesh_platform::settings::RedisSettings::from_env(
                &Env::process().with("REDIS_URL", redis_url()),
            )?,
        )
        .await?;
        Ok(Self {
            key,
            auth_url,
            sessions: shopmesh_platform::auth::SessionStore::new(redis),
            server,
        })
    }

    /// Claims for a 15-minute token of `user` in `session`.
    pub fn claims(
        &self,
        user: uuid::Uuid,
        session: uuid::Uuid,
        roles: &[&str],
    ) -> shopmesh_platform::auth::AccessClaims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        shopmesh_platform::auth::AccessClaims {
            sub: user.to_string(),
            sid: session.to_string(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            iss: TEST_ISSUER.to_owned(),
            aud: TEST_ISSUER.to_owned(),
            iat: now,
            nbf: now,
            exp: now + 900,
            jti: uuid::Uuid::now_v7().to_string(),
        }
    }

    /// Opens a live session for a new user with `roles`.
    pub async fn signed_in(&self, roles: &[&str]) -> anyhow::Result<SignedIn> {
        self.signed_in_as(uuid::Uuid::now_v7(), roles).await
    }

    /// Opens a live session for `user`, one the test already knows (e.g. a
    /// demo shopper with purchases), with `roles`.
    pub async fn signed_in_as(&self, user: uuid::Uuid, roles: &[&str]) -> anyhow::Result<SignedIn> {
        let session = uuid::Uuid::now_v7();
        self.sessions
            .open(session, user, std::time::Duration::from_secs(3600))
            .await?;
        let token = self.key.sign(&self.claims(user, session, roles))?;
        Ok(SignedIn {
            id: user,
            session,
            token,
        })
    }

    /// Opens a live session for a new user and returns `(user id, session id, token)`.
    pub async fn sign_in(
        &self,
        roles: &[&str],
    ) -> anyhow::Result<(uuid::Uuid, uuid::Uuid, String)> {
        let SignedIn { id, session, token } = self.signed_in(roles).await?;
        Ok((id, session, token))
    }
}

impl Drop for TestIdentity {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `message` with `authorization: Bearer <token>`, as the gateway forwards it.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
