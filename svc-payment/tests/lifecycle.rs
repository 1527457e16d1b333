#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The payment lifecycle against the simulated card network: authorize,
//! capture, refund in parts, void, declines, the card that never answers, and
//! the state guards of each step.

mod support;

use shopmesh_platform::errors::violated_fields;
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::payment::v1::{
    PaymentStatus, RefundPaymentRequest, TransactionKind, TransactionStatus,
};
use support::*;
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn approve_capture_refund_in_parts_then_nothing_more() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let order_id = Uuid::now_v7();
    let payment = h
        .authorize(authorize_request(&key(), order_id, shopper.id, 2500, VISA))
        .await
        .unwrap();
    assert_eq!(payment.status(), PaymentStatus::Authorized);
    assert_eq!(payment.order_id, order_id.to_string());
    assert_eq!(payment.user_id, shopper.id.to_string());
    assert_eq!(minor(&payment.amount), 2500);
    assert_eq!(minor(&payment.captured), 0);
    assert_eq!(payment.provider, "simulated");
    let card = payment.card.clone().unwrap();
    assert_eq!((card.brand.as_str(), card.last4.as_str()), ("visa", "4242"));
    assert_eq!(payment.transactions.len(), 1);
    let auth = &payment.transactions[0];
    assert_eq!(auth.kind(), TransactionKind::Authorize);
    assert_eq!(auth.status(), TransactionStatus::Succeeded);
    assert!(auth.provider_reference.starts_with("sim_auth_"));

    let captured = h.capture(&payment.id, &key()).await.unwrap();
    assert_eq!(captured.status(), PaymentStatus::Captured);
    assert_eq!(minor(&captured.captured), 2500);

    let partly = h.refund(&payment.id, &key(), Some(1000)).await.unwrap();
    assert_eq!(partly.status(), PaymentStatus::PartiallyRefunded);
    assert_eq!(minor(&partly.refunded), 1000);

    // No amount: everything that remains.
    let all = h.refund(&payment.id, &key(), None).await.unwrap();
    assert_eq!(all.status(), PaymentStatus::Refunded);
    assert_eq!(minor(&all.refunded), 2500);
    let kinds: Vec<_> = all.transactions.iter().map(|t| t.kind()).collect();
    assert_eq!(
        kinds,
        [
            TransactionKind::Authorize,
            TransactionKind::Capture,
            TransactionKind::Refund,
            TransactionKind::Refund
        ]
    );
    assert_eq!(minor(&all.transactions[3].amount), 1500);
    assert!(
        all.transactions
            .iter()
            .all(|t| t.status() == TransactionStatus::Succeeded)
    );

    for amount in [Some(1), None] {
        let err = h.refund(&payment.id, &key(), amount).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    }
    assert_eq!(
        h.calls(),
        Calls {
            authorize: 1,
            capture: 1,
            void: 0,
            refund: 2
        }
    );
}

#[tokio::test]
async fn refunds_above_what_remains_in_another_currency_or_before_capture_are_refused() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let authorized = h.authorize_card(&shopper, MASTERCARD, 1000).await.unwrap();
    let err = h
        .refund(&authorized.id, &key(), Some(100))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "not captured yet");

    let payment = h.capture(&authorized.id, &key()).await.unwrap();
    h.refund(&payment.id, &key(), Some(600)).await.unwrap();
    let err = h.refund(&payment.id, &key(), Some(401)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(violated_fields(&err), ["amount"]);
    for amount in [0, -5] {
        let err = h
            .refund(&payment.id, &key(), Some(amount))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    let err = h
        .as_svc_order()
        .refund_payment(RefundPaymentRequest {
            idempotency_key: key(),
            payment_id: payment.id.clone(),
            amount: Some(Money {
                currency_code: "EUR".to_owned(),
                amount_minor: 100,
            }),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let after = h.refund(&payment.id, &key(), Some(400)).await.unwrap();
    assert_eq!(after.status(), PaymentStatus::Refunded);
    assert_eq!(minor(&after.refunded), 1000);
    assert_eq!(h.calls().refund, 2);
}

#[tokio::test]
async fn declines_fail_the_payment_with_their_code_and_take_nothing() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    for (number, code) in [
        (DECLINED, "card_declined"),
        (INSUFFICIENT_FUNDS, "insufficient_funds"),
        (PROCESSING_ERROR, "provider_error"),
    ] {
        let payment = h.authorize_card(&shopper, number, 700).await.unwrap();
        assert_eq!(payment.status(), PaymentStatus::Failed, "{number}");
        assert_eq!(payment.failure_code, code);
        assert!(!payment.failure_message.is_empty());
        assert_eq!(minor(&payment.captured), 0);
        let auth = &payment.transactions[0];
        assert_eq!(auth.status(), TransactionStatus::Failed);
        assert_eq!(auth.failure_code, code);

        let err = h.capture(&payment.id, &key()).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let err = h.void(&payment.id, &key()).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
    }
    let calls = h.calls();
    assert_eq!((calls.authorize, calls.capture, calls.void), (3, 0, 0));
}

#[tokio::test]
async fn the_card_that_never_answers_leaves_the_payment_pending_and_a_retry_asks_again() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let key = key();
    let order_id = Uuid::now_v7();
    let request = authorize_request(&key, order_id, shopper.id, 1200, NO_ANSWER);
    let started = std::time::Instant::now();
    let err = h.authorize(request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(PROVIDER_TIMEOUT_MS));

    let (status, attempts): (String, i32) = sqlx::query_as(
        "SELECT p.status, t.attempts FROM payments p JOIN payment_transactions t \
         ON t.payment_id = p.id WHERE p.idempotency_key = $1",
    )
    .bind(&key)
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 1));

    // The same key asks the network again, under the same provider key.
    let err = h.authorize(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT p.status, t.status, t.attempts FROM payments p JOIN payment_transactions t \
         ON t.payment_id = p.id WHERE p.order_id = $1",
    )
    .bind(order_id)
    .fetch_all(h.service.db())
    .await
    .unwrap();
    assert_eq!(rows, [("pending".to_owned(), "pending".to_owned(), 2)]);
    assert_eq!(h.calls().authorize, 2);

    // Seen by the admin as PENDING, its authorization still waiting.
    let listed = h
        .client()
        .list_order_payments(h.admin.request(
            shopmesh_proto::shop::payment::v1::ListOrderPaymentsRequest {
                order_id: order_id.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status(), PaymentStatus::Pending);
    assert_eq!(
        listed[0].transactions[0].status(),
        TransactionStatus::Pending
    );
    let err = h.capture(&listed[0].id, &support::key()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn capture_is_idempotent_by_key_and_only_once_per_payment() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let payment = h.authorize_card(&shopper, VISA, 900).await.unwrap();
    let key = key();
    let first = h.capture(&payment.id, &key).await.unwrap();
    let again = h.capture(&payment.id, &key).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(h.calls().capture, 1);
    let err = h.capture(&payment.id, &support::key()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "another key");
    let err = h
        .capture(&Uuid::now_v7().to_string(), &key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn void_releases_the_hold_once_and_is_refused_after_capture() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let payment = h.authorize_card(&shopper, VISA, 1500).await.unwrap();
    let key = key();
    let voided = h.void(&payment.id, &key).await.unwrap();
    assert_eq!(voided.status(), PaymentStatus::Voided);
    assert_eq!(minor(&voided.captured), 0);
    assert_eq!(
        voided.transactions.last().unwrap().kind(),
        TransactionKind::Void
    );
    assert_eq!(h.void(&payment.id, &key).await.unwrap(), voided);
    // Voiding a VOIDED payment, whatever the key, returns it as it is.
    assert_eq!(h.void(&payment.id, &support::key()).await.unwrap(), voided);
    assert_eq!(h.calls().void, 1);
    let err = h.capture(&payment.id, &support::key()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let captured = h.captured_payment(&shopper, 800).await;
    let err = h.void(&captured.id, &support::key()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "refund it instead");
    assert_eq!(h.calls().void, 1);
}

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let h = Harness::start().await;
    let mut request = authorize_request("", Uuid::now_v7(), Uuid::now_v7(), 0, VISA);
    request.order_id = "order-1".to_owned();
    request.amount.as_mut().unwrap().currency_code = "usd".to_owned();
    request.payment_method = card("4242");
    let err = h.authorize(request).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        [
            "idempotency_key",
            "order_id",
            "amount.currency_code",
            "amount.amount_minor",
            "payment_method.test_card_number"
        ]
    );
    // A well-formed number that is not a test card.
    let err = h
        .authorize(authorize_request(
            &key(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            100,
            "4111111111111111",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["payment_method"]);
    assert_eq!(h.calls().authorize, 0);
}

#[tokio::test]
async fn internal_methods_need_the_service_credential() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let request = authorize_request(&key(), Uuid::now_v7(), shopper.id, 100, VISA);
    let err = h
        .client()
        .authorize_payment(request.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = h
        .client()
        .authorize_payment(h.admin.request(request))
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::Unauthenticated | Code::PermissionDenied),
        "{err:?}"
    );
    assert_eq!(h.calls().authorize, 0);
}
