//! svc-payment's events (`shop/events/v1/payment_events.proto`): the payloads,
//! built from the domain types by pure functions, and [`publish`], with which
//! `lifecycle.rs` writes them into the platform's transactional outbox in the
//! transaction of the state change.

use chrono::{DateTime, Utc};
use shopmesh_events::OutboxError;
use shopmesh_proto::shop::common::v1 as common;
use shopmesh_proto::shop::events::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::payment::{Money, Payment, Transaction};

/// Topic of every payment event; the record key is the payment id.
pub const TOPIC: &str = shopmesh_proto::topics::PAYMENT_EVENTS;
/// Aggregate type of every payment event.
pub const AGGREGATE_TYPE: &str = "payment";

/// Writes a payment event into the outbox, in the caller's transaction.
pub async fn publish<M: prost::Name>(
    conn: &mut PgConnection,
    payment_id: Uuid,
    payload: &M,
) -> Result<(), OutboxError> {
    shopmesh_events::publish(conn, TOPIC, AGGREGATE_TYPE, payment_id.to_string(), payload).await?;
    Ok(())
}

fn money(money: &Money) -> Option<common::Money> {
    Some(common::Money {
        currency_code: money.currency_code.clone(),
        amount_minor: money.amount_minor,
    })
}

fn timestamp(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    })
}

fn card(payment: &Payment) -> Option<pb::PaymentCard> {
    Some(pb::PaymentCard {
        brand: payment.card.brand.clone(),
        last4: payment.card.last4.clone(),
    })
}

/// `payment` (now AUTHORIZED) was authorized by `authorization`.
pub fn authorized(
    payment: &Payment,
    authorization: &Transaction,
    at: DateTime<Utc>,
) -> pb::PaymentAuthorized {
    pb::PaymentAuthorized {
        payment_id: payment.id.to_string(),
        order_id: payment.order_id.to_string(),
        user_id: payment.user_id.to_string(),
        amount: money(&payment.amount),
        card: card(payment),
        provider: payment.provider.clone(),
        provider_reference: authorization.provider_reference.clone().unwrap_or_default(),
        authorize_time: timestamp(at),
    }
}

/// `payment` (now CAPTURED) was captured by `capture`.
pub fn captured(
    payment: &Payment,
    capture: &Transaction,
    at: DateTime<Utc>,
) -> pb::PaymentCaptured {
    pb::PaymentCaptured {
        payment_id: payment.id.to_string(),
        order_id: payment.order_id.to_string(),
        user_id: payment.user_id.to_string(),
        amount: money(&capture.amount),
        provider_reference: capture.provider_reference.clone().unwrap_or_default(),
        capture_time: timestamp(at),
    }
}

/// `payment` (now FAILED, with its failure code and message) was declined.
pub fn failed(payment: &Payment, at: DateTime<Utc>) -> pb::PaymentFailed {
    pb::PaymentFailed {
        payment_id: payment.id.to_string(),
        order_id: payment.order_id.to_string(),
        user_id: payment.user_id.to_string(),
        amount: money(&payment.amount),
        card: card(payment),
        failure_code: payment.failure_code.clone().unwrap_or_default(),
        failure_message: payment.failure_message.clone().unwrap_or_default(),
        fail_time: timestamp(at),
    }
}

/// `refund` gave money back; `payment` already counts it in `refunded_minor`.
pub fn refunded(payment: &Payment, refund: &Transaction, at: DateTime<Utc>) -> pb::PaymentRefunded {
    pb::PaymentRefunded {
        payment_id: payment.id.to_string(),
        order_id: payment.order_id.to_string(),
        user_id: payment.user_id.to_string(),
        amount: money(&refund.amount),
        total_refunded: money(&payment.refunded()),
        fully_refunded: payment.refunded_minor == payment.captured_minor,
        reason: refund.reason.clone(),
        provider_reference: refund.provider_reference.clone().unwrap_or_default(),
        refund_time: timestamp(at),
    }
}

/// `payment` (now VOIDED) had its hold released by `void`.
pub fn voided(payment: &Payment, void: &Transaction, at: DateTime<Utc>) -> pb::PaymentVoided {
    pb::PaymentVoided {
        payment_id: payment.id.to_string(),
        order_id: payment.order_id.to_string(),
        user_id: payment.user_id.to_string(),
        amount: money(&payment.amount),
        reason: void.reason.clone(),
        void_time: timestamp(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::{
        CardSummary, MethodKind, PaymentStatus, TransactionKind, TransactionStatus,
    };

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 5).unwrap()
    }

    fn payment(status: PaymentStatus) -> Payment {
        Payment {
            id: Uuid::now_v7(),
            idempotency_key: "checkout-1:authorize".to_owned(),
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            status,
            amount: Money::new("EUR", 4200),
            captured_minor: 0,
            refunded_minor: 0,
            provider: "simulated".to_owned(),
            card_token: "tok_abc.def".to_owned(),
            card: CardSummary {
                brand: "visa".to_owned(),
                last4: "4242".to_owned(),
            },
            method_kind: MethodKind::TestCard,
            authorization_reference: Some("sim_auth_1".to_owned()),
            failure_code: None,
            failure_message: None,
            created_at: at(),
            updated_at: at(),
            transactions: Vec::new(),
        }
    }

    fn transaction(payment: &Payment, kind: TransactionKind, amount: i64) -> Transaction {
        Transaction {
            id: Uuid::now_v7(),
            payment_id: payment.id,
            kind,
            status: TransactionStatus::Succeeded,
            idempotency_key: "k".to_owned(),
            amount: Money::new("EUR", amount),
            provider_reference: Some(format!("ref_{}", kind.as_str())),
            failure_code: None,
            failure_message: None,
            reason: "order cancelled by customer".to_owned(),
            attempts: 1,
            created_at: at(),
        }
    }

    #[test]
    fn authorized_carries_card_provider_and_reference_but_no_token() {
        let payment = payment(PaymentStatus::Authorized);
        let auth = transaction(&payment, TransactionKind::Authorize, 4200);
        let event = authorized(&payment, &auth, at());
        assert_eq!(event.payment_id, payment.id.to_string());
        assert_eq!(event.order_id, payment.order_id.to_string());
        assert_eq!(event.user_id, payment.user_id.to_string());
        assert_eq!(event.amount.as_ref().unwrap().amount_minor, 4200);
        assert_eq!(event.card.as_ref().unwrap().last4, "4242");
        assert_eq!(event.provider, "simulated");
        assert_eq!(event.provider_reference, "ref_authorize");
        assert_eq!(
            event.authorize_time,
            Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 5
            })
        );
        assert!(!format!("{event:?}").contains("tok_"));
    }

    #[test]
    fn captured_is_the_amount_taken() {
        let payment = payment(PaymentStatus::Captured);
        let capture = transaction(&payment, TransactionKind::Capture, 4200);
        let event = captured(&payment, &capture, at());
        assert_eq!(event.amount.unwrap().amount_minor, 4200);
        assert_eq!(event.provider_reference, "ref_capture");
        assert!(event.capture_time.is_some());
    }

    #[test]
    fn failed_carries_the_code_and_the_shoppers_message() {
        let mut payment = payment(PaymentStatus::Failed);
        payment.failure_code = Some("insufficient_funds".to_owned());
        payment.failure_message = Some("The card has insufficient funds.".to_owned());
        let event = failed(&payment, at());
        assert_eq!(event.failure_code, "insufficient_funds");
        assert_eq!(event.failure_message, "The card has insufficient funds.");
        assert_eq!(event.amount.unwrap().currency_code, "EUR");
        assert_eq!(event.card.unwrap().brand, "visa");
    }

    #[test]
    fn refunded_tells_partial_from_full() {
        let mut payment = payment(PaymentStatus::PartiallyRefunded);
        payment.captured_minor = 4200;
        payment.refunded_minor = 1000;
        let refund = transaction(&payment, TransactionKind::Refund, 1000);
        let partial = refunded(&payment, &refund, at());
        assert_eq!(partial.amount.unwrap().amount_minor, 1000);
        assert_eq!(partial.total_refunded.unwrap().amount_minor, 1000);
        assert!(!partial.fully_refunded);
        assert_eq!(partial.reason, "order cancelled by customer");

        payment.refunded_minor = 4200;
        let rest = transaction(&payment, TransactionKind::Refund, 3200);
        let full = refunded(&payment, &rest, at());
        assert_eq!(full.amount.unwrap().amount_minor, 3200);
        assert_eq!(full.total_refunded.unwrap().amount_minor, 4200);
        assert!(full.fully_refunded);
    }

    #[test]
    fn voided_is_the_amount_that_was_held() {
        let payment = payment(PaymentStatus::Voided);
        let void = transaction(&payment, TransactionKind::Void, 4200);
        let event = voided(&payment, &void, at());
        assert_eq!(event.amount.unwrap().amount_minor, 4200);
        assert_eq!(event.reason, "order cancelled by customer");
        assert!(event.void_time.is_some());
    }
}
