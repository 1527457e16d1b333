//! The gateway's own routes: liveness, readiness (every upstream SERVING) and
//! the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use super::AppState;
use super::middleware::labelled;

pub(super) async fn healthz() -> Response {
    labelled(
        axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        "/healthz",
    )
}

/// Ready when every upstream's gRPC health check answers SERVING.
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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

pub(super) async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    let response = (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response();
    labelled(response, "/openapi.json")
}
