//! Stock levels through the real service: the admin's set and adjust and the
//! audit log they write, the floors stock never goes below, idempotent
//! adjustments, reads, who may do what, the demo seed, and the operational
//! surface (health, metrics).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use shopmesh_proto::shop::inventory::v1::{
    AdjustStockRequest, BatchGetStockRequest, GetStockRequest, ListStockChangesRequest,
    SetStockRequest, StockChange, StockChangeKind,
};
use shopmesh_testkit::SignedIn;
use support::{Harness, levels, reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

async fn changes(
    harness: &Harness,
    sku: &str,
    page_size: i32,
    page_token: &str,
) -> (Vec<StockChange>, String) {
    let page = harness
        .client()
        .list_stock_changes(harness.admin.request(ListStockChangesRequest {
            sku: sku.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    (page.changes, page.next_page_token)
}

#[tokio::test]
async fn admin_set_and_adjust_write_the_audit_log() {
    let harness = Harness::start().await;
    let created = harness.set_stock("AUD-1", 10).await;
    assert_eq!(
        (created.on_hand, created.reserved, created.available),
        (10, 0, 10)
    );
    assert_eq!(
        harness.adjust_stock("AUD-1", 5, "").await.unwrap().on_hand,
        15
    );
    assert_eq!(
        harness.adjust_stock("AUD-1", -3, "").await.unwrap().on_hand,
        12
    );
    harness
        .reserve(Uuid::now_v7(), &[("AUD-1", 2)], None)
        .await
        .unwrap();
    let recount = harness.set_stock("AUD-1", 12).await;
    assert_eq!((recount.on_hand, recount.available), (12, 10));

    let (log, next) = changes(&harness, "AUD-1", 0, "").await;
    assert!(next.is_empty());
    let summary: Vec<_> = log
        .iter()
        .map(|c| {
            (
                c.kind(),
                c.on_hand_delta,
                c.reserved_delta,
                c.on_hand_after,
                c.reserved_after,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (StockChangeKind::Set, 0, 0, 12, 2),
            (StockChangeKind::Reserve, 0, 2, 12, 2),
            (StockChangeKind::Adjust, -3, 0, 12, 0),
            (StockChangeKind::Adjust, 5, 0, 15, 0),
            (StockChangeKind::Set, 10, 0, 10, 0),
        ],
        "newest first, with the levels after each change"
    );
    let admin = harness.admin.id.to_string();
    for change in log.iter().filter(|c| c.kind() != StockChangeKind::Reserve) {
        assert_eq!(change.actor, admin, "the admin is the actor");
        assert!(change.order_id.is_empty());
        assert!(Uuid::parse_str(&change.id).is_ok());
    }
    assert_eq!(log[2].reason, "test adjustment -3");
    assert_eq!(log[4].reason, "test stocktake");
    assert_eq!(log[1].actor, "svc-order");
    assert!(!log[1].order_id.is_empty());
    harness.stop().await;
}

#[tokio::test]
async fn stock_never_goes_below_zero_or_below_what_is_reserved() {
    let harness = Harness::start().await;
    harness.set_stock("FLOOR-1", 12).await;

    let below_zero = harness.adjust_stock("FLOOR-1", -13, "").await.unwrap_err();
    assert_eq!(below_zero.code(), Code::FailedPrecondition);
    assert_eq!(reason(&below_zero), "BELOW_RESERVED");

    harness
        .reserve(Uuid::now_v7(), &[("FLOOR-1", 5)], None)
        .await
        .unwrap();
    let set_below = harness
        .client()
        .set_stock(harness.admin.request(SetStockRequest {
            sku: "FLOOR-1".into(),
            on_hand: 4,
            reason: "miscount".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(set_below.code(), Code::FailedPrecondition);
    assert_eq!(reason(&set_below), "BELOW_RESERVED");
    let adjust_below = harness.adjust_stock("FLOOR-1", -8, "").await.unwrap_err();
    assert_eq!(adjust_below.code(), Code::FailedPrecondition);
    assert_eq!(levels(harness.service.db(), "FLOOR-1").await, (12, 5));
    assert_eq!(
        harness
            .adjust_stock("FLOOR-1", -7, "")
            .await
            .unwrap()
            .available,
        0
    );

    let refused_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stock_changes WHERE sku = 'FLOOR-1' AND kind IN ('set', 'adjust')",
    )
    .fetch_one(harness.service.db())
    .await
    .unwrap();
    assert_eq!(refused_rows, 2, "refused changes leave no audit row");

    let unknown = harness
        .adjust_stock("NO-SUCH-SKU", 1, "")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "SKU_NOT_FOUND");

    let invalid = harness
        .client()
        .set_stock(harness.admin.request(SetStockRequest {
            sku: "FLOOR-1".into(),
            on_hand: -1,
            reason: " ".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&invalid), ["on_hand", "reason"]);
    let zero = harness
        .client()
        .adjust_stock(harness.admin.request(AdjustStockRequest {
            sku: "has space".into(),
            delta: 0,
            reason: "nothing".into(),
            idempotency_key: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&zero), ["sku", "delta"]);
    harness.stop().await;
}

#[tokio::test]
async fn an_adjustment_with_an_idempotency_key_is_applied_once() {
    let harness = Harness::start().await;
    harness.set_stock("KEY-1", 10).await;
    harness.set_stock("KEY-2", 10).await;
    let key = Uuid::now_v7().to_string();

    let retries = (0..8).map(|_| {
        let key = key.clone();
        let (mut client, admin) = (harness.client(), harness.admin.clone());
        tokio::spawn(async move {
            client
                .adjust_stock(admin.request(AdjustStockRequest {
                    sku: "KEY-1".into(),
                    delta: 3,
                    reason: "received PO-1042".into(),
                    idempotency_key: key,
                }))
                .await
        })
    });
    for retry in join_all(retries).await {
        assert_eq!(
            retry.unwrap().unwrap().into_inner().stock.unwrap().on_hand,
            13
        );
    }
    // The key belongs to one SKU: another SKU applies its own adjustment.
    assert_eq!(
        harness
            .adjust_stock("KEY-2", 3, &key)
            .await
            .unwrap()
            .on_hand,
        13
    );
    assert_eq!(
        harness
            .adjust_stock("KEY-2", 3, &key)
            .await
            .unwrap()
            .on_hand,
        13
    );
    // Without a key every call counts.
    harness.adjust_stock("KEY-1", 1, "").await.unwrap();
    assert_eq!(
        harness.adjust_stock("KEY-1", 1, "").await.unwrap().on_hand,
        15
    );

    let adjustments: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stock_changes WHERE sku = 'KEY-1' AND kind = 'adjust'",
    )
    .fetch_one(harness.service.db())
    .await
    .unwrap();
    assert_eq!(adjustments, 3);
    harness.stop().await;
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_without_overlap() {
    let harness = Harness::start().await;
    harness.set_stock("PAGE-1", 100).await;
    harness.set_stock("PAGE-2", 1).await;
    for n in 1..=44 {
        harness.adjust_stock("PAGE-1", n, "").await.unwrap();
    }

    let mut seen = HashSet::new();
    let mut after = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = changes(&harness, "PAGE-1", 20, &token).await;
        sizes.push(page.len());
        for change in page {
            assert!(seen.insert(change.id.clone()), "{} twice", change.id);
            after.push(change.on_hand_after);
        }
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(sizes, [20, 20, 5]);
    assert!(after.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(after.last(), Some(&100));

    // A token pages the SKU it was issued for, nothing else.
    let (_, token) = changes(&harness, "PAGE-1", 1, "").await;
    let status = harness
        .client()
        .list_stock_changes(harness.admin.request(ListStockChangesRequest {
            sku: "PAGE-2".into(),
            page_size: 1,
            page_token: token,
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
    let unknown = harness
        .client()
        .list_stock_changes(harness.admin.request(ListStockChangesRequest {
            sku: "NO-SUCH-SKU".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn get_and_batch_get_answer_anyone() {
    let harness = Harness::start().await;
    harness.set_stock("READ-A", 3).await;
    harness.set_stock("READ-B", 4).await;
    let mut client = harness.client();

    let stock = client
        .get_stock(GetStockRequest {
            sku: "READ-A".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stock
        .unwrap();
    assert_eq!((stock.sku.as_str(), stock.available), ("READ-A", 3));
    assert!(stock.update_time.is_some());
    let missing = client
        .get_stock(GetStockRequest {
            sku: "READ-Z".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(reason(&missing), "SKU_NOT_FOUND");

    let batch = client
        .batch_get_stock(BatchGetStockRequest {
            skus: vec![
                "READ-B".into(),
                "READ-Z".into(),
                "READ-A".into(),
                "READ-B".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let skus: Vec<_> = batch.stocks.iter().map(|s| s.sku.as_str()).collect();
    assert_eq!(skus, ["READ-B", "READ-A", "READ-B"], "in the order asked");
    assert_eq!(batch.missing_skus, ["READ-Z"]);

    for skus in [vec![], (0..101).map(|i| format!("S-{i}")).collect()] {
        let status = client
            .batch_get_stock(BatchGetStockRequest { skus })
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["skus"]);
    }
    harness.stop().await;
}

fn as_user<T>(user: Option<&SignedIn>, message: T) -> tonic::Request<T> {
    match user {
        Some(user) => user.request(message),
        None => tonic::Request::new(message),
    }
}

/// The codes SetStock, AdjustStock and ListStockChanges answer `user` with.
async fn admin_method_codes(harness: &Harness, user: Option<&SignedIn>) -> [Code; 3] {
    let mut client = harness.client();
    let set = SetStockRequest {
        sku: "ADMIN-1".into(),
        on_hand: 1000,
        reason: "free stuff".into(),
    };
    let adjust = AdjustStockRequest {
        sku: "ADMIN-1".into(),
        delta: 1000,
        reason: "free stuff".into(),
        idempotency_key: String::new(),
    };
    let list = ListStockChangesRequest {
        sku: "ADMIN-1".into(),
        ..Default::default()
    };
    let code =
        |result: Result<_, tonic::Status>| result.map(|_| Code::Ok).unwrap_or_else(|s| s.code());
    [
        code(client.set_stock(as_user(user, set)).await.map(drop)),
        code(client.adjust_stock(as_user(user, adjust)).await.map(drop)),
        code(
            client
                .list_stock_changes(as_user(user, list))
                .await
                .map(drop),
        ),
    ]
}

#[tokio::test]
async fn only_admins_may_change_stock_or_read_its_log() {
    let harness = Harness::start().await;
    harness.set_stock("ADMIN-1", 3).await;
    let shopper = harness.shopper().await;
    assert_eq!(
        admin_method_codes(&harness, Some(&shopper)).await,
        [Code::PermissionDenied; 3]
    );
    assert_eq!(
        admin_method_codes(&harness, None).await,
        [Code::Unauthenticated; 3]
    );
    assert_eq!(levels(harness.service.db(), "ADMIN-1").await, (3, 0));
    assert_eq!(
        admin_method_codes(&harness, Some(&harness.admin)).await,
        [Code::Ok; 3]
    );
    harness.stop().await;
}

#[tokio::test]
async fn the_demo_stock_is_seeded_once() {
    let harness = Harness::start_with(&[("SEED_DEMO_STOCK", "true")]).await;
    let db = harness.service.db();
    let catalog = shopmesh_demo::demo_catalog();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as("SELECT sku, on_hand, reserved FROM stock")
        .fetch_all(db)
        .await
        .unwrap();
    let stored: HashMap<String, (i64, i64)> = rows
        .into_iter()
        .map(|(sku, on_hand, reserved)| (sku, (on_hand, reserved)))
        .collect();
    assert_eq!(stored.len(), catalog.products.len());
    for product in &catalog.products {
        assert_eq!(
            stored.get(&product.sku),
            Some(&(product.initial_stock, 0)),
            "{}",
            product.sku
        );
    }
    let sample = &catalog.products[7];
    assert_eq!(
        harness.stock(&sample.sku).await.available,
        sample.initial_stock
    );

    // A restart, or two replicas starting together, seed nothing more.
    let (a, b) = tokio::join!(
        svc_inventory::seed_if_empty(db, &catalog),
        svc_inventory::seed_if_empty(db, &catalog)
    );
    a.unwrap();
    b.unwrap();
    let (skus, changes): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM stock), (SELECT count(*) FROM stock_changes)")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(skus, catalog.products.len() as i64);
    assert_eq!(changes, skus, "one audit row per seeded SKU");
    harness.stop().await;
}

#[tokio::test]
async fn health_and_reservation_metrics_are_served() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let harness = Harness::start().await;
    let channel = harness.service.channel().await.unwrap();
    for name in ["", "shop.inventory.v1.InventoryService"] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{name:?}");
    }

    harness.set_stock("METRIC-1", 1).await;
    harness
        .reserve(Uuid::now_v7(), &[("METRIC-1", 1)], None)
        .await
        .unwrap();
    harness
        .reserve(Uuid::now_v7(), &[("METRIC-1", 1)], None)
        .await
        .unwrap_err();
    // The services of this test process share one recorder, the one `/metrics` renders.
    let metrics = shopmesh_platform::metrics::handle().render();
    for outcome in ["reserved", "insufficient"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("inventory_reservations_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))),
            "{outcome}: {metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("grpc_server_requests_total")
                && l.contains("method=\"ReserveStock\"")
                && l.contains("code=\"FAILED_PRECONDITION\"")),
        "{metrics}"
    );
    harness.stop().await;
}
