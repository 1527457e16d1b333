//! Carts through the REST edge, with the real svc-cart, svc-product and
//! svc-inventory behind the gateway: the JSON a browser sends and gets, the
//! `mine` alias next to cart ids in the same paths (`/v1/carts/mine:merge`
//! beside `/v1/carts/{cart_id}:clear`), and availability in product reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use shopmesh_testkit::{Service, Shop as TestShop, TestService};
use support::{Reply, Stack, gateway};

struct Shop {
    stack: Stack,
    inventory: TestService,
    cart: TestService,
}

async fn shop() -> Shop {
    let mut shop = TestShop::with(&[Service::Inventory, Service::Product, Service::Cart])
        .start()
        .await;
    let router = gateway(
        &shop.identity,
        &[
            ("PRODUCT", shop[Service::Product].endpoint()),
            ("INVENTORY", shop[Service::Inventory].endpoint()),
            ("CART", shop[Service::Cart].endpoint()),
        ],
    );
    let mut take = |service| shop.take(service).expect("started");
    let (product, inventory, cart) = (
        take(Service::Product),
        take(Service::Inventory),
        take(Service::Cart),
    );
    Shop {
        stack: Stack {
            product,
            router,
            identity: shop.identity,
        },
        inventory,
        cart,
    }
}

impl Shop {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.stack.send(request.body(body).unwrap()).await
    }

    async fn stop(self) {
        self.cart.stop().await.unwrap();
        self.stack.product.stop().await.unwrap();
        self.inventory.stop().await.unwrap();
    }
}

/// Quantities per SKU of a cart document.
fn quantities(cart: &Value) -> Vec<(String, i64)> {
    cart["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| {
                    (
                        l["sku"].as_str().unwrap().to_owned(),
                        l["quantity"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A demo product with stock, as the catalog shows it.
async fn stocked_product(shop: &Shop, index: usize) -> Value {
    let catalog = shopmesh_demo::demo_catalog();
    let sku = &catalog
        .products
        .iter()
        .filter(|p| p.initial_stock >= 10)
        .nth(index)
        .unwrap()
        .sku;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM products WHERE sku = $1")
        .bind(sku)
        .fetch_one(shop.stack.product.db())
        .await
        .unwrap();
    shop.call("GET", &format!("/v1/products/{id}"), None, None)
        .await
        .body
}

#[tokio::test]
async fn a_shopper_fills_a_cart_signs_in_and_merges_it_over_rest() {
    let shop = shop().await;

    // Product reads carry availability once svc-product has heard from inventory.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let headphones = loop {
        let product = stocked_product(&shop, 0).await;
        if product["availableQuantity"]
            .as_str()
            .is_some_and(|q| q != "0")
        {
            break product;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no availability in {product}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kettle = stocked_product(&shop, 1).await;
    let (headphones_sku, kettle_sku) = (
        headphones["sku"].as_str().unwrap(),
        kettle["sku"].as_str().unwrap(),
    );

    // An anonymous cart: create, add twice (one line grows), change, read.
    let created = shop.call("POST", "/v1/carts", None, Some(json!({}))).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let anonymous = created.body["id"].as_str().unwrap().to_owned();
    assert!(created.body["expireTime"].is_string());
    let items = format!("/v1/carts/{anonymous}/items");
    for quantity in [1, 2] {
        let added = shop
            .call(
                "POST",
                &items,
                None,
                Some(json!({"productId": headphones["id"], "quantity": quantity})),
            )
            .await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    }
    let changed = shop
        .call(
            "PATCH",
            &format!("{items}/{headphones_sku}"),
            None,
            Some(json!({"quantity": 4})),
        )
        .await;
    assert_eq!(quantities(&changed.body), [(headphones_sku.to_owned(), 4)]);
    let line = &changed.body["lines"][0];
    assert_eq!(line["unitPrice"], headphones["price"]);
    assert_eq!(line["availability"], "AVAILABILITY_IN_STOCK");
    assert_eq!(changed.body["itemCount"], 4);
    let unit: i64 = headphones["price"]["amountMinor"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        changed.body["subtotal"]["amountMinor"],
        (unit * 4).to_string()
    );
    let read = shop
        .call("GET", &format!("/v1/carts/{anonymous}"), None, None)
        .await
        .body;
    assert_eq!(read["lines"], changed.body["lines"]);
    assert_eq!(read["subtotal"], changed.body["subtotal"]);

    // Bad input is a problem document naming the field.
    let bad = shop
        .call(
            "POST",
            &items,
            None,
            Some(json!({"productId": headphones["id"], "quantity": 100})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.content_type.starts_with("application/problem+json"));
    assert!(bad.body.to_string().contains("quantity"), "{}", bad.body);

    // "mine" needs a token; with one it is the user's own cart.
    let refused = shop.call("GET", "/v1/carts/mine", None, None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let (_, _, token) = shop.stack.identity.sign_in(&[]).await.unwrap();
    let mine = shop
        .call(
            "POST",
            "/v1/carts/mine/items",
            Some(&token),
            Some(json!({"productId": kettle["id"], "quantity": 1})),
        )
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert!(mine.body["userId"].is_string());
    shop.call(
        "POST",
        "/v1/carts/mine/items",
        Some(&token),
        Some(json!({"productId": headphones["id"], "quantity": 1})),
    )
    .await;

    // Sign-in merge: the literal `mine:merge`, not a cart id called "mine".
    let merged = shop
        .call(
            "POST",
            "/v1/carts/mine:merge",
            Some(&token),
            Some(json!({"anonymousCartId": anonymous})),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    let mut got = quantities(&merged.body);
    got.sort();
    let mut want = vec![(kettle_sku.to_owned(), 1), (headphones_sku.to_owned(), 5)];
    want.sort();
    assert_eq!(got, want);
    let gone = shop
        .call("GET", &format!("/v1/carts/{anonymous}"), None, None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.content_type.starts_with("application/problem+json"));

    // Remove a line, then `{cart_id}:clear` on the alias empties the rest.
    let removed = shop
        .call(
            "DELETE",
            &format!("/v1/carts/mine/items/{kettle_sku}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(quantities(&removed.body), [(headphones_sku.to_owned(), 5)]);
    let cleared = shop
        .call(
            "POST",
            "/v1/carts/mine:clear",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert!(quantities(&cleared.body).is_empty());
    shop.stop().await;
}
