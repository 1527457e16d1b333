//! The catch-all API route: a REST request checked (route, token, query, body),
//! transcoded to a gRPC call on the owning service, and its answer (or error)
//! turned back into JSON. Product pages go through the edge cache
//! ([`super::cache`]) on the way.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use shopmesh_platform::auth::AuthError;
use shopmesh_platform::errors::ErrorReason;
use shopmesh_platform::metrics::cache_lookup;
use shopmesh_platform::overload::LogThrottle;

use super::cache::{EdgeCache, Page};
use super::middleware::{labelled, request_id, traceparent};
use super::streams::{resume_from_last_event_id, sse};
use super::{AppState, RequestContext};
use crate::problem::Problem;
use crate::routes::{Access, Lookup, Route};
use crate::transcode::{request_message, response_json};

/// The RPC of `GET /v1/products/{id}`, whose pages the edge cache holds.
const GET_PRODUCT: &str = "/shop.product.v1.ProductService/GetProduct";
/// The `cache` label of the edge cache's hit and miss counters.
const EDGE_CACHE_NAME: &str = "edge_product";
/// Browsers and CDNs may keep a page but must revalidate it before each use:
/// the edge knows when it changed, they do not. A match costs a 304.
const PAGE_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// Every REST route of the contracts.
pub(super) async fn api(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let context = request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(|| RequestContext {
            request_id: request_id(request.headers()),
            traceparent: traceparent(request.headers()),
        });
    let rid = context.request_id.as_str();
    let (route, bindings) = match state.table.lookup(request.method(), request.uri().path()) {
        Lookup::Found(route, bindings) => (route, bindings),
        Lookup::WrongVerb(verbs) => {
            let mut problem = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorReason::MethodNotAllowed.as_str_name(),
                format!("{} is not allowed here", request.method()),
                rid,
            );
            problem.allow = Some(
                verbs
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            return problem.into_response();
        }
        Lookup::NotFound => {
            let detail = format!("no route for {} {}", request.method(), request.uri().path());
            return Problem::new(
                StatusCode::NOT_FOUND,
                ErrorReason::RouteNotFound.as_str_name(),
                detail,
                rid,
            )
            .into_response();
        }
    };
    let response = match state.edge_cache.as_deref() {
        Some(cache) if route.grpc_path == GET_PRODUCT && request.uri().query().is_none() => {
            product_page(&state, cache, route, bindings, request, &context).await
        }
        _ => call(&state, route, bindings, request, &context).await,
    };
    labelled(response, route.template.as_str())
}

/// GetProduct through the edge cache (a PUBLIC route, so no token to check):
/// a hit is answered from memory; a miss takes the normal path, and its 200
/// is stored unless an invalidation came while it was read. Either way the
/// page carries its ETag, and a matching `If-None-Match` is a 304.
async fn product_page(
    state: &AppState,
    cache: &EdgeCache,
    route: &Route,
    bindings: Vec<(String, String)>,
    request: Request,
    context: &RequestContext,
) -> Response {
    let if_none_match: Vec<HeaderValue> = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .cloned()
        .collect();
    let id = bindings
        .iter()
        .find(|(field, _)| field == "id")
        .map(|(_, id)| id.clone())
        .unwrap_or_default();
    if let Some(page) = cache.get(&id) {
        cache_lookup(EDGE_CACHE_NAME, true);
        return page_response(&page, &if_none_match);
    }
    cache_lookup(EDGE_CACHE_NAME, false);
    // Before the read: an invalidation of `id` from here on refuses the store.
    let ticket = cache.ticket();
    let response = call(state, route, bindings, request, context).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let body = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(body) => body,
        Err(err) => {
            let status = tonic::Status::internal(format!("cannot read the product page: {err}"));
            return upstream_error(&status, route, &context.request_id);
        }
    };
    let page = Page::new(body);
    let response = page_response(&page, &if_none_match);
    cache.store(ticket, &id, page);
    response
}

/// A product page as JSON with its validators, or 304 Not Modified without a
/// body when `if_none_match` names it.
fn page_response(page: &Page, if_none_match: &[HeaderValue]) -> Response {
    let mut response = if page.matches(if_none_match) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            page.body.clone(),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PAGE_CACHE_CONTROL),
    );
    if let Ok(etag) = HeaderValue::from_str(&page.etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

async fn call(
    state: &AppState,
    route: &Route,
    bindings: Vec<(String, String)>,
    request: Request,
    context: &RequestContext,
) -> Response {
    let rid = context.request_id.as_str();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if matches!(route.access, Access::User | Access::Admin) {
        match state.verifier.verify_header(authorization.as_deref()).await {
            Ok(caller) if route.access == Access::Admin && !caller.is_admin() => {
                return Problem::new(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    "this operation needs the admin role",
                    rid,
                )
                .into_response();
            }
            Ok(_) => {}
            Err(AuthError::Unavailable(reason)) => {
                static UNCHECKED: LogThrottle = LogThrottle::new();
                if let Some(refused) = UNCHECKED.ready() {
                    tracing::warn!(%reason, refused, "cannot check tokens");
                }
                return Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "cannot check credentials right now, try again shortly",
                    rid,
                )
                .into_response();
            }
            Err(err) => {
                tracing::debug!(reason = %err, "token refused");
                return Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "this operation needs a valid bearer token",
                    rid,
                )
                .into_response();
            }
        }
    }
    let client_ip = client_ip(&request, state.trusted_proxy_hops);
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let query: Vec<(String, String)> = match request
        .uri()
        .query()
        .map(serde_urlencoded::from_str)
        .transpose()
    {
        Ok(query) => query.unwrap_or_default(),
        Err(_) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "the query string is malformed",
                rid,
            )
            .into_response();
        }
    };
    let body = match axum::body::to_bytes(request.into_body(), state.body_limit).await {
        Ok(body) => body,
        Err(_) => {
            let detail = format!("the body exceeds {} bytes", state.body_limit);
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorReason::BodyTooLarge.as_str_name(),
                detail,
                rid,
            )
            .into_response();
        }
    };
    let mut message = match request_message(route, &bindings, &query, &body) {
        Ok(message) => message,
        Err(errors) => return Problem::invalid_fields(errors, rid).into_response(),
    };
    if route.method.is_server_streaming() {
        resume_from_last_event_id(&mut message, last_event_id.as_deref());
    }

    let mut grpc_request = tonic::Request::new(message);
    grpc_request.set_timeout(state.timeout);
    let metadata = grpc_request.metadata_mut();
    let forwarded = [
        ("x-request-id", Some(rid)),
        ("traceparent", Some(context.traceparent.as_str())),
        // The service checks the token again: the gateway is not the only door.
        ("authorization", authorization.as_deref()),
        ("x-client-ip", client_ip.as_deref()),
    ];
    for (key, value) in forwarded {
        if let Some(Ok(value)) = value.map(str::parse) {
            metadata.insert(key, value);
        }
    }
    let output = route.method.output();

    if route.method.is_server_streaming() {
        return match state
            .upstreams
            .server_streaming(&route.upstream, &route.grpc_path, grpc_request, output)
            .await
        {
            Ok(stream) => sse(route.clone(), stream.into_inner(), rid.to_owned()),
            Err(status) => upstream_error(&status, route, rid),
        };
    }
    let call = state
        .upstreams
        .unary(&route.upstream, &route.grpc_path, grpc_request, output);
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(state.timeout, call).await {
        // tonic's client enforces the same grpc-timeout and answers CANCELLED
        // ("Timeout expired") when its timer fires first: that is the deadline too.
        Ok(Err(status))
            if status.code() == tonic::Code::Cancelled && started.elapsed() >= state.timeout =>
        {
            Err(tonic::Status::deadline_exceeded("gateway timeout"))
        }
        Ok(result) => result,
        Err(_) => Err(tonic::Status::deadline_exceeded("gateway timeout")),
    };
    match result {
        Ok(response) => match response_json(route, response.get_ref()) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(err) => upstream_error(&tonic::Status::internal(err.to_string()), route, rid),
        },
        Err(status) => upstream_error(&status, route, rid),
    }
}

/// The client's address: the socket peer, or with `hops` trusted proxies in front
/// (the ingress), the entry they appended to `X-Forwarded-For`.
fn client_ip(request: &Request, hops: usize) -> Option<String> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string());
    if hops == 0 {
        return peer;
    }
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    forwarded
        .len()
        .checked_sub(hops)
        .and_then(|i| forwarded.get(i))
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_string())
        .or(peer)
}

fn upstream_error(status: &tonic::Status, route: &Route, request_id: &str) -> Response {
    if matches!(
        status.code(),
        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss
    ) {
        tracing::error!(rpc = %route.grpc_path, code = ?status.code(), message = status.message(), "upstream error");
    } else if status.code() == tonic::Code::Unavailable {
        // Per request this would flood the log exactly when a service is down
        // or shedding load; http_requests_total{status="503"} counts every one.
        static UNAVAILABLE: LogThrottle = LogThrottle::new();
        if let Some(calls) = UNAVAILABLE.ready() {
            tracing::warn!(rpc = %route.grpc_path, message = status.message(), calls, "upstream unavailable");
        }
    }
    Problem::from_status(status, request_id).into_response()
}
