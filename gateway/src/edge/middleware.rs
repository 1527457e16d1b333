//! What wraps every request: the request id and trace context, the request
//! span and metrics, the answer to an overload refusal, and CORS.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use shopmesh_platform::errors::ErrorReason;
use shopmesh_platform::overload::Refusal;

use super::RequestContext;
use crate::problem::Problem;
use crate::settings::Cors;

/// The matched route's template, for the metrics `route` label.
#[derive(Clone, Debug)]
struct RouteLabel(String);

pub(super) fn cors_layer(cors: &Cors) -> Option<CorsLayer> {
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
pub(super) fn overloaded(headers: &HeaderMap, _: Refusal) -> Response {
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
pub(super) fn request_id(headers: &HeaderMap) -> String {
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
pub(super) fn traceparent(headers: &HeaderMap) -> String {
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
pub(super) async fn edge_context(mut request: Request, next: Next) -> Response {
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
    // The access log, at debug (`RUST_LOG=gateway=debug`): the ingress in front
    // keeps one already, and a line per request written to stdout cost a
    // system call each, a tenth of the gateway's CPU at 8,000 requests/s.
    // Every request is counted in the metrics above.
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed.as_millis() as u64, "request"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

pub(super) fn labelled(mut response: Response, label: &str) -> Response {
    response
        .extensions_mut()
        .insert(RouteLabel(label.to_owned()));
    response
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
