//! An adapter for a Stripe-like REST provider: JSON POSTs with a bearer API key
//! and an `Idempotency-Key` header on every money-moving call.
//!
//! | operation | request |
//! |---|---|
//! | tokenize a number | `POST /v1/payment_methods` `{"card":{"number"}}` |
//! | check a token | `GET /v1/payment_methods/{id}` |
//! | authorize | `POST /v1/payment_intents` `{"amount","currency","payment_method","capture_method":"manual","confirm":true}` |
//! | capture | `POST /v1/payment_intents/{id}/capture` `{"amount_to_capture"}` |
//! | void | `POST /v1/payment_intents/{id}/cancel` |
//! | refund | `POST /v1/refunds` `{"payment_intent","amount"}` |
//!
//! Answers: 2xx with `{"id", ...}` is approved; 402 or another 4xx with
//! `{"error":{"code","decline_code","message"}}` is declined; 401/403, 409
//! (a key still in flight), 429, 5xx, a transport error or no answer before
//! the deadline is unavailable (outcome unknown, safe to repeat under the key).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use shopmesh_platform::settings::Secret;

use super::{AuthorizeCall, Outcome, PaymentProvider, TokenizeError, Tokenized};
use crate::payment::{CardSummary, MethodInput, Money};

pub struct HttpProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Secret<String>,
}

#[derive(Debug, Deserialize)]
struct Object {
    id: String,
}

#[derive(Debug, Deserialize)]
struct PaymentMethodObject {
    id: String,
    card: CardObject,
}

#[derive(Debug, Deserialize)]
struct CardObject {
    brand: String,
    last4: String,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorObject,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorObject {
    #[serde(default)]
    code: String,
    #[serde(default)]
    decline_code: String,
    #[serde(default)]
    message: String,
}

/// Failure codes passed on as the provider gave them; any other is "provider_error".
const KNOWN_CODES: &[&str] = &["card_declined", "insufficient_funds"];

impl HttpProvider {
    /// `base_url` like `http://payment-provider.egress:8080` (no trailing slash needed);
    /// `timeout` bounds every request, connection included.
    pub fn new(base_url: &str, api_key: Secret<String>, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn post(&self, path: &str, idempotency_key: &str, body: serde_json::Value) -> Outcome {
        let sent = self
            .client
            .post(self.url(path))
            .bearer_auth(self.api_key.expose())
            .header("Idempotency-Key", idempotency_key)
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return unavailable(&err),
        };
        let status = response.status();
        if status.is_success() {
            return match response.json::<Object>().await {
                Ok(object) => Outcome::Approved {
                    reference: object.id,
                },
                Err(err) => unavailable(&err),
            };
        }
        if answer_unknown(status) {
            return Outcome::Unavailable {
                reason: format!("provider answered {status}"),
            };
        }
        let error = response.json::<ErrorBody>().await.unwrap_or_default().error;
        let code = [error.decline_code.as_str(), error.code.as_str()]
            .into_iter()
            .find(|code| KNOWN_CODES.contains(code))
            .unwrap_or("provider_error");
        let message = if error.message.is_empty() {
            "The payment provider refused the request.".to_owned()
        } else {
            error.message
        };
        Outcome::Declined {
            code: code.to_owned(),
            message,
        }
    }

    async fn payment_method(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Tokenized, TokenizeError> {
        let response = request
            .bearer_auth(self.api_key.expose())
            .send()
            .await
            .map_err(|err| TokenizeError::Unavailable(describe(&err)))?;
        let status = response.status();
        if status.is_success() {
            let method: PaymentMethodObject = response
                .json()
                .await
                .map_err(|err| TokenizeError::Unavailable(describe(&err)))?;
            return Ok(Tokenized {
                token: method.id,
                card: CardSummary {
                    brand: method.card.brand.to_ascii_lowercase(),
                    last4: method.card.last4,
                },
                expires_at: None,
            });
        }
        if answer_unknown(status) {
            return Err(TokenizeError::Unavailable(format!(
                "provider answered {status}"
            )));
        }
        let error = response.json::<ErrorBody>().await.unwrap_or_default().error;
        Err(TokenizeError::Invalid(if error.message.is_empty() {
            "the provider does not accept this payment method".to_owned()
        } else {
            error.message
        }))
    }
}

/// Statuses after which nobody knows whether the call took effect.
fn answer_unknown(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::CONFLICT
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::REQUEST_TIMEOUT
        )
}

/// A transport error without its URL (which could carry anything a caller put in a path).
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "provider_timeout".to_owned()
    } else if err.is_connect() {
        "provider unreachable".to_owned()
    } else if err.is_decode() {
        "unreadable provider answer".to_owned()
    } else {
        "provider request failed".to_owned()
    }
}

fn unavailable(err: &reqwest::Error) -> Outcome {
    Outcome::Unavailable {
        reason: describe(err),
    }
}

/// Path segments come from provider ids; keep them to the characters ids use.
fn segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

#[tonic::async_trait]
impl PaymentProvider for HttpProvider {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn tokenize(&self, method: &MethodInput) -> Result<Tokenized, TokenizeError> {
        match method {
            MethodInput::Token(token) => {
                let url = self.url(&format!("/v1/payment_methods/{}", segment(token)));
                self.payment_method(self.client.get(url)).await
            }
            MethodInput::TestCard(number) => {
                let body = json!({ "type": "card", "card": { "number": number.expose() } });
                let request = self
                    .client
                    .post(self.url("/v1/payment_methods"))
                    .json(&body);
                self.payment_method(request).await
            }
        }
    }

    async fn authorize(&self, call: AuthorizeCall<'_>) -> Outcome {
        let body = json!({
            "amount": call.amount.amount_minor,
            "currency": call.amount.currency_code.to_ascii_lowercase(),
            "payment_method": call.token,
            "capture_method": "manual",
            "confirm": true,
        });
        self.post("/v1/payment_intents", call.idempotency_key, body)
            .await
    }

    async fn capture(&self, idempotency_key: &str, authorization: &str, amount: &Money) -> Outcome {
        let path = format!("/v1/payment_intents/{}/capture", segment(authorization));
        let body = json!({ "amount_to_capture": amount.amount_minor });
        self.post(&path, idempotency_key, body).await
    }

    async fn void(&self, idempotency_key: &str, authorization: &str) -> Outcome {
        let path = format!("/v1/payment_intents/{}/cancel", segment(authorization));
        self.post(&path, idempotency_key, json!({})).await
    }

    async fn refund(&self, idempotency_key: &str, authorization: &str, amount: &Money) -> Outcome {
        let body = json!({ "payment_intent": authorization, "amount": amount.amount_minor });
        self.post("/v1/refunds", idempotency_key, body).await
    }
}
