//! Hostile tokens: every one is refused with 401 problem+json and never a 5xx,
//! at the gateway and again at the service when the gateway is bypassed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shopmesh_platform::auth::{AccessClaims, SigningKey};
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{CreateProductRequest, GetProductRequest};
use support::{Stack, stack};

/// `POST /v1/products` is ADMIN: the gateway checks the token, forwards it,
/// svc-product checks it again, and only then does its handler run.
async fn create_product(stack: &Stack, authorization: Option<&str>) -> support::Reply {
    let mut request = Request::post("/v1/products").header("content-type", "application/json");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    stack.send(request.body(Body::from("{}")).unwrap()).await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unsigned(header: &str, claims: &AccessClaims) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}

#[tokio::test]
async fn a_valid_admin_token_passes_both_checks() {
    let stack = stack().await;
    let (_, _, token) = stack.identity.sign_in(&["admin"]).await.unwrap();
    let reply = create_product(&stack, Some(&format!("Bearer {token}"))).await;
    // Past the gateway and the service's own check: the handler itself answers
    // (it validates the empty product).
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["code"], "INVALID_ARGUMENT");

    let (_, _, user_token) = stack.identity.sign_in(&[]).await.unwrap();
    let reply = create_product(&stack, Some(&format!("Bearer {user_token}"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["code"], "PERMISSION_DENIED");
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_401() {
    let stack = stack().await;
    let identity = &stack.identity;
    let (user, session, good) = identity.sign_in(&["admin"]).await.unwrap();
    let claims = identity.claims(user, session, &["admin"]);
    let kid = identity.key.kid.clone();

    let alg_none = unsigned(r#"{"alg":"none","typ":"JWT"}"#, &claims);
    // Algorithm confusion: HMAC keyed with the public key an attacker can read.
    let public = URL_SAFE_NO_PAD.decode(identity.key.public_jwk().x).unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 =
        jsonwebtoken::encode(&hs_header, &claims, &EncodingKey::from_secret(&public)).unwrap();
    let expired = identity
        .key
        .sign(&AccessClaims {
            iat: now() - 7200,
            nbf: now() - 7200,
            exp: now() - 3600,
            ..claims.clone()
        })
        .unwrap();
    let not_yet = identity
        .key
        .sign(&AccessClaims {
            nbf: now() + 3600,
            exp: now() + 7200,
            ..claims.clone()
        })
        .unwrap();
    let wrong_issuer = identity
        .key
        .sign(&AccessClaims {
            iss: "evil".into(),
            ..claims.clone()
        })
        .unwrap();
    let wrong_audience = identity
        .key
        .sign(&AccessClaims {
            aud: "another-app".into(),
            ..claims.clone()
        })
        .unwrap();
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let forged = AccessClaims {
            sub: uuid::Uuid::now_v7().to_string(),
            ..claims.clone()
        };
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap()),
            parts[2]
        )
    };
    let unknown_kid = SigningKey::generate("not-published").sign(&claims).unwrap();
    let (revoked_user, revoked_session, revoked) = identity.sign_in(&["admin"]).await.unwrap();
    identity
        .sessions
        .revoke(revoked_session, revoked_user)
        .await
        .unwrap();

    let cases: Vec<(&str, String)> = vec![
        ("alg none", format!("Bearer {alg_none}")),
        ("HS256 with the public key", format!("Bearer {hs256}")),
        ("expired", format!("Bearer {expired}")),
        ("not yet valid", format!("Bearer {not_yet}")),
        ("wrong issuer", format!("Bearer {wrong_issuer}")),
        ("wrong audience", format!("Bearer {wrong_audience}")),
        ("tampered payload", format!("Bearer {tampered}")),
        ("unknown kid", format!("Bearer {unknown_kid}")),
        ("garbage", "Bearer not.a.jwt".into()),
        ("garbage without dots", "Bearer abc".into()),
        ("empty bearer", "Bearer ".into()),
        ("not a bearer", format!("Basic {good}")),
        ("revoked session", format!("Bearer {revoked}")),
    ];
    for (name, authorization) in &cases {
        let reply = create_product(&stack, Some(authorization)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {}",
            reply.body
        );
        assert_eq!(reply.content_type, "application/problem+json", "{name}");
        assert_eq!(reply.body["code"], "UNAUTHENTICATED", "{name}");
    }
    let missing = create_product(&stack, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);

    // The same tokens straight at the service, bypassing the gateway.
    let mut client = ProductServiceClient::new(stack.product.channel().await.unwrap());
    for (name, authorization) in &cases {
        let mut request = tonic::Request::new(CreateProductRequest::default());
        if let Ok(value) = authorization.parse() {
            request.metadata_mut().insert("authorization", value);
        }
        let status = client.create_product(request).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{name} at the service: {status:?}"
        );
    }
    // A public method ignores a bad token rather than failing the read.
    let mut request = tonic::Request::new(GetProductRequest {
        id: uuid::Uuid::now_v7().to_string(),
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer garbage".parse().unwrap());
    assert_eq!(
        client.get_product(request).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn logout_takes_effect_at_the_next_request() {
    let stack = stack().await;
    let (user, _session, token) = stack.identity.sign_in(&["admin"]).await.unwrap();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        create_product(&stack, Some(&bearer)).await.status,
        StatusCode::BAD_REQUEST
    );
    stack.identity.sessions.revoke_all(user).await.unwrap();
    assert_eq!(
        create_product(&stack, Some(&bearer)).await.status,
        StatusCode::UNAUTHORIZED
    );
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn internal_methods_need_a_service_credential() {
    use shopmesh_proto::shop::user::v1::CreateProfileRequest;
    use shopmesh_proto::shop::user::v1::user_service_client::UserServiceClient;
    let stack = stack().await;
    // Not routable at the edge at all.
    let reply = stack
        .send(
            Request::post("/v1/users:createProfile")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Called directly on a service, INTERNAL is refused without the credential. Any
    // service enforces the whole table, so svc-product's port shows it.
    let mut client = UserServiceClient::new(stack.product.channel().await.unwrap());
    let status = client
        .create_profile(CreateProfileRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(CreateProfileRequest::default());
    request.metadata_mut().insert(
        "x-service-token",
        "wrong-token-of-some-length".parse().unwrap(),
    );
    assert_eq!(
        client.create_profile(request).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    stack.product.stop().await.unwrap();
}
