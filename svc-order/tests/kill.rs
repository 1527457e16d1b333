#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `svc-order` binary killed with SIGKILL in the middle of a
//! checkout — stock reserved, the authorization made at svc-payment but its
//! answer not yet back — with no drain, no release of its lease, nothing.
//! A new process on the same database must wait for the dead process's lease
//! to run out, then finish the saga exactly once (stock committed once, one
//! captured payment), or, when payment stays away past the saga's deadline,
//! compensate (stock released, the authorization voided, nothing captured).
//!
//! svc-product, svc-inventory and svc-payment run in this process on their
//! own databases; svc-order reaches payment through the support's
//! `PaymentGate`.

mod support;

use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shopmesh_proto::shop::order::v1::CreateOrderRequest;
use shopmesh_proto::shop::order::v1::order_service_client::OrderServiceClient;
use shopmesh_proto::shop::payment::v1::PaymentStatus;
use shopmesh_testkit::{
    SignedIn, as_service, free_port, fresh_database_url, service_command, wait_until_serving,
};
use sqlx::PgPool;
use support::{APPROVED, InternalOrderClient, Shop, checkout, stocked_products};
use tonic::transport::Channel;
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-order");
/// Generous: the machine running the tests may be slow and busy.
const SETTLE: Duration = Duration::from_secs(120);

/// A running `svc-order` process.
struct OrderProcess {
    child: tokio::process::Child,
    channel: Channel,
}

impl OrderProcess {
    /// Starts the binary on `database_url` for `shop`, calling payment at
    /// `payment_url`, with `extra` settings; waits until it is SERVING.
    async fn start(
        shop: &Shop,
        database_url: &str,
        payment_url: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let mut command = service_command(BINARY, port);
        command.envs(shop.order_settings(payment_url));
        command
            .env("DATABASE_URL", database_url)
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap();
        let channel = wait_until_serving(&format!("http://127.0.0.1:{port}"), SETTLE)
            .await
            .expect("svc-order became SERVING");
        Self { child, channel }
    }

    fn as_cart(&self) -> InternalOrderClient {
        OrderServiceClient::new(as_service(self.channel.clone(), "svc-cart"))
    }

    /// SIGKILL, as the OOM killer or a lost node would: no drain, no clean-up.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    }
}

/// The saga row as the dead process left it.
#[derive(Debug, sqlx::FromRow)]
struct Saga {
    phase: String,
    step: String,
    lease_owner: Option<Uuid>,
    lease_until: Option<DateTime<Utc>>,
}

async fn saga(db: &PgPool, order_id: Uuid) -> Saga {
    sqlx::query_as(
        "SELECT phase, step, lease_owner, lease_until FROM order_sagas WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn status(db: &PgPool, order_id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Waits until `check` holds for the order's database state.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The order's status history: (status, when), oldest first.
async fn history(db: &PgPool, order_id: Uuid) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT status, changed_at FROM order_status_history WHERE order_id = $1 ORDER BY seq",
    )
    .bind(order_id)
    .fetch_all(db)
    .await
    .unwrap()
}

/// The payment transactions of the order at svc-payment, by kind: (kind, status).
async fn transactions(shop: &Shop, order_id: Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT t.kind, t.status FROM payment_transactions t \
         JOIN payments p ON p.id = t.payment_id WHERE p.order_id = $1 ORDER BY t.kind",
    )
    .bind(order_id)
    .fetch_all(shop.payment().db())
    .await
    .unwrap()
}

/// What both tests start from: a checkout whose authorization svc-payment
/// made but whose answer the gate swallows, and the process that placed it
/// killed while waiting for that answer. Returns the order id, the database,
/// and the dead process's lease.
struct Killed {
    order_id: Uuid,
    database_url: String,
    db: PgPool,
    dead_lease_until: DateTime<Utc>,
}

async fn checkout_killed_mid_authorization(
    shop: &Shop,
    user: &SignedIn,
    request: CreateOrderRequest,
    settings: &[(&str, &str)],
) -> Killed {
    let sku = request.lines[0].sku.clone();
    let quantity = i64::from(request.lines[0].quantity);
    let before = shop.stock(&sku).await;
    shop.gate.swallow_answers();
    let database_url = fresh_database_url();
    let first = OrderProcess::start(shop, &database_url, &shop.gate.url, settings).await;
    let db = PgPool::connect(&database_url).await.unwrap();

    // The shopper's call is in flight when the process dies; it never answers.
    let mut cart = first.as_cart();
    let key = request.idempotency_key.clone();
    let placing = tokio::spawn(async move { cart.create_order(request).await });
    tokio::time::timeout(SETTLE, shop.gate.swallowed(1))
        .await
        .expect("the authorization reached svc-payment");
    first.kill().await;
    assert!(
        placing.await.unwrap().is_err(),
        "the caller lost its answer"
    );

    let order_id: Uuid =
        sqlx::query_scalar("SELECT id FROM orders WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user.id)
            .bind(&key)
            .fetch_one(&db)
            .await
            .unwrap();
    // Killed between reservation and authorization: the order says stock
    // reserved, the saga is still going forward at the authorization, and
    // the dead process still holds its lease.
    assert_eq!(status(&db, order_id).await, "stock_reserved");
    let left = saga(&db, order_id).await;
    assert_eq!(
        (left.phase.as_str(), left.step.as_str()),
        ("forward", "authorize_payment"),
        "{left:?}"
    );
    assert!(
        left.lease_owner.is_some(),
        "the dead process's lease: {left:?}"
    );
    let stock = shop.stock(&sku).await;
    assert_eq!(
        (stock.on_hand, stock.reserved),
        (before.on_hand, before.reserved + quantity)
    );
    assert_eq!(
        shop.reservation_status(&order_id.to_string())
            .await
            .as_deref(),
        Some("reserved")
    );
    // svc-payment authorized it; svc-order never learned of it.
    let payments = shop.payments(user, &order_id.to_string()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Authorized);
    let payment_id: Option<Uuid> =
        sqlx::query_scalar("SELECT payment_id FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(payment_id, None);
    Killed {
        order_id,
        database_url,
        db,
        dead_lease_until: left.lease_until.unwrap(),
    }
}

/// Asserts, when the lease of the dead process has not run out yet, that
/// nobody took the saga from it.
async fn lease_respected(db: &PgPool, killed: &Killed, dead_owner: Uuid) {
    let (owner, live): (Option<Uuid>, bool) = sqlx::query_as(
        "SELECT lease_owner, lease_until > now() FROM order_sagas WHERE order_id = $1",
    )
    .bind(killed.order_id)
    .fetch_one(db)
    .await
    .unwrap();
    if live {
        assert_eq!(owner, Some(dead_owner), "a live lease is not taken over");
        assert_eq!(status(db, killed.order_id).await, "stock_reserved");
    }
}

#[tokio::test]
async fn a_checkout_killed_mid_authorization_is_finished_exactly_once_by_the_next_process() {
    let shop = Shop::dependencies(&[]).await;
    let user = shop.shopper().await;
    let product = &stocked_products(5)[0];
    let before = shop.stock(&product.sku).await;
    let settings = [
        ("ORDER_SAGA_LEASE_SECONDS", "10"), // the least allowed
        ("ORDER_SAGA_TIMEOUT_SECONDS", "600"),
    ];
    let request = checkout("killed", &user, &[(product, 2)], APPROVED);
    let killed = checkout_killed_mid_authorization(&shop, &user, request.clone(), &settings).await;
    let dead_owner = saga(&killed.db, killed.order_id).await.lease_owner.unwrap();

    // Payment answers again; a new process starts on the same database.
    shop.gate.open();
    let second = OrderProcess::start(&shop, &killed.database_url, &shop.gate.url, &settings).await;
    lease_respected(&killed.db, &killed, dead_owner).await;
    // The shopper's retry with the same key gets the same order back.
    let mut retry = tonic::Request::new(request);
    retry.set_timeout(Duration::from_secs(2));
    let again = second
        .as_cart()
        .create_order(retry)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(again.id, killed.order_id.to_string());

    let db = &killed.db;
    wait_until("the order CONFIRMED by the new process", || async {
        status(db, killed.order_id).await == "confirmed"
    })
    .await;

    // Resumed only once the dead process's lease had run out, each status once.
    let history = history(db, killed.order_id).await;
    let statuses: Vec<&str> = history.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "pending",
            "stock_reserved",
            "payment_authorized",
            "confirmed"
        ]
    );
    assert!(
        history[2].1 > killed.dead_lease_until,
        "authorized at {} although the dead lease ran until {}",
        history[2].1,
        killed.dead_lease_until
    );
    let done = saga(db, killed.order_id).await;
    assert_eq!(done.phase, "done");
    assert_eq!(done.lease_owner, None);

    // Stock committed once: two fewer on hand, nothing left reserved.
    let after = shop.stock(&product.sku).await;
    assert_eq!(after.on_hand, before.on_hand - 2);
    assert_eq!(after.reserved, before.reserved);
    assert_eq!(
        shop.reservation_status(&killed.order_id.to_string())
            .await
            .as_deref(),
        Some("committed")
    );
    // One payment, the one authorized before the crash, captured once.
    let payments = shop.payments(&user, &killed.order_id.to_string()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Captured);
    assert_eq!(
        payments[0].captured.as_ref().unwrap().amount_minor,
        product.price_minor * 2
    );
    assert_eq!(
        transactions(&shop, killed.order_id).await,
        [
            ("authorize".to_owned(), "succeeded".to_owned()),
            ("capture".to_owned(), "succeeded".to_owned())
        ]
    );
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(orders, 1);
    drop(second);
}

#[tokio::test]
async fn a_checkout_killed_mid_authorization_with_payment_down_past_the_deadline_is_compensated() {
    let shop = Shop::dependencies(&[]).await;
    let user = shop.shopper().await;
    let product = &stocked_products(5)[0];
    let before = shop.stock(&product.sku).await;
    let settings = [
        ("ORDER_SAGA_LEASE_SECONDS", "10"),
        // Past by the time the dead process's lease runs out, or soon after.
        ("ORDER_SAGA_TIMEOUT_SECONDS", "15"),
        ("ORDER_SAGA_MAX_BACKOFF_SECONDS", "1"),
    ];
    let request = checkout("killed-late", &user, &[(product, 1)], APPROVED);
    let killed = checkout_killed_mid_authorization(&shop, &user, request, &settings).await;
    let dead_owner = saga(&killed.db, killed.order_id).await.lease_owner.unwrap();

    // Payment stays down (authorizations UNAVAILABLE) for the new process.
    shop.gate.close();
    let _second = OrderProcess::start(&shop, &killed.database_url, &shop.gate.url, &settings).await;
    lease_respected(&killed.db, &killed, dead_owner).await;
    let db = &killed.db;
    wait_until("the order FAILED by the new process", || async {
        status(db, killed.order_id).await == "failed"
    })
    .await;
    let reason: String = sqlx::query_scalar("SELECT status_reason FROM orders WHERE id = $1")
        .bind(killed.order_id)
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(reason, "the payment service did not answer in time");
    let history = history(db, killed.order_id).await;
    let statuses: Vec<&str> = history.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["pending", "stock_reserved", "failed"]);
    assert!(history[2].1 > killed.dead_lease_until);

    // The stock is back; nothing was captured.
    let after = shop.stock(&product.sku).await;
    assert_eq!(
        (after.on_hand, after.reserved),
        (before.on_hand, before.reserved)
    );
    assert_eq!(
        shop.reservation_status(&killed.order_id.to_string())
            .await
            .as_deref(),
        Some("released")
    );
    // The authorization made before the crash is still to be settled: the
    // saga keeps at it while payment is down.
    let settling = saga(db, killed.order_id).await;
    assert_eq!(
        (settling.phase.as_str(), settling.step.as_str()),
        ("compensating", "settle_authorization")
    );
    let payments = shop.payments(&user, &killed.order_id.to_string()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Authorized);

    // Payment is back: the authorization is found under its key and voided.
    shop.gate.open();
    wait_until("the saga settled", || async {
        saga(db, killed.order_id).await.phase == "done"
    })
    .await;
    let payments = shop.payments(&user, &killed.order_id.to_string()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Voided);
    assert_eq!(
        transactions(&shop, killed.order_id).await,
        [
            ("authorize".to_owned(), "succeeded".to_owned()),
            ("void".to_owned(), "succeeded".to_owned())
        ]
    );
    assert_eq!(status(db, killed.order_id).await, "failed");
    let after = shop.stock(&product.sku).await;
    assert_eq!(after.on_hand, before.on_hand);
}
