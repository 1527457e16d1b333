#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Reading payments (the owner or an admin only), tokenizing cards, and that
//! no card number reaches the database.

mod support;

use shopmesh_proto::shop::payment::v1::payment_method::Method;
use shopmesh_proto::shop::payment::v1::{
    AuthorizePaymentRequest, GetPaymentRequest, ListOrderPaymentsRequest, PaymentMethod,
    PaymentStatus, TokenizePaymentMethodRequest,
};
use support::*;
use tonic::Code;
use uuid::Uuid;

fn get(id: &str) -> GetPaymentRequest {
    GetPaymentRequest { id: id.to_owned() }
}

fn list(order_id: Uuid, page_size: i32, page_token: &str) -> ListOrderPaymentsRequest {
    ListOrderPaymentsRequest {
        order_id: order_id.to_string(),
        page_size,
        page_token: page_token.to_owned(),
    }
}

#[tokio::test]
async fn a_payment_is_seen_by_its_owner_and_admins_only() {
    let h = Harness::start().await;
    let owner = h.shopper().await;
    let stranger = h.shopper().await;
    let payment = h.captured_payment(&owner, 3100).await;

    let seen = h
        .client()
        .get_payment(owner.request(get(&payment.id)))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(seen, payment);
    assert_eq!(seen.transactions.len(), 2);
    let by_admin = h
        .client()
        .get_payment(h.admin.request(get(&payment.id)))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(by_admin, payment);

    let hidden = h
        .client()
        .get_payment(stranger.request(get(&payment.id)))
        .await
        .unwrap_err();
    let missing = h
        .client()
        .get_payment(owner.request(get(&Uuid::now_v7().to_string())))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        hidden.message().replace(&payment.id, "<id>"),
        missing.message().replace(&missing.message()[8..44], "<id>"),
        "someone else's payment reads like a missing one"
    );
    let anonymous = h.client().get_payment(get(&payment.id)).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let malformed = h
        .client()
        .get_payment(owner.request(get("not-a-uuid")))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_orders_payments_are_listed_oldest_first_for_their_owner() {
    let h = Harness::start().await;
    let owner = h.shopper().await;
    let stranger = h.shopper().await;
    let order_id = Uuid::now_v7();
    // A declined attempt, then a successful one, then a third try.
    let mut ids = Vec::new();
    for card in [DECLINED, VISA, MASTERCARD] {
        let payment = h
            .authorize(authorize_request(&key(), order_id, owner.id, 5000, card))
            .await
            .unwrap();
        ids.push(payment.id);
    }
    // Another order's payment does not show.
    h.authorize_card(&owner, VISA, 100).await.unwrap();

    let listed = h
        .client()
        .list_order_payments(owner.request(list(order_id, 0, "")))
        .await
        .unwrap()
        .into_inner();
    let listed_ids: Vec<_> = listed.payments.iter().map(|p| p.id.clone()).collect();
    assert_eq!(listed_ids, ids);
    assert_eq!(listed.payments[0].status(), PaymentStatus::Failed);
    assert_eq!(listed.payments[1].status(), PaymentStatus::Authorized);
    assert!(listed.next_page_token.is_empty());

    // Page by page.
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let page = h
            .client()
            .list_order_payments(h.admin.request(list(order_id, 2, &token)))
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.payments.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, ids);

    let theirs = h
        .client()
        .list_order_payments(stranger.request(list(order_id, 0, "")))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.payments.is_empty());
    let unknown = h
        .client()
        .list_order_payments(owner.request(list(Uuid::now_v7(), 0, "")))
        .await
        .unwrap()
        .into_inner();
    assert!(unknown.payments.is_empty());
    // A token issued to the admin does not page the owner's view.
    let first = h
        .client()
        .list_order_payments(h.admin.request(list(order_id, 1, "")))
        .await
        .unwrap()
        .into_inner();
    let err = h
        .client()
        .list_order_payments(owner.request(list(order_id, 1, &first.next_page_token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_token_stands_for_its_card_and_forged_tokens_are_refused() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    let tokenize = |method: Method| {
        let mut client = h.as_svc_order();
        async move {
            client
                .tokenize_payment_method(TokenizePaymentMethodRequest {
                    payment_method: Some(PaymentMethod {
                        method: Some(method),
                    }),
                })
                .await
        }
    };
    let tokenized = tokenize(Method::TestCardNumber(MASTERCARD.to_owned()))
        .await
        .unwrap()
        .into_inner();
    assert!(tokenized.card_token.starts_with("tok_"));
    assert!(tokenized.expire_time.is_some());
    let card = tokenized.card.clone().unwrap();
    assert_eq!(
        (card.brand.as_str(), card.last4.as_str()),
        ("mastercard", "4444")
    );

    // A token is checked and returned as is.
    let checked = tokenize(Method::CardToken(tokenized.card_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.card_token, tokenized.card_token);

    let payment = h
        .authorize(AuthorizePaymentRequest {
            idempotency_key: key(),
            order_id: Uuid::now_v7().to_string(),
            user_id: shopper.id.to_string(),
            amount: Some(usd(990)),
            payment_method: Some(PaymentMethod {
                method: Some(Method::CardToken(tokenized.card_token.clone())),
            }),
        })
        .await
        .unwrap();
    assert_eq!(payment.status(), PaymentStatus::Authorized);
    assert_eq!(payment.card.unwrap().last4, "4444");

    let forged = format!("{}A", tokenized.card_token);
    for method in [
        Method::CardToken(forged),
        Method::CardToken("tok_unknown".to_owned()),
        Method::TestCardNumber("4111111111111111".to_owned()),
    ] {
        let err = tokenize(method).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let err = h
        .client()
        .tokenize_payment_method(TokenizePaymentMethodRequest {
            payment_method: Some(PaymentMethod {
                method: Some(Method::TestCardNumber(VISA.to_owned())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// Every text column of every table, scanned for 12 or more digits in a row
/// after every test card went through every operation it allows.
#[tokio::test]
async fn no_card_number_reaches_the_database() {
    let h = Harness::start().await;
    let shopper = h.shopper().await;
    for card in ALL_TEST_CARDS {
        let result = h.authorize_card(&shopper, card, 1234).await;
        if let Ok(payment) = result
            && payment.status() == PaymentStatus::Authorized
        {
            h.capture(&payment.id, &key()).await.unwrap();
            h.refund(&payment.id, &key(), Some(34)).await.unwrap();
        }
    }
    let voided = h.authorize_card(&shopper, VISA, 10).await.unwrap();
    h.void(&voided.id, &key()).await.unwrap();

    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'character')",
    )
    .fetch_all(h.service.db())
    .await
    .unwrap();
    assert!(
        columns
            .iter()
            .any(|(t, c)| t == "payments" && c == "card_token")
    );
    // Two scans of every text column: a free-standing run of 12 to 19 digits
    // (a card number of any network; runs inside hex ids and references are
    // not card numbers, nor the last group of a UUID, which is all digits in
    // about one UUID in 300, so UUIDs are taken out first), and each test
    // card's number anywhere in the text.
    let mut rows_scanned = 0_i64;
    for (table, column) in &columns {
        let (rows, long_runs, test_cards): (i64, i64, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*), \
                 count(*) FILTER (WHERE regexp_replace(\"{column}\", \
                   '[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}', '', 'gi') \
                   ~ '(^|[^0-9A-Za-z])[0-9]{{12,19}}([^0-9A-Za-z]|$)'), \
                 count(*) FILTER (WHERE \"{column}\" LIKE ANY ($1)) FROM \"{table}\""
            )))
            .bind(
                ALL_TEST_CARDS
                    .iter()
                    .map(|card| format!("%{card}%"))
                    .collect::<Vec<_>>(),
            )
            .fetch_one(h.service.db())
            .await
            .unwrap();
        rows_scanned += rows;
        assert_eq!(
            long_runs, 0,
            "{table}.{column} holds a card-number-like run"
        );
        assert_eq!(test_cards, 0, "{table}.{column} holds a test card number");
    }
    assert!(
        rows_scanned > 20,
        "the scan saw the payments: {rows_scanned}"
    );
    // The scan finds what it looks for.
    let found: bool = sqlx::query_scalar(
        "SELECT 'tok_4242424242424242' ~ '(^|[^0-9A-Za-z])[0-9]{12,19}([^0-9A-Za-z]|$)'",
    )
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert!(found);
}
