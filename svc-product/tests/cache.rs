//! The cache in front of PostgreSQL, seen from a client: repeated reads are
//! hits in memory (and are counted), Redis holds the shared copy, and an admin
//! change is visible on the very next read of the product and of any cached
//! listing page. Other replicas: tests/replicas.rs.
//!
//! One test, run as one story: the hit and miss counters are process-wide, so
//! a second test in this binary could move them too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fred::prelude::KeysInterface;
use shopmesh_proto::shop::product::v1::{
    BatchGetProductsRequest, DeleteProductRequest, SearchProductsRequest,
};
use support::{
    authorized, cache_count, exact_match_product, get, price, search, set_price,
    start_with_identity, token,
};
use tonic::Code;

#[tokio::test]
async fn reads_are_cached_and_never_stale_after_an_admin_change() {
    let (service, mut client, identity) = start_with_identity(&[]).await;
    let admin = token(&identity, &["admin"]).await;
    let (id, name) = exact_match_product(service.db()).await;

    // The first read misses both tiers and fills them; the next ones hit
    // memory and never reach Redis.
    let counts = async |cache| {
        (
            cache_count(&service, cache, "hit").await,
            cache_count(&service, cache, "miss").await,
        )
    };
    let (memory_hits, memory_misses) = counts("product_memory").await;
    let (redis_hits, redis_misses) = counts("product").await;
    let original = get(&mut client, &id).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&mut client, &id).await.unwrap(), original);
    }
    assert_eq!(
        counts("product_memory").await,
        (memory_hits + 3.0, memory_misses + 1.0)
    );
    assert_eq!(counts("product").await, (redis_hits, redis_misses + 1.0));

    // The copy sits in Redis under product:v1:<id>, prost-encoded, with a TTL.
    let redis = shopmesh_platform::redis::connect(
        &shopmesh_platform::settings::RedisSettings::from_env(
            &shopmesh_platform::settings::Env::from_pairs([(
                "REDIS_URL",
                shopmesh_testkit::redis_url(),
            )]),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(service.db())
        .await
        .unwrap();
    let key = format!("{database}:product:v1:{id}");
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!((1..=300_000).contains(&ttl), "{key} has TTL {ttl} ms");

    // Proof that reads are served from the cache: a change behind the
    // service's back (one that leaves the version alone, as no write of ours
    // does) stays invisible…
    sqlx::query("UPDATE products SET description = 'changed behind the cache' WHERE id = $1::uuid")
        .bind(&id)
        .execute(service.db())
        .await
        .unwrap();
    assert_eq!(get(&mut client, &id).await.unwrap(), original);

    // …while an admin change is visible on the very next read, single or batched.
    let updated = set_price(&mut client, &admin, &id, price(&original) + 100).await;
    assert_eq!(get(&mut client, &id).await.unwrap(), updated);
    assert_eq!(updated.description, "changed behind the cache");
    let batch = client
        .batch_get_products(BatchGetProductsRequest {
            ids: vec![id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.products, std::slice::from_ref(&updated));

    // Listing pages: the first page of a search is cached (and counted)…
    // The writes above are also heard from PostgreSQL a moment later, which
    // moves the page generations on once more; a page stored before that is
    // (rightly) not served, so look again with a fresh query (page size)
    // until a page was stored after it.
    let mut attempts = 0;
    let request = loop {
        attempts += 1;
        let request = SearchProductsRequest {
            query: name.clone(),
            page_size: 10 + attempts,
            ..Default::default()
        };
        let memory = counts("product_list_memory").await;
        let redis = counts("product_list").await;
        let page = search(&mut client, request.clone()).await;
        assert_eq!(page.products[0], updated);
        assert_eq!(search(&mut client, request.clone()).await, page);
        if counts("product_list_memory").await == (memory.0 + 1.0, memory.1 + 1.0) {
            assert_eq!(counts("product_list").await, (redis.0, redis.1 + 1.0));
            break request;
        }
        assert!(attempts < 50, "no search page stayed cached");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // …and an admin change reaches it at once.
    for amount in [1_234, 5_678, 9_012] {
        let changed = set_price(&mut client, &admin, &id, amount).await;
        let page = search(&mut client, request.clone()).await;
        assert_eq!(page.products[0], changed);
        assert_eq!(price(&get(&mut client, &id).await.unwrap()), amount);
    }

    // A delete is visible at once too, from the cache's tombstone.
    client
        .delete_product(authorized(DeleteProductRequest { id: id.clone() }, &admin))
        .await
        .unwrap();
    let (hits, _) = counts("product_memory").await;
    assert_eq!(
        get(&mut client, &id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(counts("product_memory").await.0, hits + 1.0);
    let key_now: Vec<u8> = redis.get(&key).await.unwrap();
    assert!(key_now.ends_with(b":D"), "Redis holds the tombstone too");
    let page = search(&mut client, request).await;
    assert!(page.products.iter().all(|p| p.id != id));
    service.stop().await.unwrap();
}
