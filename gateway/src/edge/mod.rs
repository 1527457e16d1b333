//! The axum side: the catch-all API handler, health, readiness, the OpenAPI
//! document, the edge cache of product pages, and the request-id / trace /
//! metrics middleware around them.

pub mod cache;
mod forward;
mod health;
mod middleware;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::HeaderMap;
use tower_http::compression::CompressionLayer;

use shopmesh_platform::auth::TokenVerifier;
use shopmesh_platform::overload::{Admission, AdmissionLayer, OverloadSettings, Refusal};

use crate::routes::RouteTable;
use crate::settings::Cors;
use crate::upstream::Upstreams;

/// Everything a request handler needs, shared by all requests.
pub struct AppState {
    pub table: RouteTable,
    pub upstreams: Upstreams,
    pub openapi: Bytes,
    pub timeout: Duration,
    pub body_limit: usize,
    pub verifier: Arc<TokenVerifier>,
    pub trusted_proxy_hops: usize,
    pub overload: OverloadSettings,
    /// Product pages answered from memory (`GATEWAY_CACHE_MB`; `None`: off).
    pub edge_cache: Option<Arc<cache::EdgeCache>>,
}

/// Per-request identifiers, set by [`middleware::edge_context`] before any handler runs.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub traceparent: String,
}

pub fn router(state: Arc<AppState>, cors: &Cors) -> axum::Router {
    let admission = Admission::new("http", &state.overload);
    let router = axum::Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi))
        .fallback(forward::api)
        .with_state(state)
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(middleware::edge_context))
        // Outside the request span and metrics: a refusal costs microseconds.
        // CORS stays outermost so a browser can read the 503.
        .layer(AdmissionLayer::new(
            admission,
            middleware::overloaded as fn(&HeaderMap, Refusal) -> Response,
        ));
    match middleware::cors_layer(cors) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}
