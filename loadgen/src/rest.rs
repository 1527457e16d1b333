//! Requests to the REST edge: a base URL, the HTTP/1.1 pool and the timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use crate::http1::{Http1Pool, Reply};
use crate::stats::Failure;

/// An `http://host:port` base URL, resolved.
#[derive(Clone, Debug)]
pub struct BaseUrl {
    pub url: String,
    pub host: HeaderValue,
    pub addr: SocketAddr,
}

impl BaseUrl {
    /// Resolves `url`; refuses anything but loopback unless `allow_remote`.
    pub async fn resolve(url: &str, allow_remote: bool) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!(
                "{url}: https is not supported; use plain http (a port-forward or the ingress's http port)"
            ),
            _ => bail!("{url}: expected http://host:port"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url}: no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .collect();
        let addr = *addrs
            .first()
            .with_context(|| format!("{} resolves to nothing", authority.host()))?;
        check_loopback(url, &addrs, allow_remote)?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            host: HeaderValue::from_str(authority.as_str())?,
            addr,
        })
    }
}

/// Refuses non-loopback addresses unless allowed: a load run by mistake
/// against someone else's server is not a benchmark.
pub fn check_loopback(url: &str, addrs: &[SocketAddr], allow_remote: bool) -> anyhow::Result<()> {
    if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        bail!("{url} is not a loopback address: pass --allow-remote to load a remote server");
    }
    Ok(())
}

/// Prepared parts of a request that the hot path only clones.
#[derive(Clone, Debug)]
pub struct RestClient {
    pool: Arc<Http1Pool>,
    host: HeaderValue,
    json: HeaderValue,
    timeout: Duration,
}

impl RestClient {
    pub async fn connect(
        base: &BaseUrl,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let pool =
            Http1Pool::connect(base.addr, connections, timeout.min(Duration::from_secs(5))).await?;
        Ok(Self {
            pool,
            host: base.host.clone(),
            json: HeaderValue::from_static("application/json"),
            timeout,
        })
    }

    /// Sends one request within the timeout (waiting for a connection
    /// included); a non-2xx status is a failure.
    pub async fn call(
        &self,
        method: Method,
        uri: Uri,
        auth: Option<HeaderValue>,
        body: Option<Bytes>,
        keep_body: bool,
    ) -> Result<Reply, Failure> {
        let has_body = body.is_some();
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        if let Some(auth) = auth {
            headers.insert(AUTHORIZATION, auth);
        }
        if has_body {
            headers.insert(CONTENT_TYPE, self.json.clone());
        }
        let reply = tokio::time::timeout(self.timeout, self.pool.send(request, keep_body))
            .await
            .map_err(|_| Failure::Timeout)??;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(Failure::Http(reply.status.as_u16()))
        }
    }

    /// A GET whose body is wanted, for setup.
    pub async fn get_json(
        &self,
        path: &str,
        auth: Option<HeaderValue>,
    ) -> anyhow::Result<serde_json::Value> {
        let uri = path_uri(path)?;
        let reply = self
            .call(Method::GET, uri, auth, None, true)
            .await
            .map_err(|f| anyhow::anyhow!("GET {path}: {}", f.label()))?;
        serde_json::from_slice(&reply.body).with_context(|| format!("GET {path}: not JSON"))
    }
}

/// An origin-form URI (`/v1/products?page_size=20`).
pub fn path_uri(path: &str) -> anyhow::Result<Uri> {
    Uri::try_from(path).with_context(|| format!("{path:?} is not a request path"))
}

/// `key=value&…` with form encoding.
pub fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}
