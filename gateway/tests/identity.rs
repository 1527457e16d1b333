//! Identity end to end through the REST edge, with the real svc-auth and
//! svc-user on PostgreSQL and Redis: register → login → a user method → refresh
//! → logout → the old token is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use shopmesh_platform::auth::{GrpcKeySource, SessionStore, TokenVerifier};
use shopmesh_platform::settings::Env;
use shopmesh_testkit::{TestService, redis_url};
use tower::ServiceExt as _;

use gateway::settings::{Cors, GatewaySettings};

struct Edge {
    router: axum::Router,
    _auth: TestService,
    _user: TestService,
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

async fn edge() -> Edge {
    // Each service calls the other (auth → user: CreateProfile; user → auth: JWKS),
    // so both addresses are fixed before either starts.
    let (auth_addr, user_addr) = (free_addr(), free_addr());
    let auth_url = format!("http://{auth_addr}");
    let user_url = format!("http://{user_addr}");
    let user = TestService::spawn(
        &svc_user::SPEC,
        &[("GRPC_ADDR", &user_addr), ("AUTH_GRPC_URL", &auth_url)],
        svc_user::build,
    )
    .await
    .unwrap();
    let auth = TestService::spawn(
        &svc_auth::SPEC,
        &[
            ("GRPC_ADDR", &auth_addr),
            ("AUTH_GRPC_URL", &auth_url),
            ("USER_GRPC_URL", &user_url),
        ],
        svc_auth::build,
    )
    .await
    .unwrap();
    let env = Env::from_pairs([
        ("AUTH_GRPC_URL", auth_url.clone()),
        ("USER_GRPC_URL", user_url),
    ]);
    let settings = GatewaySettings::from_env(&env).unwrap();
    let redis = shopmesh_platform::redis::connect(
        &shopmesh_platform::settings::RedisSettings::from_env(&Env::from_pairs([(
            "REDIS_URL",
            redis_url(),
        )]))
        .unwrap(),
    )
    .await
    .unwrap();
    let verifier = TokenVerifier::new(
        Arc::new(GrpcKeySource::new(&auth_url).unwrap()),
        SessionStore::new(redis),
        "shopmesh",
        "shopmesh",
    );
    let state = gateway::app_state(&settings, Arc::new(verifier)).unwrap();
    Edge {
        router: gateway::router(Arc::new(state), &Cors::Disabled),
        _auth: auth,
        _user: user,
    }
}

impl Edge {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = body
            .map(|b| Body::from(b.to_string()))
            .unwrap_or_else(Body::empty);
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

fn email() -> String {
    format!("shopper-{}@example.com", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn register_login_profile_refresh_logout() {
    let edge = edge().await;
    let email = email();
    let password = "a sturdy passphrase 42";
    let (status, registered) = edge
        .call(
            "POST",
            "/v1/auth:register",
            None,
            Some(json!({"email": email, "password": password, "displayName": "Ada"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{registered}");

    let (status, tokens) = edge
        .call(
            "POST",
            "/v1/auth:login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["accessToken"].as_str().unwrap().to_owned();
    let refresh = tokens["refreshToken"].as_str().unwrap().to_owned();

    let (status, me) = edge.call("GET", "/v1/me", Some(&access), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["displayName"], "Ada");

    let (status, updated) = edge
        .call(
            "PATCH",
            "/v1/me",
            Some(&access),
            Some(json!({"displayName": "Ada L."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (_, me) = edge.call("GET", "/v1/me", Some(&access), None).await;
    assert_eq!(
        me["displayName"], "Ada L.",
        "a read after an update sees it"
    );

    let (status, renewed) = edge
        .call(
            "POST",
            "/v1/auth:refresh",
            None,
            Some(json!({"refreshToken": refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let new_access = renewed["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(
        edge.call("GET", "/v1/me", Some(&new_access), None).await.0,
        StatusCode::OK
    );

    let (status, _) = edge
        .call(
            "POST",
            "/v1/auth:logout",
            Some(&new_access),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for token in [&access, &new_access] {
        let (status, problem) = edge.call("GET", "/v1/me", Some(token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    }
    let (status, _) = edge
        .call(
            "POST",
            "/v1/auth:refresh",
            None,
            Some(json!({"refreshToken": renewed["refreshToken"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let edge = edge().await;
    let email = email();
    edge.call(
        "POST",
        "/v1/auth:register",
        None,
        Some(json!({"email": email, "password": "another good passphrase", "displayName": "B"})),
    )
    .await;
    let (s1, mut unknown) = edge
        .call(
            "POST",
            "/v1/auth:login",
            None,
            Some(json!({"email": "nobody-here@example.com", "password": "whatever it is"})),
        )
        .await;
    let (s2, mut wrong) = edge
        .call(
            "POST",
            "/v1/auth:login",
            None,
            Some(json!({"email": email, "password": "not the password"})),
        )
        .await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s1, s2);
    // Bodies are identical but for the request id every response carries.
    unknown.as_object_mut().unwrap().remove("request_id");
    wrong.as_object_mut().unwrap().remove("request_id");
    assert_eq!(unknown, wrong);
}

#[tokio::test]
async fn jwks_and_validation_errors_through_the_edge() {
    let edge = edge().await;
    let (status, jwks) = edge.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );

    let (status, problem) = edge
        .call(
            "POST",
            "/v1/auth:register",
            None,
            Some(json!({"email": "not-an-email", "password": "short", "displayName": "C"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = problem["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"password"),
        "{problem}"
    );
}
