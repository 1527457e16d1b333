//! Channels to the services a service calls. Every channel connects lazily,
//! on first use, so a service starts (and answers health checks) while its
//! dependencies are still down; each call then fails fast or waits on its own
//! deadline.

use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};

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
}

/// The common case: a lazy channel to `url` with a connection timeout and a
/// timeout on every call.
pub fn lazy_channel(
    url: &str,
    connect_timeout: Duration,
    call_timeout: Duration,
) -> anyhow::Result<Channel> {
    LazyChannel::new(connect_timeout)
        .call_timeout(call_timeout)
        .connect(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_channel_is_made_without_the_peer_and_a_bad_url_is_refused() {
        let secs = Duration::from_secs;
        assert!(lazy_channel("http://127.0.0.1:1", secs(1), secs(2)).is_ok());
        let keep_alive = LazyChannel::new(secs(5)).keep_alive(secs(30), secs(10));
        assert!(keep_alive.connect("http://127.0.0.1:1").is_ok());
        let err = lazy_channel("not a url", secs(1), secs(2)).unwrap_err();
        assert!(err.to_string().contains("not a url"), "{err}");
    }
}
