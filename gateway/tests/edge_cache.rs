//! The edge cache of product pages, through the gateway's router with the
//! real svc-product (and its WatchCatalog stream) behind it: repeated reads
//! are answered from memory with the same page and ETag, `If-None-Match`
//! revalidates, a write (through the gateway or straight in PostgreSQL)
//! reaches the next reads within seconds, and a lost catalog stream turns
//! the cache off instead of serving what it held.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use shopmesh_testkit::eventually;
use support::{Stack, gateway_with, stack};
use tower::ServiceExt as _;

/// The tests count hits and misses on the process-wide recorder: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Page {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    fn etag(&self) -> &str {
        self.header(header::ETAG)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn price(&self) -> i64 {
        self.json()["price"]["amountMinor"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

async fn send(router: &axum::Router, request: Request<Body>) -> Page {
    let response = router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        body,
    }
}

async fn read(router: &axum::Router, id: &str, if_none_match: Option<&str>) -> Page {
    let mut request = Request::get(format!("/v1/products/{id}"));
    if let Some(tags) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tags);
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

/// The edge cache's `(hits, misses)` so far in this process.
fn lookups() -> (u64, u64) {
    let metrics = shopmesh_platform::metrics::handle().render();
    let count = |result: &str| {
        metrics
            .lines()
            .filter(|line| {
                line.starts_with("cache_requests_total{")
                    && line.contains("cache=\"edge_product\"")
                    && line.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (count("hit"), count("miss"))
}

async fn some_product(stack: &Stack) -> String {
    let list = stack.get("/v1/products?page_size=1").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["products"][0]["id"].as_str().unwrap().to_owned()
}

/// Reads `id` until a read is answered from the cache (the catalog stream is
/// live and an earlier read stored the page), and returns that read.
async fn until_cached(router: &axum::Router, id: &str) -> Page {
    eventually(
        "a product page answered from the edge cache",
        || async move {
            let (hits, _) = lookups();
            let page = read(router, id, None).await;
            assert_eq!(page.status, StatusCode::OK);
            (lookups().0 > hits).then_some(page)
        },
    )
    .await
}

/// [`stack`] with a TTL far longer than any test: a page that changes was
/// invalidated, not expired.
async fn stack_without_expiry() -> Stack {
    let stack = stack().await;
    let router = gateway_with(
        &stack.identity,
        &[("PRODUCT", stack.product.endpoint())],
        &[("GATEWAY_CACHE_TTL_SECONDS", "3600")],
    );
    Stack { router, ..stack }
}

#[tokio::test]
async fn a_second_read_is_a_hit_with_the_same_page() {
    let _serial = SERIAL.lock().await;
    let stack = stack().await;
    let id = some_product(&stack).await;

    let first = read(&stack.router, &id, None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(first.header(header::CACHE_CONTROL), CACHE_CONTROL);
    assert_eq!(first.json()["id"], id.as_str());
    let etag = first.etag().to_owned();
    assert_eq!(etag.len(), 18, "{etag}");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let cached = until_cached(&stack.router, &id).await;
    assert_eq!(cached.body, first.body);
    assert_eq!(cached.etag(), etag);

    // Once warm, a read is exactly one hit and no miss, and looks the same.
    let (hits, misses) = lookups();
    let again = send(
        &stack.router,
        Request::get(format!("/v1/products/{id}"))
            .header("x-request-id", "edge-cache-hit-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(lookups(), (hits + 1, misses));
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body);
    assert_eq!(again.etag(), etag);
    assert_eq!(again.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(again.header(header::CACHE_CONTROL), CACHE_CONTROL);
    assert_eq!(
        again.header(header::HeaderName::from_static("x-request-id")),
        "edge-cache-hit-1"
    );
    let metrics = shopmesh_platform::metrics::handle().render();
    assert!(
        metrics.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/v1/products/{id}\"")
            && l.contains("status=\"200\"")),
        "hits are counted under their route: {metrics}"
    );

    // Other routes, and product pages asked for with a query, bypass it.
    let (hits, misses) = lookups();
    let listed = stack.get("/v1/products?page_size=1").await;
    assert_eq!(listed.status, StatusCode::OK);
    let queried = stack.get(&format!("/v1/products/{id}?unknown=1")).await;
    assert_eq!(queried.status, StatusCode::BAD_REQUEST);
    assert_eq!(lookups(), (hits, misses));

    // GATEWAY_CACHE_MB=0: no cache, no validators.
    let off = gateway_with(
        &stack.identity,
        &[("PRODUCT", stack.product.endpoint())],
        &[("GATEWAY_CACHE_MB", "0")],
    );
    for _ in 0..2 {
        let page = read(&off, &id, None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.json(), first.json());
        assert!(page.headers.get(header::ETAG).is_none());
    }
    assert_eq!(lookups(), (hits, misses));
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn if_none_match_revalidates_on_hits_and_misses() {
    let _serial = SERIAL.lock().await;
    let stack = stack().await;
    let id = some_product(&stack).await;
    let cached = until_cached(&stack.router, &id).await;
    let etag = cached.etag().to_owned();

    // A hit: 304 with the validators and no body.
    let (hits, misses) = lookups();
    let not_modified = read(&stack.router, &id, Some(&etag)).await;
    assert_eq!(lookups(), (hits + 1, misses));
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.etag(), etag);
    assert_eq!(not_modified.header(header::CACHE_CONTROL), CACHE_CONTROL);
    assert!(not_modified.body.is_empty());
    for tags in [
        format!("W/{etag}"),
        format!("\"stale\", {etag}"),
        "*".into(),
    ] {
        let page = read(&stack.router, &id, Some(&tags)).await;
        assert_eq!(page.status, StatusCode::NOT_MODIFIED, "{tags}");
    }

    let other = read(&stack.router, &id, Some("\"0000000000000000\"")).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body, cached.body);
    assert_eq!(other.etag(), etag);

    // A miss: another gateway replica, its cache empty, agrees on the ETag
    // and answers 304 too.
    let replica = gateway_with(
        &stack.identity,
        &[("PRODUCT", stack.product.endpoint())],
        &[],
    );
    let (hits, misses) = lookups();
    let not_modified = read(&replica, &id, Some(&etag)).await;
    assert_eq!(lookups(), (hits, misses + 1));
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.etag(), etag);
    let changed = read(&replica, &id, Some("\"0000000000000000\"")).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, cached.body);

    // `*` names a page that exists: a missing product is still a 404.
    let missing = read(&stack.router, &uuid::Uuid::now_v7().to_string(), Some("*")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.headers.get(header::ETAG).is_none());
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn writes_reach_cached_pages_within_seconds() {
    let _serial = SERIAL.lock().await;
    let stack = stack_without_expiry().await;
    let admin = stack.identity.sign_in(&["admin"]).await.unwrap().2;
    let id = some_product(&stack).await;
    let cached = until_cached(&stack.router, &id).await;
    let (price, currency) = (
        cached.price(),
        cached.json()["price"]["currencyCode"].clone(),
    );

    // An admin update through the gateway.
    let body =
        json!({"price": {"currencyCode": currency, "amountMinor": (price + 100).to_string()}});
    let updated = send(
        &stack.router,
        Request::patch(format!("/v1/products/{id}"))
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(
        updated.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&updated.body)
    );
    let (router, id) = (&stack.router, id.as_str());
    let fresh = eventually("the new price on the product page", || async move {
        let page = read(router, id, None).await;
        (page.price() == price + 100).then_some(page)
    })
    .await;
    assert_ne!(fresh.etag(), cached.etag());
    // The new page is cached in turn, and the old ETag no longer matches it.
    let recached = until_cached(router, id).await;
    assert_eq!(recached.price(), price + 100);
    let revalidated = read(router, id, Some(cached.etag())).await;
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.price(), price + 100);

    // A write that bypasses the services still bumps the version, and the
    // trigger announces it.
    sqlx::query(
        "UPDATE products SET price_minor = price_minor + 1, version = version + 1 WHERE id = $1::uuid",
    )
    .bind(id)
    .execute(stack.product.db())
    .await
    .unwrap();
    eventually(
        "the price written in PostgreSQL on the product page",
        || async move { (read(router, id, None).await.price() == price + 101).then_some(()) },
    )
    .await;
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn a_lost_catalog_stream_serves_nothing_it_held() {
    let _serial = SERIAL.lock().await;
    let Stack {
        product, router, ..
    } = stack_without_expiry().await;
    let id = {
        let list = send(
            &router,
            Request::get("/v1/products?page_size=1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        list.json()["products"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    until_cached(&router, &id).await;

    // svc-product goes away: its stream ends, and with it the cache, well
    // within the hour the page could otherwise be served for.
    product.stop().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = read(&router, &id, None).await;
        if page.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cached page is still served 5 s after svc-product stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From then on every read is a miss that asks upstream, whatever it sends.
    let (hits, misses) = lookups();
    for _ in 0..3 {
        let page = read(&router, &id, None).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(lookups(), (hits, misses + 3));
}
