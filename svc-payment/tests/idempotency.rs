#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Idempotency and concurrency: a key is one payment and one provider call
//! however often and however concurrently it is repeated; the same key with
//! other parameters is refused; concurrent refunds never give back more than
//! was captured.

mod support;

use futures::future::join_all;
use shopmesh_proto::shop::payment::v1::PaymentStatus;
use support::*;
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn the_same_key_twice_is_one_payment_and_one_authorization() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let request = authorize_request(&key(), Uuid::now_v7(), shopper.id, 4200, VISA);
    let first = h.authorize(request.clone()).await.unwrap();
    let second = h.authorize(request).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(h.calls().authorize, 1);

    // A declined payment is answered as declined again, without asking.
    let request = authorize_request(&key(), Uuid::now_v7(), shopper.id, 4200, DECLINED);
    let first = h.authorize(request.clone()).await.unwrap();
    assert_eq!(first.status(), PaymentStatus::Failed);
    assert_eq!(h.authorize(request).await.unwrap(), first);
    assert_eq!(h.calls().authorize, 2);
}

#[tokio::test]
async fn twenty_concurrent_calls_with_one_key_make_one_payment_and_one_provider_call() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let order_id = Uuid::now_v7();
    let request = authorize_request(&key(), order_id, shopper.id, 1999, MASTERCARD);
    let answers = join_all((0..20).map(|_| h.authorize(request.clone()))).await;
    let payments: Vec<_> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert!(payments.iter().all(|p| p.id == payments[0].id));
    assert!(
        payments
            .iter()
            .all(|p| p.status() == PaymentStatus::Authorized)
    );
    assert_eq!(h.calls().authorize, 1);
    let (payments, transactions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM payments WHERE order_id = $1), \
                (SELECT count(*) FROM payment_transactions)",
    )
    .bind(order_id)
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!((payments, transactions), (1, 1));

    // Twenty concurrent captures under one key: one capture.
    let id = payments_id(&h, order_id).await;
    let capture_key = key();
    let answers = join_all((0..20).map(|_| h.capture(&id, &capture_key))).await;
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().unwrap().status() == PaymentStatus::Captured)
    );
    assert_eq!(h.calls().capture, 1);
}

async fn payments_id(h: &Harness, order_id: Uuid) -> String {
    let id: Uuid = sqlx::query_scalar("SELECT id FROM payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(h.service.db())
        .await
        .unwrap();
    id.to_string()
}

#[tokio::test]
async fn the_same_key_with_other_parameters_is_already_exists() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let key = key();
    let order_id = Uuid::now_v7();
    let original = authorize_request(&key, order_id, shopper.id, 1000, VISA);
    h.authorize(original.clone()).await.unwrap();

    let mut other_amount = original.clone();
    other_amount.amount = Some(usd(1001));
    let mut other_order = original.clone();
    other_order.order_id = Uuid::now_v7().to_string();
    let mut other_user = original.clone();
    other_user.user_id = Uuid::now_v7().to_string();
    let mut other_card = original.clone();
    other_card.payment_method = card(MASTERCARD);
    let mut other_currency = original.clone();
    other_currency.amount.as_mut().unwrap().currency_code = "EUR".to_owned();
    for changed in [
        other_amount,
        other_order,
        other_user,
        other_card,
        other_currency,
    ] {
        let err = h.authorize(changed).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    }
    assert_eq!(h.calls().authorize, 1);

    // A refund key is bound to its amount too.
    let payment = h.authorize(original).await.unwrap();
    h.capture(&payment.id, &support::key()).await.unwrap();
    let refund_key = support::key();
    h.refund(&payment.id, &refund_key, Some(300)).await.unwrap();
    let again = h.refund(&payment.id, &refund_key, Some(300)).await.unwrap();
    assert_eq!(minor(&again.refunded), 300);
    let err = h
        .refund(&payment.id, &refund_key, Some(400))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(h.calls().refund, 1);
}

#[tokio::test]
async fn concurrent_partial_refunds_never_exceed_what_was_captured() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let payment = h.captured_payment(&shopper, 1000).await;
    let keys: Vec<String> = (0..12).map(|_| support::key()).collect();
    let answers = join_all(keys.iter().map(|k| h.refund(&payment.id, k, Some(300)))).await;
    let succeeded = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(succeeded, 3, "{answers:?}");
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert!(
            matches!(refused.code(), Code::InvalidArgument),
            "{refused:?}"
        );
    }
    let (refunded, captured, status): (i64, i64, String) = sqlx::query_as(
        "SELECT refunded_minor, captured_minor, status FROM payments WHERE id = $1::uuid",
    )
    .bind(&payment.id)
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!(
        (refunded, captured, status.as_str()),
        (900, 1000, "partially_refunded")
    );
    let refund_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payment_transactions WHERE kind = 'refund' AND status = 'succeeded'",
    )
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!(refund_rows, 3);
    assert_eq!(h.calls().refund, 3);
    // The rest, then nothing.
    let last = h.refund(&payment.id, &support::key(), None).await.unwrap();
    assert_eq!(last.status(), PaymentStatus::Refunded);
    assert_eq!(minor(&last.refunded), 1000);
}
