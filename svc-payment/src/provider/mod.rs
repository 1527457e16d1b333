//! The payment provider trait and what it answers, the shipped providers (the
//! simulated card network and a Stripe-like HTTP adapter), and the wrapper that
//! bounds every call by the provider deadline and counts it.

pub mod http;
pub mod simulated;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::payment::{CardSummary, MethodInput, Money};

/// A card number as it arrives in a request. It has no `Display`, its `Debug`
/// shows only the last four digits, and it is dropped once tokenized.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    /// 12 to 19 digits; spaces and dashes between them are ignored.
    pub fn parse(raw: &str) -> Option<Self> {
        let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
        ((12..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
            .then_some(Self(digits))
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// The digits, to hand to a provider; never to a log or the database.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(…{})", self.last4())
    }
}

/// A provider token for a card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokenized {
    pub token: String,
    pub card: CardSummary,
    /// After this the provider no longer accepts the token (None: no expiry).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    /// Not a card or token the provider accepts.
    #[error("{0}")]
    Invalid(String),
    /// The provider did not answer (in time).
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// What a provider answered to a money-moving call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the provider's id of the transaction.
    Approved { reference: String },
    /// Refused for good: a stable code ("card_declined", "insufficient_funds",
    /// "provider_error") and a message safe to show the shopper.
    Declined { code: String, message: String },
    /// No answer, or no definite one (timeout, 5xx, network): the outcome is
    /// unknown and the same call may be repeated under the same key.
    Unavailable { reason: String },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Approved { .. } => "approved",
            Self::Declined { .. } => "declined",
            Self::Unavailable { .. } => "unavailable",
        }
    }
}

/// An authorization to ask for.
#[derive(Clone, Debug)]
pub struct AuthorizeCall<'a> {
    /// The provider honours it: the same key twice is one authorization.
    pub idempotency_key: &'a str,
    pub token: &'a str,
    pub amount: &'a Money,
}

/// A card payment provider. Every money-moving call carries an idempotency key
/// that the provider honours, so asking again after a timeout is safe.
#[tonic::async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Name recorded on payments and in metrics, e.g. "simulated".
    fn name(&self) -> &'static str;

    /// Exchanges a card number for a token, or checks a token.
    async fn tokenize(&self, method: &MethodInput) -> Result<Tokenized, TokenizeError>;

    async fn authorize(&self, call: AuthorizeCall<'_>) -> Outcome;

    /// Takes `amount` of the authorization `authorization`.
    async fn capture(&self, idempotency_key: &str, authorization: &str, amount: &Money) -> Outcome;

    /// Releases the hold of the authorization `authorization`.
    async fn void(&self, idempotency_key: &str, authorization: &str) -> Outcome;

    /// Gives `amount` of the captured authorization `authorization` back.
    async fn refund(&self, idempotency_key: &str, authorization: &str, amount: &Money) -> Outcome;
}

/// The provider as the service uses it: every call bounded by the deadline
/// (a late answer is `Unavailable`) and counted in
/// `payment_provider_calls_total{provider,operation,outcome}`.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<dyn PaymentProvider>,
    deadline: Duration,
}

impl Provider {
    pub fn new(inner: Arc<dyn PaymentProvider>, deadline: Duration) -> Self {
        Self { inner, deadline }
    }

    pub fn name(&self) -> &'static str {
        self.inner.name()
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub async fn tokenize(&self, method: &MethodInput) -> Result<Tokenized, TokenizeError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.deadline, self.inner.tokenize(method))
            .await
            .unwrap_or_else(|_| Err(TokenizeError::Unavailable("provider_timeout".to_owned())));
        let outcome = match &result {
            Ok(_) => "approved",
            Err(TokenizeError::Invalid(_)) => "declined",
            Err(TokenizeError::Unavailable(_)) => "unavailable",
        };
        self.record("tokenize", outcome, started);
        result
    }

    pub async fn authorize(&self, call: AuthorizeCall<'_>) -> Outcome {
        self.bounded("authorize", self.inner.authorize(call)).await
    }

    pub async fn capture(&self, key: &str, authorization: &str, amount: &Money) -> Outcome {
        self.bounded("capture", self.inner.capture(key, authorization, amount))
            .await
    }

    pub async fn void(&self, key: &str, authorization: &str) -> Outcome {
        self.bounded("void", self.inner.void(key, authorization))
            .await
    }

    pub async fn refund(&self, key: &str, authorization: &str, amount: &Money) -> Outcome {
        self.bounded("refund", self.inner.refund(key, authorization, amount))
            .await
    }

    async fn bounded(
        &self,
        operation: &'static str,
        call: impl Future<Output = Outcome>,
    ) -> Outcome {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.deadline, call)
            .await
            .unwrap_or_else(|_| Outcome::Unavailable {
                reason: "provider_timeout".to_owned(),
            });
        self.record(operation, outcome.label(), started);
        outcome
    }

    fn record(&self, operation: &'static str, outcome: &'static str, started: Instant) {
        let provider = self.inner.name();
        metrics::counter!(
            "payment_provider_calls_total",
            "provider" => provider,
            "operation" => operation,
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!(
            "payment_provider_call_duration_seconds",
            "provider" => provider,
            "operation" => operation
        )
        .record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_number_never_prints_more_than_its_last_four() {
        let number = CardNumber::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(number.last4(), "4242");
        assert_eq!(format!("{number:?}"), "CardNumber(…4242)");
        let method = MethodInput::TestCard(number);
        assert!(!format!("{method:?}").contains("42424242"));
    }

    #[test]
    fn card_numbers_are_12_to_19_digits() {
        assert!(CardNumber::parse("4000-0000-0000-0002").is_some());
        assert!(CardNumber::parse("42424242424").is_none());
        assert!(CardNumber::parse("42424242424242424242").is_none());
        assert!(CardNumber::parse("4242x24242424242").is_none());
        assert!(CardNumber::parse("").is_none());
    }
}
