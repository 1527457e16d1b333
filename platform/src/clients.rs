//! Channels to the services a service calls. Every channel connects lazily,
//! on first use, so a service starts (and answers health checks) while its
//! dependencies are still down; each call then fails fast or waits on its own
//! deadline.
//!
//! A client of another service's INTERNAL methods is built on
//! [`Authenticated`], a channel that presents this service's credentials on
//! every call:
//!
//! ```ignore
//! const USER_SERVICE: LazyChannel = LazyChannel::new(CONNECT_TIMEOUT).call_timeout(CALL_DEADLINE);
//! let users: UserServiceClient<Authenticated> =
//!     UserServiceClient::new(USER_SERVICE.authenticated(&settings.user_url, credentials)?);
//! ```

use std::time::Duration;

use anyhow::Context as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::auth::ServiceCredentials;

/// A channel that presents this service's [`ServiceCredentials`] on every
/// call: the one client type for calls to another service's INTERNAL
/// methods, `XServiceClient<Authenticated>`.
pub type Authenticated = InterceptedService<Channel, ServiceCredentials>;

/// How a lazy channel connects: connection timeout, an optional timeout on
/// every call made over it, and optional HTTP/2 keep-alive pings (for
/// long-lived streams that must notice a dead peer).
#[derive(Clone, Copy, Debug)]
pub struct LazyChannel {
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
    keep_alive: Option<(Duration, Duration)>,
}

impl LazyChannel {
    /// A channel giving up on a connection attempt after `connect_timeout`.
    pub const fn new(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            call_timeout: None,
            keep_alive: None,
        }
    }

    /// Bounds every call over the channel (on top of a request's own deadline).
    pub const fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// Pings every `interval`, also while idle, and drops the connection when a
    /// ping is not answered within `timeout`.
    pub const fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval, timeout));
        self
    }

    /// The channel to `url`; fails only for a URL that is not one.
    pub fn connect(&self, url: &str) -> anyhow::Result<Channel> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("{url:?} is not a valid gRPC URL"))?
            .connect_timeout(self.connect_timeout);
        if let Some(timeout) = self.call_timeout {
            endpoint = endpoint.timeout(timeout);
        }
        if let Some((interval, timeout)) = self.keep_alive {
            endpoint = endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(true);
        }
        Ok(endpoint.connect_lazy())
    }

    /// The channel to `url` (as [`LazyChannel::connect`]), presenting
    /// `credentials` on every call.
    pub fn authenticated(
        &self,
        url: &str,
        credentials: ServiceCredentials,
    ) -> anyhow::Result<Authenticated> {
        Ok(authenticated(self.connect(url)?, credentials))
    }
}

/// `channel` presenting `credentials` on every call: for a channel made some
/// other way, such as a test's channel to the service it started.
pub fn authenticated(channel: Channel, credentials: ServiceCredentials) -> Authenticated {
    InterceptedService::new(channel, credentials)
}

#[cfg(test)]
mod tests {
    use tonic::{Request, Status};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;
    use crate::settings::Secret;

    #[tokio::test]
    async fn a_channel_is_made_without_the_peer_and_a_bad_url_is_refused() {
        let secs = Duration::from_secs;
        let with_deadline = LazyChannel::new(secs(1)).call_timeout(secs(2));
        assert!(with_deadline.connect("http://127.0.0.1:1").is_ok());
        let keep_alive = LazyChannel::new(secs(5)).keep_alive(secs(30), secs(10));
        assert!(keep_alive.connect("http://127.0.0.1:1").is_ok());
        let err = with_deadline.connect("not a url").unwrap_err();
        assert!(err.to_string().contains("not a url"), "{err}");
    }

    fn svc_cart() -> ServiceCredentials {
        ServiceCredentials::new("svc-cart", &Secret::new("cart-token".to_owned())).unwrap()
    }

    /// A server that answers only calls presenting svc-cart's credentials.
    async fn server_wanting_svc_cart() -> String {
        let (_, health) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let only_svc_cart = |request: Request<()>| {
            let header = |name| request.metadata().get(name).and_then(|v| v.to_str().ok());
            let presented = (header("x-service-name"), header("x-service-token"));
            if presented == (Some("svc-cart"), Some("cart-token")) {
                Ok(request)
            } else {
                Err(Status::unauthenticated("no service credentials"))
            }
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(tonic::service::InterceptorLayer::new(only_svc_cart))
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        url
    }

    #[tokio::test]
    async fn an_authenticated_channel_presents_the_credentials_on_every_call() {
        let url = server_wanting_svc_cart().await;
        let channel = LazyChannel::new(Duration::from_secs(1)).call_timeout(Duration::from_secs(5));
        let mut client = HealthClient::new(channel.authenticated(&url, svc_cart()).unwrap());
        for _ in 0..2 {
            client.check(HealthCheckRequest::default()).await.unwrap();
        }
        let mut anonymous = HealthClient::new(channel.connect(&url).unwrap());
        let refused = anonymous
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        assert!(channel.authenticated("not a url", svc_cart()).is_err());
    }
}
