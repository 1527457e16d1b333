//! A local HTTP SMS provider: records every send it accepts, refusing
//! requests without the right API key (401) or without an Idempotency-Key (400).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

pub const API_KEY: &str = "test-sms-api-key";

#[derive(Clone, Debug)]
pub struct SentSms {
    pub idempotency_key: String,
    pub to: String,
    pub text: String,
}

#[derive(Clone)]
pub struct SmsServer {
    pub url: String,
    sent: Arc<Mutex<Vec<SentSms>>>,
}

async fn send(
    State(sent): State<Arc<Mutex<Vec<SentSms>>>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if header("authorization") != format!("Bearer {API_KEY}") {
        return StatusCode::UNAUTHORIZED;
    }
    let idempotency_key = header("idempotency-key");
    if idempotency_key.is_empty() {
        return StatusCode::BAD_REQUEST;
    }
    sent.lock().unwrap().push(SentSms {
        idempotency_key,
        to: body["to"].as_str().unwrap_or_default().to_owned(),
        text: body["text"].as_str().unwrap_or_default().to_owned(),
    });
    StatusCode::ACCEPTED
}

impl SmsServer {
    pub async fn start() -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/sms", post(send))
            .with_state(sent.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/sms", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, sent }
    }

    pub fn sent(&self) -> Vec<SentSms> {
        self.sent.lock().unwrap().clone()
    }
}
