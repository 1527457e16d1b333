#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A burst of concurrent checkouts on scarce stock, then the books must
//! balance across the three services' own databases: every order ends in a
//! terminal status, the money captured (less refunds) equals the totals of
//! the confirmed orders, no SKU is oversold or left reserved, and no
//! reservation is held for a finished order.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use shopmesh_demo::SeedProduct;
use shopmesh_testkit::SignedIn;
use support::{APPROVED, DECLINED, Shop, checkout, stocked_products};

const ORDERS: usize = 100;
const SHOPPERS: usize = 20;
const UNITS_PER_SKU: i64 = 12;

#[tokio::test]
async fn a_burst_of_checkouts_on_scarce_stock_leaves_the_books_balanced() {
    let shop = Shop::start().await;
    let products = stocked_products(UNITS_PER_SKU);
    let scarce: Vec<&SeedProduct> = products.iter().take(3).collect();
    for product in &scarce {
        shop.stack.set_stock(&product.sku, UNITS_PER_SKU).await;
    }
    let mut shoppers: Vec<SignedIn> = Vec::new();
    for _ in 0..SHOPPERS {
        shoppers.push(shop.shopper().await);
    }

    // 100 orders of one or two scarce SKUs, 1–3 units each (about 300 units
    // wanted, 36 in stock); every seventh pays with a declined card.
    let requests: Vec<_> = (0..ORDERS)
        .map(|i| {
            let first = scarce[i % scarce.len()];
            let second = scarce[(i + 1) % scarce.len()];
            let quantity = (i % 3) as i32 + 1;
            let lines: Vec<(&SeedProduct, i32)> = if i % 2 == 0 {
                vec![(first, quantity)]
            } else {
                vec![(first, quantity), (second, 1)]
            };
            let card = if i % 7 == 0 { DECLINED } else { APPROVED };
            checkout(&format!("burst-{i}"), &shoppers[i % SHOPPERS], &lines, card)
        })
        .collect();
    let placed: Vec<_> = futures::stream::iter(requests)
        .map(|request| shop.place(request))
        .buffer_unordered(25)
        .collect()
        .await;
    assert_eq!(placed.len(), ORDERS);

    // Every saga settles (CreateOrder may answer before its saga does).
    let order_db = shop.order().db();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders \
             WHERE status NOT IN ('confirmed', 'failed', 'cancelled', 'refunded')",
        )
        .fetch_one(order_db)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} orders still in flight"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let by_status: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT status, count(*) FROM orders GROUP BY status")
            .fetch_all(order_db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        by_status.values().sum::<i64>(),
        ORDERS as i64,
        "{by_status:?}"
    );
    assert!(
        by_status.get("confirmed").copied().unwrap_or(0) > 0,
        "{by_status:?}"
    );
    assert!(
        by_status.get("failed").copied().unwrap_or(0) > 0,
        "{by_status:?}"
    );

    // Money: captured less refunded equals the confirmed orders' totals.
    let confirmed_total: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(total_minor), 0)::int8 FROM orders WHERE status = 'confirmed'",
    )
    .fetch_one(order_db)
    .await
    .unwrap();
    let kept: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(captured_minor - refunded_minor), 0)::int8 FROM payments",
    )
    .fetch_one(shop.payment().db())
    .await
    .unwrap();
    assert_eq!(kept, confirmed_total);
    println!("orders by status {by_status:?}; kept {kept} = confirmed totals {confirmed_total}");

    // Stock: what the confirmed orders bought left the shelf, nothing more;
    // nothing stays reserved.
    for product in &scarce {
        let sold: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(l.quantity), 0)::int8 FROM order_lines l \
             JOIN orders o ON o.id = l.order_id WHERE o.status = 'confirmed' AND l.sku = $1",
        )
        .bind(&product.sku)
        .fetch_one(order_db)
        .await
        .unwrap();
        let stock = shop.stock(&product.sku).await;
        assert_eq!(stock.reserved, 0, "{}", product.sku);
        assert!(stock.on_hand >= 0, "{}", product.sku);
        assert_eq!(stock.on_hand, UNITS_PER_SKU - sold, "{}", product.sku);
    }
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reservations WHERE status = 'reserved'")
            .fetch_one(shop.inventory().db())
            .await
            .unwrap();
    assert_eq!(held, 0, "no reservation is held for a finished order");
}
