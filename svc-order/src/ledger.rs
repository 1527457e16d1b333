//! The payment ledger: svc-order's own view of what svc-payment did with each
//! order's money, built from `shop.payment.events` (consumer group
//! `svc-order`, through the platform inbox, so a redelivered event changes
//! nothing), and a periodic check that the books agree with the orders.
//!
//! The saga learns each payment's outcome from the RPC it makes; the events
//! are the independent record. The check compares them once an order has been
//! settled for a grace period (events trail the saga by the outbox relay and
//! the consumer): net captured (captured − refunded over the order's payments)
//! must equal the total for a CONFIRMED order and be 0 for a FAILED, CANCELLED
//! or REFUNDED one. A disagreement — money kept for an order that failed, a
//! confirmed order never captured, an order svc-order does not know — is
//! recorded in `order_payment_mismatches`, logged once at ERROR and counted in
//! the `order_payment_mismatches` gauge for an alert: the operator decides,
//! nothing is refunded automatically. This consumer group is also what KEDA
//! scales svc-order on (its lag on `shop.payment.events`).

use std::time::Duration;

use shopmesh_events::{CancellationToken, EnvelopeExt, EventEnvelope, EventHandler, HandlerError};
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::events::v1::{
    PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentVoided,
};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::store::ledger::{self as books, LedgerEntry};

/// The topic consumed.
pub const TOPIC: &str = shopmesh_proto::topics::PAYMENT_EVENTS;

/// One payment event, as the ledger records it.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Authorized(i64),
    Captured(i64),
    /// The payment's refund total so far (not the amount of this refund), so
    /// events applied in any order leave the largest total.
    Refunded(i64),
    Voided,
    Failed,
}

/// The payment and order an event is about, its currency and what it records;
/// `None` for other events on the topic.
fn entry(envelope: &EventEnvelope) -> Result<Option<(Uuid, Uuid, String, Entry)>, HandlerError> {
    fn ids(payment: &str, order: &str) -> Result<(Uuid, Uuid), HandlerError> {
        let parse = |what: &str, raw: &str| {
            Uuid::parse_str(raw)
                .map_err(|_| HandlerError::permanent(anyhow::anyhow!("{what} {raw:?}")))
        };
        Ok((parse("payment_id", payment)?, parse("order_id", order)?))
    }
    fn amount(money: Option<&Money>) -> (String, i64) {
        money.map_or((String::new(), 0), |m| {
            (m.currency_code.clone(), m.amount_minor.max(0))
        })
    }
    let permanent = HandlerError::permanent;
    let (payment, order, money, entry) = if envelope.is::<PaymentAuthorized>() {
        let e: PaymentAuthorized = envelope.payload_as().map_err(permanent)?;
        let (currency, minor) = amount(e.amount.as_ref());
        (e.payment_id, e.order_id, currency, Entry::Authorized(minor))
    } else if envelope.is::<PaymentCaptured>() {
        let e: PaymentCaptured = envelope.payload_as().map_err(permanent)?;
        let (currency, minor) = amount(e.amount.as_ref());
        (e.payment_id, e.order_id, currency, Entry::Captured(minor))
    } else if envelope.is::<PaymentRefunded>() {
        let e: PaymentRefunded = envelope.payload_as().map_err(permanent)?;
        let (currency, minor) = amount(e.total_refunded.as_ref());
        (e.payment_id, e.order_id, currency, Entry::Refunded(minor))
    } else if envelope.is::<PaymentVoided>() {
        let e: PaymentVoided = envelope.payload_as().map_err(permanent)?;
        let (currency, _) = amount(e.amount.as_ref());
        (e.payment_id, e.order_id, currency, Entry::Voided)
    } else if envelope.is::<PaymentFailed>() {
        let e: PaymentFailed = envelope.payload_as().map_err(permanent)?;
        let (currency, _) = amount(e.amount.as_ref());
        (e.payment_id, e.order_id, currency, Entry::Failed)
    } else {
        return Ok(None);
    };
    let (payment, order) = ids(&payment, &order)?;
    Ok(Some((payment, order, money, entry)))
}

/// Applies payment events to `order_payment_ledger`, in the inbox transaction.
pub struct PaymentLedger;

impl EventHandler for PaymentLedger {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        let Some((payment_id, order_id, currency, entry)) = entry(envelope)? else {
            return Ok(());
        };
        let (authorized, captured, refunded) = match entry {
            Entry::Authorized(minor) => (minor, 0, 0),
            Entry::Captured(minor) => (0, minor, 0),
            Entry::Refunded(minor) => (0, 0, minor),
            Entry::Voided | Entry::Failed => (0, 0, 0),
        };
        books::record_entry(
            tx,
            &LedgerEntry {
                payment_id,
                order_id,
                currency_code: currency,
                authorized_minor: authorized,
                captured_minor: captured,
                refunded_minor: refunded,
                voided: entry == Entry::Voided,
                failed: entry == Entry::Failed,
            },
        )
        .await?;
        Ok(())
    }
}

/// How the books are checked.
#[derive(Clone, Copy, Debug)]
pub struct CheckSettings {
    /// How long after an order settled its books are checked: longer than the
    /// payment events take to arrive.
    pub grace: Duration,
    /// How often the check runs.
    pub interval: Duration,
}

/// One check: records newly found mismatches (logging each once), resolves
/// the ones whose books now agree, and returns how many are open.
pub async fn check(pool: &PgPool, grace: Duration) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found = books::mismatches(&mut tx, grace).await?;
    for mismatch in &found {
        if books::record_mismatch(&mut tx, mismatch).await? {
            let books::Mismatch {
                order_id,
                status,
                expected_minor,
                net_captured_minor,
            } = mismatch;
            tracing::error!(%order_id, %status, expected_minor, net_captured_minor,
                "payment books disagree with the order: see order_payment_mismatches (docs/checkout.md)");
        }
    }
    let found_ids: Vec<Uuid> = found.iter().map(|m| m.order_id).collect();
    books::resolve_mismatches_except(&mut tx, &found_ids).await?;
    let open = books::open_mismatches(&mut tx).await?;
    tx.commit().await?;
    Ok(open)
}

/// Runs [`check`] every `settings.interval` until shutdown; `order_payment_mismatches`
/// is the number of open mismatches after the last check.
pub fn spawn_checker(pool: PgPool, settings: CheckSettings, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            // Replicas race harmlessly: the same rows, the same result.
            match check(&pool, settings.grace).await {
                Ok(open) => metrics::gauge!("order_payment_mismatches").set(open as f64),
                Err(err) => tracing::warn!(error = %err, "payment books check failed; retrying"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopmesh_events::Event;

    fn money(minor: i64) -> Option<Money> {
        Some(Money {
            currency_code: "EUR".to_owned(),
            amount_minor: minor,
        })
    }

    #[test]
    fn refunds_record_the_running_total_not_the_amount() {
        let payment = Uuid::now_v7();
        let order = Uuid::now_v7();
        let refunded = PaymentRefunded {
            payment_id: payment.to_string(),
            order_id: order.to_string(),
            amount: money(300),
            total_refunded: money(700),
            ..Default::default()
        };
        let envelope = Event::new(&refunded, "payment", payment.to_string()).into_envelope();
        let (p, o, currency, entry) = entry(&envelope).unwrap().unwrap();
        assert_eq!((p, o, currency.as_str()), (payment, order, "EUR"));
        assert_eq!(entry, Entry::Refunded(700));
    }

    #[test]
    fn a_bad_order_id_is_permanent_and_other_events_are_ignored() {
        let captured = PaymentCaptured {
            payment_id: Uuid::now_v7().to_string(),
            order_id: "not-a-uuid".to_owned(),
            amount: money(100),
            ..Default::default()
        };
        let envelope = Event::new(&captured, "payment", "p").into_envelope();
        assert!(entry(&envelope).unwrap_err().is_permanent());
        let created = shopmesh_proto::shop::events::v1::OrderCreated::default();
        let other = Event::new(&created, "order", "o").into_envelope();
        assert!(entry(&other).unwrap().is_none());
    }
}
