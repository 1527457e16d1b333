//! The axum side: the catch-all API handler, health, readiness, the OpenAPI
//! document, and the request-id / trace / metrics middleware around them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use prost_reflect::ReflectMessage as _;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use shopmesh_platform::auth::{AuthError, TokenVerifier};
use shopmesh_platform::errors::ErrorReason;
use shopmesh_platform::overload::{
    Admission, AdmissionLayer, LogThrottle, OverloadSettings, Refusal,
};

use crate::problem::Problem;
use crate::routes::{Access, Lookup, Route, RouteTable};
use crate::settings::Cors;
use crate::transcode::{request_message, response_json};
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
}

/// Per-request identifiers, set by [`edge_context`] before any handler runs.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub traceparent: String,
}

/// The matched route's template, for the metrics `route` label.
#[derive(Clone, Debug)]
struct RouteLabel(String);

pub fn router(state: Arc<AppState>, cors: &Cors) -> axum::Router {
    let admission = Admission::new("http", &state.overload);
    let router = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .fallback(api)
        .with_state(state)
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn(edge_context))
        // Outside the request span and metrics: a refusal costs microseconds.
        // CORS stays outermost so a browser can read the 503.
        .layer(AdmissionLayer::new(
            admission,
            overloaded as fn(&HeaderMap, Refusal) -> Response,
        ));
    match cors_layer(cors) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

fn cors_layer(cors: &Cors) -> Option<CorsLayer> {
    let origin = match cors {
        Cors::Disabled => return None,
        Cors::Any => AllowOrigin::any(),
        Cors::Origins(list) => AllowOrigin::list(list.clone()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::HeaderName::from_static("x-request-id"),
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// The answer to a request refused by admission control (platform::overload).
fn overloaded(headers: &HeaderMap, _: Refusal) -> Response {
    let mut problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorReason::Overloaded.as_str_name(),
        "the gateway is overloaded; retry shortly",
        &request_id(headers),
    );
    problem.retry_after = Some("1".to_owned());
    problem.into_response()
}

/// A request id is kept when it is short and plain; otherwise we mint one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Keeps a valid W3C `traceparent`, else starts a new sampled trace.
fn traceparent(headers: &HeaderMap) -> String {
    let valid = |tp: &&str| {
        let parts: Vec<&str> = tp.split('-').collect();
        parts.len() == 4
            && parts[0].len() == 2
            && parts[0] != "ff"
            && parts[1].len() == 32
            && parts[2].len() == 16
            && parts[3].len() == 2
            && parts.iter().all(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
            && parts[1].bytes().any(|b| b != b'0')
            && parts[2].bytes().any(|b| b != b'0')
    };
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(valid)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let trace = uuid::Uuid::new_v4().simple().to_string();
            let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
            format!("00-{trace}-{span}-01")
        })
}

/// Sets the request id and trace context, logs the request in a span carrying
/// both, counts and times it, and echoes `x-request-id`.
async fn edge_context(mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let context = RequestContext {
        request_id: request_id(request.headers()),
        traceparent: traceparent(request.headers()),
    };
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http",
        method = %method,
        path = %request.uri().path(),
        request_id = %context.request_id,
        trace_id = %context.traceparent.split('-').nth(1).unwrap_or_default(),
    );
    shopmesh_platform::tracing_context::attach_remote_parent(&span, request.headers());
    let request_id = context.request_id.clone();
    request.extensions_mut().insert(context);
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;

    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    metrics::counter!("http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method.to_string(), "route" => route).record(elapsed.as_secs_f64());
    span.in_scope(|| tracing::info!(status, elapsed_ms = elapsed.as_millis() as u64, "request"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn labelled(mut response: Response, label: &str) -> Response {
    response
        .extensions_mut()
        .insert(RouteLabel(label.to_owned()));
    response
}

async fn healthz() -> Response {
    labelled(
        axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        "/healthz",
    )
}

/// Ready when every upstream's gRPC health check answers SERVING.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let checks = state.upstreams.names().map(|name| {
        let channel = state.upstreams.channel(name);
        async move {
            let serving = match channel {
                Some(channel) => {
                    let mut client = HealthClient::new(channel);
                    let check = client.check(HealthCheckRequest {
                        service: String::new(),
                    });
                    matches!(
                        tokio::time::timeout(Duration::from_secs(1), check).await,
                        Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving
                    )
                }
                None => false,
            };
            (name.to_owned(), serving)
        }
    });
    let results: std::collections::BTreeMap<String, bool> = futures::future::join_all(checks)
        .await
        .into_iter()
        .collect();
    let ready = results.values().all(|serving| *serving);
    let upstreams: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, serving)| {
            (
                name,
                serde_json::json!(if serving { "SERVING" } else { "NOT_SERVING" }),
            )
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"status": if ready { "ready" } else { "not_ready" }, "upstreams": upstreams});
    labelled((status, axum::Json(body)).into_response(), "/readyz")
}

async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    let response = (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response();
    labelled(response, "/openapi.json")
}

/// Every REST route of the contracts.
async fn api(State(state): State<Arc<AppState>>, request: Request) -> Response {
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
    let response = call(&state, route, bindings, request, &context).await;
    labelled(response, route.template.as_str())
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

/// The request field of a resumable stream (e.g. WatchMyNotifications): it
/// takes the id of the last message seen, which SSE clients send back as
/// `Last-Event-ID` when they reconnect.
const RESUME_FIELD: &str = "after_id";

/// Fills a resumable stream's `after_id` from `Last-Event-ID`, unless the
/// query string set it.
fn resume_from_last_event_id(message: &mut prost_reflect::DynamicMessage, last: Option<&str>) {
    let Some(last) = last.filter(|l| !l.is_empty()) else {
        return;
    };
    let Some(field) = message.descriptor().get_field_by_name(RESUME_FIELD) else {
        return;
    };
    if field.kind() == prost_reflect::Kind::String && !message.has_field(&field) {
        message.set_field(&field, prost_reflect::Value::String(last.to_owned()));
    }
}

/// The SSE id of a resumable stream's message: the `id` of the message it
/// carries (e.g. `WatchMyNotificationsResponse.notification.id`).
fn event_id(message: &prost_reflect::DynamicMessage) -> Option<String> {
    message.descriptor().fields().find_map(|field| {
        let value = message.get_field(&field);
        let inner = value.as_message()?;
        let id = inner.get_field_by_name("id")?;
        id.as_str().filter(|id| !id.is_empty()).map(str::to_owned)
    })
}

/// A server-streaming method as Server-Sent Events: one `data:` event per message,
/// and a final `error` event carrying a problem document if the stream fails. A
/// resumable stream's events carry the message's id as the SSE `id`.
fn sse(
    route: Route,
    stream: tonic::Streaming<prost_reflect::DynamicMessage>,
    request_id: String,
) -> Response {
    let resumable = route
        .method
        .input()
        .get_field_by_name(RESUME_FIELD)
        .is_some();
    let events = stream.map(move |item| {
        let event = match item {
            Ok(message) => match response_json(&route, &message) {
                Ok(json) => {
                    let event = Event::default().data(String::from_utf8_lossy(&json));
                    match resumable.then(|| event_id(&message)).flatten() {
                        Some(id) => event.id(id),
                        None => event,
                    }
                }
                Err(_) => Event::default()
                    .event("error")
                    .data("{\"code\":\"INTERNAL\"}"),
            },
            Err(status) => {
                let problem = Problem::from_status(&status, &request_id);
                Event::default()
                    .event("error")
                    .data(serde_json::to_string(&problem).unwrap_or_default())
            }
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert("x-request-id", HeaderValue::from_static("<script>"));
        assert_ne!(request_id(&headers), "<script>");
    }

    #[test]
    fn traceparents_are_validated() {
        let mut headers = HeaderMap::new();
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", HeaderValue::from_static(good));
        assert_eq!(traceparent(&headers), good);
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        let minted = traceparent(&headers);
        assert_ne!(minted, good);
        assert_eq!(minted.len(), 55);
        assert!(minted.starts_with("00-") && minted.ends_with("-01"));
    }
}
