#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Stripe-like HTTP provider adapter against a local server that speaks
//! that API: it checks the API key and the Idempotency-Key, replays a repeated
//! key, and can be told to decline, fail with 500 or hang. Then the service
//! itself on `PAYMENT_PROVIDER=http` against the same server.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shopmesh_platform::settings::Secret;
use shopmesh_proto::shop::payment::v1::{PaymentStatus, TransactionStatus};
use shopmesh_testkit::{TestService, as_service};
use support::*;
use svc_payment::payment::{MethodInput, Money};
use svc_payment::provider::http::HttpProvider;
use svc_payment::provider::{AuthorizeCall, CardNumber, Outcome, PaymentProvider, TokenizeError};
use tonic::Code;
use uuid::Uuid;

const API_KEY: &str = "sk_test_local_provider";
const TIMEOUT: Duration = Duration::from_millis(300);

/// What the server does with the next money-moving requests.
#[derive(Clone, Debug)]
enum Mode {
    Approve,
    Decline {
        code: &'static str,
        decline_code: &'static str,
    },
    Fail500,
    Hang,
}

/// One request the server received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    idempotency_key: Option<String>,
    body: Value,
}

struct Server {
    mode: Mutex<Mode>,
    /// Answers by idempotency key, replayed for a repeated key.
    answers: Mutex<HashMap<String, (u16, Value)>>,
    received: Mutex<Vec<Received>>,
    /// Requests that did something (not replays, not refusals).
    executed: Mutex<u32>,
}

type Shared = Arc<Server>;

impl Server {
    async fn start() -> (Shared, String) {
        let server = Arc::new(Server {
            mode: Mutex::new(Mode::Approve),
            answers: Mutex::new(HashMap::new()),
            received: Mutex::new(Vec::new()),
            executed: Mutex::new(0),
        });
        let app = axum::Router::new()
            .route("/v1/payment_methods", post(create_method))
            .route("/v1/payment_methods/{id}", get(read_method))
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/{id}/capture", post(capture_intent))
            .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
            .route("/v1/refunds", post(create_refund))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (server, url)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn executed(&self) -> u32 {
        *self.executed.lock().unwrap()
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn error(status: StatusCode, code: &str, decline_code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "decline_code": decline_code, "message": message}})),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {API_KEY}"))
}

/// What every money-moving endpoint shares: auth, the key, replays, the mode.
async fn money_call(
    server: Shared,
    headers: HeaderMap,
    path: String,
    body: Value,
    approve: impl FnOnce() -> Value,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    server.received.lock().unwrap().push(Received {
        path,
        idempotency_key: key.clone(),
        body,
    });
    if !authorized(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "",
            "Invalid API key",
        );
    }
    let Some(key) = key else {
        return error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_missing",
            "",
            "Idempotency-Key required",
        );
    };
    if let Some((status, body)) = server.answers.lock().unwrap().get(&key).cloned() {
        return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
    }
    let mode = server.mode.lock().unwrap().clone();
    let (status, body) = match mode {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Mode::Fail500 => return error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "", "boom"),
        Mode::Decline { code, decline_code } => (
            402,
            json!({"error": {"code": code, "decline_code": decline_code, "message": "Your card was declined."}}),
        ),
        Mode::Approve => (200, approve()),
    };
    *server.executed.lock().unwrap() += 1;
    server
        .answers
        .lock()
        .unwrap()
        .insert(key, (status, body.clone()));
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

async fn create_method(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorized(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "",
            "Invalid API key",
        );
    }
    match body["card"]["number"].as_str() {
        Some("4242424242424242") => Json(json!({
            "id": "pm_card_visa", "object": "payment_method",
            "card": {"brand": "Visa", "last4": "4242"}
        }))
        .into_response(),
        _ => error(
            StatusCode::PAYMENT_REQUIRED,
            "incorrect_number",
            "",
            "Your card number is incorrect.",
        ),
    }
}

async fn read_method(headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "",
            "Invalid API key",
        );
    }
    if id == "pm_card_visa" {
        Json(json!({"id": id, "card": {"brand": "visa", "last4": "4242"}})).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "resource_missing",
            "",
            "No such PaymentMethod",
        )
    }
}

async fn create_intent(
    State(server): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let id = format!("pi_{}", Uuid::now_v7().simple());
    money_call(
        server,
        headers,
        "/v1/payment_intents".to_owned(),
        body,
        || json!({"id": id, "object": "payment_intent", "status": "requires_capture"}),
    )
    .await
}

async fn capture_intent(
    State(server): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/v1/payment_intents/{id}/capture");
    money_call(
        server,
        headers,
        path,
        body,
        || json!({"id": id, "status": "succeeded"}),
    )
    .await
}

async fn cancel_intent(
    State(server): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/v1/payment_intents/{id}/cancel");
    money_call(
        server,
        headers,
        path,
        body,
        || json!({"id": id, "status": "canceled"}),
    )
    .await
}

async fn create_refund(
    State(server): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let id = format!("re_{}", Uuid::now_v7().simple());
    money_call(
        server,
        headers,
        "/v1/refunds".to_owned(),
        body,
        || json!({"id": id, "object": "refund", "status": "succeeded"}),
    )
    .await
}

fn adapter(url: &str, key: &str) -> HttpProvider {
    HttpProvider::new(url, Secret::new(key.to_owned()), TIMEOUT).unwrap()
}

fn usd_money(amount_minor: i64) -> Money {
    Money::new("USD", amount_minor)
}

async fn authorize(provider: &HttpProvider, key: &str) -> Outcome {
    let amount = usd_money(2599);
    provider
        .authorize(AuthorizeCall {
            idempotency_key: key,
            token: "pm_card_visa",
            amount: &amount,
        })
        .await
}

#[tokio::test]
async fn an_approval_carries_the_providers_id_and_a_repeated_key_is_one_authorization() {
    let (server, url) = Server::start().await;
    let provider = adapter(&url, API_KEY);
    let first = authorize(&provider, "key-1").await;
    let Outcome::Approved { reference } = &first else {
        panic!("{first:?}")
    };
    assert!(reference.starts_with("pi_"));
    assert_eq!(authorize(&provider, "key-1").await, first);
    assert_eq!(server.executed(), 1);
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].path, "/v1/payment_intents");
    assert_eq!(received[0].idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(
        received[0].body,
        json!({"amount": 2599, "currency": "usd", "payment_method": "pm_card_visa",
               "capture_method": "manual", "confirm": true})
    );
}

#[tokio::test]
async fn declines_map_to_our_failure_codes() {
    let (server, url) = Server::start().await;
    let provider = adapter(&url, API_KEY);
    for (code, decline_code, ours) in [
        ("card_declined", "generic_decline", "card_declined"),
        ("card_declined", "insufficient_funds", "insufficient_funds"),
        ("processing_error", "", "provider_error"),
        ("expired_card", "", "provider_error"),
    ] {
        server.set(Mode::Decline { code, decline_code });
        let outcome = authorize(&provider, &key()).await;
        assert_eq!(
            outcome,
            Outcome::Declined {
                code: ours.to_owned(),
                message: "Your card was declined.".to_owned()
            },
            "{code}/{decline_code}"
        );
    }
}

#[tokio::test]
async fn errors_hangs_bad_keys_and_no_server_are_unavailable() {
    let (server, url) = Server::start().await;
    let provider = adapter(&url, API_KEY);

    server.set(Mode::Fail500);
    assert!(matches!(
        authorize(&provider, &key()).await,
        Outcome::Unavailable { .. }
    ));

    server.set(Mode::Hang);
    let started = Instant::now();
    let outcome = authorize(&provider, &key()).await;
    assert_eq!(
        outcome,
        Outcome::Unavailable {
            reason: "provider_timeout".to_owned()
        }
    );
    let waited = started.elapsed();
    assert!(
        waited >= TIMEOUT && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    server.set(Mode::Approve);
    let wrong_key = adapter(&url, "sk_test_wrong");
    assert!(matches!(
        authorize(&wrong_key, &key()).await,
        Outcome::Unavailable { .. }
    ));
    assert_eq!(server.executed(), 0);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(
        authorize(&adapter(&nowhere, API_KEY), &key()).await,
        Outcome::Unavailable { .. }
    ));
}

#[tokio::test]
async fn capture_void_and_refund_name_the_intent_and_send_their_keys() {
    let (server, url) = Server::start().await;
    let provider = adapter(&url, API_KEY);
    let amount = usd_money(1000);
    let capture = provider.capture("cap-1", "pi_123", &amount).await;
    assert_eq!(
        capture,
        Outcome::Approved {
            reference: "pi_123".to_owned()
        }
    );
    let void = provider.void("void-1", "pi_456").await;
    assert_eq!(
        void,
        Outcome::Approved {
            reference: "pi_456".to_owned()
        }
    );
    let refund = provider.refund("ref-1", "pi_123", &usd_money(400)).await;
    assert!(matches!(&refund, Outcome::Approved { reference } if reference.starts_with("re_")));
    assert_eq!(
        provider.refund("ref-1", "pi_123", &usd_money(400)).await,
        refund
    );

    let received = server.received();
    let seen: Vec<_> = received
        .iter()
        .map(|r| {
            (
                r.path.as_str(),
                r.idempotency_key.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/v1/payment_intents/pi_123/capture", "cap-1"),
            ("/v1/payment_intents/pi_456/cancel", "void-1"),
            ("/v1/refunds", "ref-1"),
            ("/v1/refunds", "ref-1"),
        ]
    );
    assert_eq!(received[0].body, json!({"amount_to_capture": 1000}));
    assert_eq!(
        received[2].body,
        json!({"payment_intent": "pi_123", "amount": 400})
    );
    assert_eq!(server.executed(), 3);
}

#[tokio::test]
async fn tokenizing_keeps_brand_and_last_four() {
    let (_server, url) = Server::start().await;
    let provider = adapter(&url, API_KEY);
    let tokenized = provider
        .tokenize(&MethodInput::TestCard(
            CardNumber::parse("4242424242424242").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(tokenized.token, "pm_card_visa");
    assert_eq!(
        (tokenized.card.brand.as_str(), tokenized.card.last4.as_str()),
        ("visa", "4242")
    );
    let checked = provider
        .tokenize(&MethodInput::Token("pm_card_visa".to_owned()))
        .await
        .unwrap();
    assert_eq!(checked.card, tokenized.card);
    for method in [
        MethodInput::Token("pm_unknown".to_owned()),
        MethodInput::TestCard(CardNumber::parse("4000000000000002").unwrap()),
    ] {
        let err = provider.tokenize(&method).await.unwrap_err();
        assert!(matches!(err, TokenizeError::Invalid(_)), "{err:?}");
    }
    let wrong_key = adapter(&url, "sk_test_wrong");
    let err = wrong_key
        .tokenize(&MethodInput::Token("pm_card_visa".to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenizeError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_service_runs_on_the_http_provider() {
    let (server, url) = Server::start().await;
    let identity = shopmesh_testkit::TestIdentity::start().await.unwrap();
    let service = TestService::spawn(
        &svc_payment::SPEC,
        &[
            ("AUTH_GRPC_URL", identity.auth_url.as_str()),
            ("PAYMENT_PROVIDER", "http"),
            ("PAYMENT_HTTP_BASE_URL", url.as_str()),
            ("PAYMENT_HTTP_API_KEY", API_KEY),
            ("PAYMENT_PROVIDER_TIMEOUT_MS", "300"),
        ],
        svc_payment::build,
    )
    .await
    .unwrap();
    let mut client = InternalClient::new(as_service(service.channel().await.unwrap(), "svc-order"));
    let user = Uuid::now_v7();
    let request = |key: &str| authorize_request(key, Uuid::now_v7(), user, 700, VISA);

    let payment = client
        .authorize_payment(request(&key()))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.status(), PaymentStatus::Authorized);
    assert_eq!(payment.provider, "http");
    assert!(
        payment.transactions[0]
            .provider_reference
            .starts_with("pi_")
    );
    // Our provider key is the transaction id.
    let sent = server.received();
    assert_eq!(
        sent[0].idempotency_key.as_deref(),
        Some(payment.transactions[0].id.as_str())
    );

    // A hanging provider: UNAVAILABLE, PENDING; once it answers, the same key settles.
    server.set(Mode::Hang);
    let hanging = key();
    let err = client
        .authorize_payment(request(&hanging))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let status: String =
        sqlx::query_scalar("SELECT status FROM payments WHERE idempotency_key = $1")
            .bind(&hanging)
            .fetch_one(service.db())
            .await
            .unwrap();
    assert_eq!(status, "pending");
    server.set(Mode::Approve);
    let mut retry = request(&hanging);
    let order_id: Uuid =
        sqlx::query_scalar("SELECT order_id FROM payments WHERE idempotency_key = $1")
            .bind(&hanging)
            .fetch_one(service.db())
            .await
            .unwrap();
    retry.order_id = order_id.to_string();
    let settled = client
        .authorize_payment(retry)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(settled.status(), PaymentStatus::Authorized);
    assert_eq!(settled.transactions.len(), 1);
    assert_eq!(
        settled.transactions[0].status(),
        TransactionStatus::Succeeded
    );
    let keys: Vec<_> = server
        .received()
        .iter()
        .skip(1)
        .map(|r| r.idempotency_key.clone().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            settled.transactions[0].id.clone(),
            settled.transactions[0].id.clone()
        ]
    );

    // A 500 on capture: UNAVAILABLE, the payment stays AUTHORIZED; a retry captures.
    server.set(Mode::Fail500);
    let capture_key = key();
    let capture = shopmesh_proto::shop::payment::v1::CapturePaymentRequest {
        idempotency_key: capture_key.clone(),
        payment_id: payment.id.clone(),
    };
    let err = client.capture_payment(capture.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // While that capture's outcome is unknown, a void must not race it.
    let err = client
        .void_payment(shopmesh_proto::shop::payment::v1::VoidPaymentRequest {
            idempotency_key: key(),
            payment_id: payment.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    server.set(Mode::Approve);
    let captured = client
        .capture_payment(capture)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(captured.status(), PaymentStatus::Captured);

    // A declined refund is refused and recorded; the payment is unchanged.
    server.set(Mode::Decline {
        code: "charge_disputed",
        decline_code: "",
    });
    let err = client
        .refund_payment(shopmesh_proto::shop::payment::v1::RefundPaymentRequest {
            idempotency_key: key(),
            payment_id: payment.id.clone(),
            amount: None,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payment_transactions WHERE kind = 'refund' AND status = 'failed'",
    )
    .fetch_one(service.db())
    .await
    .unwrap();
    assert_eq!(failed, 1);
}
