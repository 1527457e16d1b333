//! The payment model: money, statuses, payments and their transactions, and
//! the commands the API turns requests into. Its errors are in `error.rs`.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::provider::CardNumber;

/// Longest idempotency key the API accepts.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest void or refund reason kept.
pub const MAX_REASON_LEN: usize = 500;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// An amount in minor units of an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    pub currency_code: String,
    pub amount_minor: i64,
}

impl Money {
    pub fn new(currency_code: &str, amount_minor: i64) -> Self {
        Self {
            currency_code: currency_code.to_owned(),
            amount_minor,
        }
    }
}

/// True for a three-letter upper-case code such as "USD".
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// 1 to 128 printable ASCII characters.
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| (0x21..0x7f).contains(&b) || b == b' ')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    Voided,
    PartiallyRefunded,
    Refunded,
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "authorized" => Self::Authorized,
            "captured" => Self::Captured,
            "voided" => Self::Voided,
            "partially_refunded" => Self::PartiallyRefunded,
            "refunded" => Self::Refunded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionKind {
    Authorize,
    Capture,
    Void,
    Refund,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "authorize" => Self::Authorize,
            "capture" => Self::Capture,
            "void" => Self::Void,
            "refund" => Self::Refund,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    Pending,
    Succeeded,
    Failed,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// The card a payment was made with: never its number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSummary {
    pub brand: String,
    pub last4: String,
}

/// One provider transaction of a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub kind: TransactionKind,
    pub status: TransactionStatus,
    pub idempotency_key: String,
    pub amount: Money,
    pub provider_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub reason: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// A payment for one order, with its transactions oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: Uuid,
    pub idempotency_key: String,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub status: PaymentStatus,
    pub amount: Money,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub provider: String,
    pub card_token: String,
    pub card: CardSummary,
    pub method_kind: MethodKind,
    pub authorization_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub transactions: Vec<Transaction>,
}

impl Payment {
    pub fn captured(&self) -> Money {
        Money::new(&self.amount.currency_code, self.captured_minor)
    }

    pub fn refunded(&self) -> Money {
        Money::new(&self.amount.currency_code, self.refunded_minor)
    }
}

/// How the shopper's payment method was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    Token,
    TestCard,
}

impl MethodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::TestCard => "test_card",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "token" => Self::Token,
            "test_card" => Self::TestCard,
            _ => return None,
        })
    }
}

/// A payment method as a request gives it. The card number inside never
/// prints (see [`CardNumber`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodInput {
    Token(String),
    TestCard(CardNumber),
}

impl MethodInput {
    pub fn kind(&self) -> MethodKind {
        match self {
            Self::Token(_) => MethodKind::Token,
            Self::TestCard(_) => MethodKind::TestCard,
        }
    }

    /// Whether `payment` was made with this method: the same token, or a test
    /// card with the same last four digits (the number itself is not kept).
    pub fn matches(&self, payment: &Payment) -> bool {
        match self {
            Self::Token(token) => {
                payment.method_kind == MethodKind::Token && &payment.card_token == token
            }
            Self::TestCard(number) => {
                payment.method_kind == MethodKind::TestCard && payment.card.last4 == number.last4()
            }
        }
    }
}

/// A validated AuthorizePayment.
#[derive(Clone, Debug)]
pub struct AuthorizeCommand {
    pub idempotency_key: String,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: Money,
    pub method: MethodInput,
}

/// A validated RefundPayment.
#[derive(Clone, Debug)]
pub struct RefundCommand {
    pub idempotency_key: String,
    pub payment_id: Uuid,
    /// None: everything captured and not yet refunded.
    pub amount: Option<Money>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_printable_ascii_up_to_128() {
        assert!(is_idempotency_key("order-1:authorize"));
        assert!(is_idempotency_key(&"k".repeat(128)));
        assert!(!is_idempotency_key(""));
        assert!(!is_idempotency_key(&"k".repeat(129)));
        assert!(!is_idempotency_key("tab\there"));
        assert!(!is_idempotency_key("clé"));
    }

    #[test]
    fn currency_codes_are_three_upper_case_letters() {
        assert!(is_currency_code("USD"));
        assert!(!is_currency_code("usd"));
        assert!(!is_currency_code("US"));
        assert!(!is_currency_code("US1"));
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            PaymentStatus::Pending,
            PaymentStatus::Authorized,
            PaymentStatus::Captured,
            PaymentStatus::Voided,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded,
            PaymentStatus::Failed,
        ] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        for kind in [
            TransactionKind::Authorize,
            TransactionKind::Capture,
            TransactionKind::Void,
            TransactionKind::Refund,
        ] {
            assert_eq!(TransactionKind::parse(kind.as_str()), Some(kind));
        }
    }
}
