//! The server side of access control: one tower layer on every service that
//! enforces the access each method declares in the contracts, and hands handlers
//! a typed [`Caller`] or [`ServiceCaller`] through request extensions. Also the
//! credentials a service presents when it calls another's INTERNAL methods.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::MetadataValue;

use super::{AuthError, Caller, ServiceCaller, TokenVerifier};
use crate::access::{Access, access_table, descriptor_pool};
use crate::settings::Secret;

const SERVICE_NAME_HEADER: &str = "x-service-name";
const SERVICE_TOKEN_HEADER: &str = "x-service-token";

/// The rules and the means to check them, shared by every call.
#[derive(Clone)]
pub struct AccessControl {
    table: Arc<HashMap<String, Access>>,
    verifier: Arc<TokenVerifier>,
    internal_token: Secret<String>,
}

impl AccessControl {
    pub fn new(
        verifier: Arc<TokenVerifier>,
        internal_token: Secret<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            table: Arc::new(access_table(&descriptor_pool()?)),
            verifier,
            internal_token,
        })
    }

    pub fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }

    /// Checks one call against the declaration of its method, returning what to
    /// attach to the request, or the status to answer with.
    async fn authorize(&self, path: &str, headers: &HeaderMap) -> Result<Option<Identity>, Status> {
        // Health and reflection are not shopmesh methods: open to probes and grpcurl.
        let Some(access) = self.table.get(path).copied() else {
            return Ok(None);
        };
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match access {
            Access::Public => Ok(match authorization {
                // A public method serves anyone; a valid token just tells it who.
                Some(_) => self
                    .verifier
                    .verify_header(authorization)
                    .await
                    .ok()
                    .map(Identity::User),
                None => None,
            }),
            Access::User | Access::Admin => {
                let caller = self
                    .verifier
                    .verify_header(authorization)
                    .await
                    .map_err(auth_status)?;
                if access == Access::Admin && !caller.is_admin() {
                    return Err(Status::permission_denied(
                        "this method needs the admin role",
                    ));
                }
                Ok(Some(Identity::User(caller)))
            }
            Access::Internal => {
                let presented = headers
                    .get(SERVICE_TOKEN_HEADER)
                    .map(|v| v.as_bytes())
                    .unwrap_or_default();
                if !constant_time_eq(presented, self.internal_token.expose().as_bytes()) {
                    return Err(Status::unauthenticated(
                        "this method is internal: a service credential is required",
                    ));
                }
                let name = headers
                    .get(SERVICE_NAME_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("unknown")
                    .to_owned();
                Ok(Some(Identity::Service(ServiceCaller { name })))
            }
        }
    }
}

enum Identity {
    User(Caller),
    Service(ServiceCaller),
}

/// The status for a refused token: 401, or 503 when the check itself could not run
/// (Redis or svc-auth down must not look like "sign in again").
pub fn auth_status(err: AuthError) -> Status {
    match err {
        AuthError::Unavailable(reason) => {
            tracing::warn!(%reason, "token check unavailable");
            Status::unavailable("cannot check credentials right now")
        }
        other => {
            tracing::debug!(reason = %other, "token refused");
            Status::unauthenticated("a valid access token is required")
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Tower layer applying [`AccessControl`] to every call.
#[derive(Clone)]
pub struct AccessLayer {
    control: AccessControl,
}

impl AccessLayer {
    pub fn new(control: AccessControl) -> Self {
        Self { control }
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            control: self.control.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    control: AccessControl,
}

impl<S> tower::Service<Request<Body>> for AccessService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let control = self.control.clone();
        Box::pin(async move {
            match control
                .authorize(request.uri().path(), request.headers())
                .await
            {
                Ok(identity) => {
                    match identity {
                        Some(Identity::User(caller)) => request.extensions_mut().insert(caller),
                        Some(Identity::Service(service)) => {
                            request.extensions_mut().insert(service);
                            None
                        }
                        None => None,
                    };
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// What a service presents to call another service's INTERNAL methods: use as a
/// tonic interceptor, `XClient::with_interceptor(channel, credentials)`.
#[derive(Clone)]
pub struct ServiceCredentials {
    name: MetadataValue<tonic::metadata::Ascii>,
    token: MetadataValue<tonic::metadata::Ascii>,
}

impl ServiceCredentials {
    pub fn new(service_name: &str, token: &Secret<String>) -> anyhow::Result<Self> {
        Ok(Self {
            name: service_name.parse()?,
            token: token.expose().parse()?,
        })
    }
}

impl tonic::service::Interceptor for ServiceCredentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert(SERVICE_NAME_HEADER, self.name.clone());
        metadata.insert(SERVICE_TOKEN_HEADER, self.token.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
