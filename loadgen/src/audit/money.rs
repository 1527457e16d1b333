//! Invariants `money` (svc-order's orders against svc-payment's payments) and
//! `payment-ledger` (svc-order's record of payment events against the
//! payments themselves).

use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use super::facts::{Orders, Payment, Status};
use super::{Finding, Invariant};

/// Per terminal order, the money kept over its payments (Σ captured −
/// refunded) is its total when CONFIRMED and 0 when FAILED, CANCELLED or
/// REFUNDED; no payment is left PENDING or AUTHORIZED (every authorization
/// captured or voided); every payment is for an order svc-order has, in its
/// currency.
///
/// Guaranteed by the saga (svc-order `saga.rs`): confirmation follows a
/// capture of the whole total; compensation voids a known payment, refunds a
/// captured one (a void that finds it captured turns into a refund), and
/// `settle_authorization` finds and voids an authorization whose answer was
/// lost; a cancelled confirmed order refunds the total. svc-order's own
/// `ledger.rs` check applies the same rule to its event-fed ledger.
pub fn net_captured(orders: &Orders, payments: &[Payment]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut by_order: HashMap<Uuid, Vec<&Payment>> = HashMap::new();
    for payment in payments {
        let subject = || format!("payment {} of order {}", payment.id, payment.order_id);
        if payment.is_open() {
            findings.push(Finding::new(
                Invariant::Money,
                subject(),
                "captured, voided, refunded or failed",
                format!(
                    "{} ({} {} on hold)",
                    payment.status, payment.currency_code, payment.amount_minor
                ),
            ));
        }
        match orders.get(&payment.order_id) {
            None => findings.push(Finding::new(
                Invariant::Money,
                subject(),
                "an order svc-order knows",
                format!(
                    "no such order ({}, net captured {} {})",
                    payment.status,
                    payment.currency_code,
                    payment.net_minor()
                ),
            )),
            Some(order) if order.currency != payment.currency_code => {
                findings.push(Finding::new(
                    Invariant::Money,
                    subject(),
                    format!("currency {}", order.currency),
                    payment.currency_code.clone(),
                ));
            }
            Some(_) => {}
        }
        by_order.entry(payment.order_id).or_default().push(payment);
    }
    let mut settled: Vec<_> = orders.values().filter(|o| o.status.is_terminal()).collect();
    settled.sort_by_key(|o| o.id);
    for order in settled {
        let paid = by_order.get(&order.id).map(Vec::as_slice).unwrap_or(&[]);
        let net: i64 = paid.iter().map(|p| p.net_minor()).sum();
        let expected = if order.status == Status::Confirmed {
            order.total_minor
        } else {
            0
        };
        if net != expected {
            let statuses: Vec<&str> = paid.iter().map(|p| p.status.as_str()).collect();
            findings.push(Finding::new(
                Invariant::Money,
                order.subject(),
                format!("net captured {} {expected}", order.currency),
                format!(
                    "{} {net} over {} ({})",
                    order.currency,
                    super::counted(paid.len() as u64, "payment"),
                    statuses.join(", ")
                ),
            ));
        }
    }
    findings
}

#[derive(sqlx::FromRow)]
struct LedgerRow {
    payment_id: Uuid,
    #[sqlx(flatten)]
    books: Books,
}

/// The amounts and flags of one payment as its events tell them.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Books {
    order_id: Uuid,
    authorized_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    voided: bool,
    failed: bool,
}

impl Books {
    /// What svc-order's ledger holds once every event of `payment` arrived:
    /// PaymentAuthorized/Captured carry the payment's amount and capture,
    /// PaymentRefunded its running refund total (svc-payment `events.rs`,
    /// svc-order `ledger.rs`).
    fn of(payment: &Payment) -> Self {
        Self {
            order_id: payment.order_id,
            authorized_minor: if payment.was_authorized() {
                payment.amount_minor
            } else {
                0
            },
            captured_minor: payment.captured_minor,
            refunded_minor: payment.refunded_minor,
            voided: payment.status == "voided",
            failed: payment.status == "failed",
        }
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "authorized {}, captured {}, refunded {}",
            self.authorized_minor, self.captured_minor, self.refunded_minor
        );
        if self.voided {
            text.push_str(", voided");
        }
        if self.failed {
            text.push_str(", failed");
        }
        text
    }
}

/// svc-order's `order_payment_ledger` (built from `shop.payment.events`
/// through its inbox) has one row per payment that left PENDING, agreeing
/// with the payment, and none for a payment svc-payment does not have: no
/// payment event lost, none invented. The ledger keeps the largest amount
/// and ORs the flags, so an event applied twice changes nothing here; the
/// inbox is what stops it twice elsewhere.
///
/// Guaranteed by svc-payment writing each event into its outbox in the
/// transaction of the change (`payments.rs`), the relay publishing every
/// outbox row, and svc-order's consumer recording each event with its inbox
/// row in one transaction.
pub async fn payment_ledger(
    order_db: &PgPool,
    payments: &[Payment],
) -> anyhow::Result<Vec<Finding>> {
    let rows: Vec<LedgerRow> = sqlx::query_as(
        "SELECT payment_id, order_id, authorized_minor, captured_minor, refunded_minor, \
                voided, failed \
         FROM order_payment_ledger",
    )
    .fetch_all(order_db)
    .await?;
    let mut ledger: HashMap<Uuid, Books> = rows
        .into_iter()
        .map(|row| (row.payment_id, row.books))
        .collect();
    let mut findings = Vec::new();
    for payment in payments {
        let recorded = ledger.remove(&payment.id);
        // A pending payment has announced nothing yet (`money` reports it).
        if payment.status == "pending" {
            continue;
        }
        let expected = Books::of(payment);
        let subject = format!(
            "payment {} of order {} ({})",
            payment.id, payment.order_id, payment.status
        );
        match recorded {
            None => findings.push(Finding::new(
                Invariant::PaymentLedger,
                subject,
                format!("a ledger row: {}", expected.describe()),
                "none",
            )),
            Some(books) if books != expected => findings.push(Finding::new(
                Invariant::PaymentLedger,
                subject,
                format!("{} (order {})", expected.describe(), expected.order_id),
                format!("{} (order {})", books.describe(), books.order_id),
            )),
            Some(_) => {}
        }
    }
    let mut unknown: Vec<_> = ledger.into_iter().collect();
    unknown.sort_by_key(|(id, _)| *id);
    findings.extend(unknown.into_iter().map(|(payment_id, books)| {
        Finding::new(
            Invariant::PaymentLedger,
            format!(
                "ledger row of payment {payment_id} (order {})",
                books.order_id
            ),
            "a payment svc-payment has",
            format!("no such payment ({})", books.describe()),
        )
    }));
    Ok(findings)
}
