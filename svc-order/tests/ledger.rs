#![allow(clippy::unwrap_used, clippy::expect_used)]
//! svc-order's own consumer: the payment ledger built from
//! `shop.payment.events` (group `svc-order`) and the check of the books
//! against settled orders. A capture announced for a FAILED order is flagged
//! (once, however often it is announced) and resolved when the refund is.

mod support;

use std::time::Duration;

use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::events::v1::{PaymentCaptured, PaymentRefunded};
use shopmesh_proto::shop::order::v1::OrderStatus;
use sqlx::PgPool;
use support::{APPROVED, DECLINED, Shop, checkout, stocked_products};
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(60);

/// (captured − refunded, failed) summed over the order's payments in the ledger.
async fn books(db: &PgPool, order_id: &str) -> Option<(i64, bool)> {
    sqlx::query_as(
        "SELECT sum(captured_minor - refunded_minor)::bigint, bool_or(failed) \
         FROM order_payment_ledger WHERE order_id = $1 HAVING count(*) > 0",
    )
    .bind(Uuid::parse_str(order_id).unwrap())
    .fetch_optional(db)
    .await
    .unwrap()
}

/// The order's open finding: (status, expected, net captured).
async fn open_mismatch(db: &PgPool, order_id: &str) -> Option<(String, i64, i64)> {
    sqlx::query_as(
        "SELECT status, expected_minor, net_captured_minor FROM order_payment_mismatches \
         WHERE order_id = $1 AND resolved_at IS NULL",
    )
    .bind(Uuid::parse_str(order_id).unwrap())
    .fetch_optional(db)
    .await
    .unwrap()
}

/// Polls `probe` until it returns what `done` accepts.
async fn eventually<T: std::fmt::Debug, F: Future<Output = T>>(
    what: &str,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {value:?} after {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn eur(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "EUR".into(),
        amount_minor: minor,
    })
}

/// Writes a payment event into svc-payment's outbox, as svc-payment does in
/// the transaction of a payment change; its relay publishes it.
async fn announce<M: prost::Name>(shop: &Shop, payment_id: &str, event: &M) {
    let mut tx = shop.payment().db().begin().await.unwrap();
    shopmesh_events::publish(
        &mut tx,
        shopmesh_proto::topics::PAYMENT_EVENTS,
        "payment",
        payment_id,
        event,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_ledger_agrees_with_settled_orders_and_flags_money_kept_for_a_failed_one() {
    let shop = Shop::start_with(
        false,
        &[
            ("ORDER_LEDGER_GRACE_SECONDS", "1"),
            ("ORDER_LEDGER_CHECK_SECONDS", "1"),
        ],
    )
    .await;
    let db = shop.order().db().clone();
    let user = shop.shopper().await;
    let products = stocked_products(20);

    let confirmed = shop
        .place(checkout("ledger-ok", &user, &[(&products[0], 2)], APPROVED))
        .await;
    assert_eq!(confirmed.status(), OrderStatus::Confirmed);
    let failed = shop
        .place(checkout(
            "ledger-declined",
            &user,
            &[(&products[1], 1)],
            DECLINED,
        ))
        .await;
    assert_eq!(failed.status(), OrderStatus::Failed);

    // The events arrive: the confirmed order's total captured, the declined
    // one's payment failed with nothing captured.
    let total = confirmed.total.as_ref().unwrap().amount_minor;
    let id = confirmed.id.clone();
    eventually(
        "confirmed order in the ledger",
        || books(&db, &id),
        |b| *b == Some((total, false)),
    )
    .await;
    let id = failed.id.clone();
    eventually(
        "failed order in the ledger",
        || books(&db, &id),
        |b| *b == Some((0, true)),
    )
    .await;
    // Checks ran (every second, grace 1 s) and found nothing to say.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(open_mismatch(&db, &confirmed.id).await, None);
    assert_eq!(open_mismatch(&db, &failed.id).await, None);

    // The provider reports a capture of the declined payment after all —
    // twice, as a retried announcement would. The books count it once and
    // the check flags the order: money kept for an order that failed.
    let payment_id = shop.payments(&user, &failed.id).await[0].id.clone();
    let amount = failed.total.as_ref().unwrap().amount_minor;
    let captured = PaymentCaptured {
        payment_id: payment_id.clone(),
        order_id: failed.id.clone(),
        user_id: user.id.to_string(),
        amount: eur(amount),
        ..Default::default()
    };
    announce(&shop, &payment_id, &captured).await;
    announce(&shop, &payment_id, &captured).await;
    let id = failed.id.clone();
    let finding = eventually(
        "the mismatch is flagged",
        || open_mismatch(&db, &id),
        Option::is_some,
    )
    .await;
    assert_eq!(finding, Some(("failed".to_owned(), 0, amount)));
    assert_eq!(books(&db, &failed.id).await, Some((amount, true)));
    assert_eq!(open_mismatch(&db, &confirmed.id).await, None);

    // An operator refunds it: the books agree again and the finding resolves.
    let refunded = PaymentRefunded {
        payment_id: payment_id.clone(),
        order_id: failed.id.clone(),
        user_id: user.id.to_string(),
        amount: eur(amount),
        total_refunded: eur(amount),
        fully_refunded: true,
        ..Default::default()
    };
    announce(&shop, &payment_id, &refunded).await;
    let id = failed.id.clone();
    eventually(
        "the finding resolves",
        || open_mismatch(&db, &id),
        Option::is_none,
    )
    .await;
    let resolved: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT resolved_at FROM order_payment_mismatches WHERE order_id = $1")
            .bind(Uuid::parse_str(&failed.id).unwrap())
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(resolved.is_some());
}

#[tokio::test]
async fn payments_for_an_order_svc_order_does_not_know_are_a_finding() {
    let shop = Shop::start_with(
        false,
        &[
            ("ORDER_LEDGER_GRACE_SECONDS", "1"),
            ("ORDER_LEDGER_CHECK_SECONDS", "1"),
        ],
    )
    .await;
    let db = shop.order().db().clone();
    let (payment_id, order_id) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let captured = PaymentCaptured {
        payment_id: payment_id.clone(),
        order_id: order_id.clone(),
        user_id: Uuid::now_v7().to_string(),
        amount: eur(1234),
        ..Default::default()
    };
    announce(&shop, &payment_id, &captured).await;
    let finding = eventually(
        "the unknown order is flagged",
        || open_mismatch(&db, &order_id),
        Option::is_some,
    )
    .await;
    assert_eq!(finding, Some(("unknown".to_owned(), 0, 1234)));
}
