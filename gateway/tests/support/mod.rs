//! The test stack shared by the gateway's integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use shopmesh_platform::auth::{GrpcKeySource, TokenVerifier};
use shopmesh_platform::settings::Env;
use shopmesh_testkit::{TestIdentity, TestService};
use tower::ServiceExt as _;

use gateway::settings::{Cors, GatewaySettings};

pub struct Stack {
    pub product: TestService,
    pub router: axum::Router,
    pub identity: TestIdentity,
}

/// svc-product running behind a stand-in identity provider; every other
/// upstream points at a closed port.
pub async fn stack() -> Stack {
    let identity = TestIdentity::start().await.unwrap();
    let product = TestService::spawn(
        &svc_product::SPEC,
        &[("AUTH_GRPC_URL", identity.auth_url.as_str())],
        svc_product::build,
    )
    .await
    .unwrap();
    let router = gateway(&identity, &[("PRODUCT", product.endpoint())]);
    Stack {
        product,
        router,
        identity,
    }
}

/// The gateway's router in front of `upstreams` (`("CART", url)`: the
/// `CART_GRPC_URL`), trusting `identity`; the upstreams not named point at a
/// closed port.
pub fn gateway(identity: &TestIdentity, upstreams: &[(&str, String)]) -> axum::Router {
    gateway_with(identity, upstreams, &[])
}

/// [`gateway`] with more settings (`("OVERLOAD_MAX_IN_FLIGHT", "1")`).
pub fn gateway_with(
    identity: &TestIdentity,
    upstreams: &[(&str, String)],
    settings: &[(&str, &str)],
) -> axum::Router {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut env = Env::from_pairs([
        ("AUTH_GRPC_URL", identity.auth_url.clone()),
        ("BODY_LIMIT_BYTES", "2048".to_owned()),
        // The test runtime also runs the test: lateness is no overload here.
        ("OVERLOAD_LAG_TARGET_MS", "0".to_owned()),
    ]);
    for name in [
        "USER",
        "PRODUCT",
        "INVENTORY",
        "CART",
        "ORDER",
        "PAYMENT",
        "NOTIFICATION",
        "RECOMMENDATION",
    ] {
        let url = upstreams
            .iter()
            .find(|(upstream, _)| *upstream == name)
            .map_or_else(|| format!("http://{closed}"), |(_, url)| url.clone());
        env = env.with(&format!("{name}_GRPC_URL"), url);
    }
    for (name, value) in settings {
        env = env.with(name, *value);
    }
    let settings = GatewaySettings::from_env(&env).unwrap();
    let verifier = TokenVerifier::new(
        Arc::new(GrpcKeySource::new(&identity.auth_url).unwrap()),
        identity.sessions.clone(),
        "shopmesh",
        "shopmesh",
    );
    let state = gateway::app_state(&settings, Arc::new(verifier)).unwrap();
    gateway::router(Arc::new(state), &Cors::Disabled)
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub request_id: String,
    pub body: Value,
}

impl Stack {
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (status, content_type, request_id) = (
            response.status(),
            header("content-type"),
            header("x-request-id"),
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            request_id,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }
}
