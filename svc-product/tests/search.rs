//! SearchProducts against the real service and PostgreSQL with the demo
//! catalog: relevance, typo tolerance, prefixes, hostile text, every filter and
//! facet checked against a direct SQL count, and keyset paging under inserts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use shopmesh_demo::EXACT_MATCH_NAME;
use shopmesh_proto::shop::product::v1::{
    ListProductsRequest, Product, ProductOrder, SearchOrder, SearchProductsRequest,
};
use sqlx::PgPool;
use support::{ids, search, search_all, start, start_with, stock_like_the_demo, violated_fields};
use tonic::Code;
use uuid::Uuid;

fn query(text: &str) -> SearchProductsRequest {
    SearchProductsRequest {
        query: text.into(),
        page_size: 100,
        ..Default::default()
    }
}

fn names(products: &[Product]) -> Vec<String> {
    products.iter().map(|p| p.name.clone()).collect()
}

/// Ids of live products a fixed SQL condition selects (test-owned SQL, no input).
async fn sql_ids(db: &PgPool, condition: &str) -> BTreeSet<String> {
    let rows: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT p.id FROM products p WHERE p.deleted_at IS NULL AND ({condition})"
    )))
    .fetch_all(db)
    .await
    .unwrap();
    rows.iter().map(ToString::to_string).collect()
}

async fn root_category(db: &PgPool, slug: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM categories WHERE slug = $1")
        .bind(slug)
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_exact_name_match_ranks_first() {
    let (service, mut client) = start().await;
    for text in [
        EXACT_MATCH_NAME.to_owned(),
        EXACT_MATCH_NAME.to_lowercase(),
        format!("  {}  ", EXACT_MATCH_NAME.to_uppercase()),
    ] {
        let response = search(&mut client, query(&text)).await;
        assert_eq!(response.products[0].name, EXACT_MATCH_NAME, "{text:?}");
        assert!(
            response.total_size > 1,
            "other Auralis wireless headphones match too"
        );
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn typos_still_find_what_was_meant() {
    let (service, mut client) = start().await;
    let (found, first) = search_all(&mut client, query("wireles headphnes")).await;
    assert_eq!(found[0].name, EXACT_MATCH_NAME, "{:?}", names(&found));
    assert!(found.len() >= 10, "{:?}", names(&found));
    for name in names(&found) {
        assert!(
            name.contains("Wireless") && name.contains("Headphones"),
            "{name} is not a pair of wireless headphones"
        );
    }
    assert_eq!(first.total_size, found.len() as i64);

    for (typo, meant) in [
        ("espreso machne", "Espresso Machine"),
        ("bluetoth speker", "Bluetooth Speaker"),
        ("skilet", "Skillet"),
    ] {
        let (found, _) = search_all(&mut client, query(typo)).await;
        assert!(!found.is_empty(), "{typo} found nothing");
        for name in names(&found) {
            assert!(name.contains(meant), "{typo}: {name}");
        }
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn the_last_word_matches_as_a_prefix() {
    let (service, mut client) = start().await;
    let (found, first) = search_all(&mut client, query("headph")).await;
    assert!(found.len() >= 20, "{}", found.len());
    assert_eq!(first.total_size, found.len() as i64);
    assert!(names(&found).contains(&EXACT_MATCH_NAME.to_owned()));
    for product in &found {
        let text = format!("{} {}", product.name, product.description).to_lowercase();
        assert!(
            text.split(|c: char| !c.is_alphanumeric())
                .any(|w| w.starts_with("headph")),
            "{} does not mention headph…",
            product.name
        );
    }
    // Every word but the last must match whole: "headph cam" needs a camera-ish word.
    let (narrower, _) = search_all(&mut client, query("wireless headph")).await;
    assert!(!narrower.is_empty() && narrower.len() <= found.len());
    service.stop().await.unwrap();
}

#[tokio::test]
async fn names_weigh_more_than_descriptions() {
    let (service, mut client) = start().await;
    let (found, _) = search_all(&mut client, query("bluetooth")).await;
    let in_name = |p: &Product| p.name.to_lowercase().contains("bluetooth");
    let named = found.iter().filter(|p| in_name(p)).count();
    assert!(
        named > 0 && named < found.len(),
        "{named} of {}",
        found.len()
    );
    assert!(
        found[..named].iter().all(in_name),
        "a description-only match ranks above a name match: {:?}",
        names(&found[..named + 1])
    );
    service.stop().await.unwrap();
}

#[tokio::test]
async fn metacharacters_are_plain_text() {
    let (service, mut client) = start().await;
    for text in [
        "%", "_", "%%", ".*[", "\\", "\\\\", "'", "*:", "&|!", "()<->",
    ] {
        let response = search(&mut client, query(text)).await;
        assert_eq!(
            response.total_size,
            0,
            "{text:?} acted as a wildcard: {:?}",
            names(&response.products)
        );
    }
    for text in [
        "'; DROP TABLE products; --",
        "headphones' OR '1'='1",
        "wireless:* | !headphones",
        "a\u{0}b",
    ] {
        search(&mut client, query(text)).await;
    }
    let (with_symbol, _) = search_all(&mut client, query("headph%")).await;
    let (plain, _) = search_all(&mut client, query("headph")).await;
    assert_eq!(ids(&with_symbol), ids(&plain));

    // A product whose name is full of metacharacters is found by its name.
    let odd_name = "100% Cotton_Tee [.*] \\ 'Classic'";
    sqlx::query(
        "INSERT INTO products (id, sku, name, category_id, price_minor, currency_code) \
         SELECT $1, 'FA-ODD-0001', $2, category_id, 1500, 'USD' FROM products LIMIT 1",
    )
    .bind(Uuid::now_v7())
    .bind(odd_name)
    .execute(service.db())
    .await
    .unwrap();
    let response = search(&mut client, query(odd_name)).await;
    assert_eq!(response.products[0].name, odd_name);

    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(service.db())
        .await
        .unwrap();
    assert_eq!(total, 1201, "the products table is intact");
    service.stop().await.unwrap();
}

#[tokio::test]
async fn each_filter_matches_a_direct_sql_count() {
    let (service, mut client) = start().await;
    stock_like_the_demo(service.db()).await;
    let electronics = root_category(service.db(), "electronics").await;
    let headphones = root_category(service.db(), "headphones").await;
    let subtree = format!(
        "p.category_id IN (SELECT id FROM categories WHERE id = '{electronics}' OR parent_id = '{electronics}')"
    );
    let in_stock = "EXISTS (SELECT 1 FROM stock_levels s WHERE s.sku = p.sku AND s.available > 0)";
    let cases: Vec<(SearchProductsRequest, String)> = vec![
        (
            SearchProductsRequest {
                category_id: electronics.to_string(),
                ..query("")
            },
            subtree.clone(),
        ),
        (
            SearchProductsRequest {
                category_id: headphones.to_string(),
                ..query("")
            },
            format!("p.category_id = '{headphones}'"),
        ),
        (
            SearchProductsRequest {
                min_price_minor: 2_000,
                max_price_minor: 5_000,
                ..query("")
            },
            "p.price_minor BETWEEN 2000 AND 5000".into(),
        ),
        (
            SearchProductsRequest {
                min_price_minor: 100_000,
                ..query("")
            },
            "p.price_minor >= 100000".into(),
        ),
        (
            SearchProductsRequest {
                attributes: vec!["colour=Black".into(), "colour=White".into()],
                ..query("")
            },
            "p.attributes->>'colour' IN ('Black', 'White')".into(),
        ),
        (
            SearchProductsRequest {
                attributes: vec!["colour=Black".into(), "brand=Auralis".into()],
                ..query("")
            },
            "p.attributes->>'colour' = 'Black' AND p.attributes->>'brand' = 'Auralis'".into(),
        ),
        (
            SearchProductsRequest {
                in_stock_only: true,
                ..query("")
            },
            in_stock.into(),
        ),
        (
            SearchProductsRequest {
                category_id: electronics.to_string(),
                max_price_minor: 10_000,
                attributes: vec!["colour=Black".into()],
                in_stock_only: true,
                ..query("")
            },
            format!(
                "{subtree} AND p.price_minor <= 10000 AND p.attributes->>'colour' = 'Black' AND {in_stock}"
            ),
        ),
    ];
    let (all_wireless, _) = search_all(&mut client, query("wireless")).await;
    for (request, condition) in cases {
        let expected = sql_ids(service.db(), &condition).await;
        assert!(!expected.is_empty(), "{condition} selects nothing");
        let (found, first) = search_all(&mut client, request.clone()).await;
        let found_ids: BTreeSet<String> = ids(&found).into_iter().collect();
        assert_eq!(found.len(), found_ids.len(), "{condition}: a product twice");
        assert_eq!(found_ids, expected, "{condition}");
        assert_eq!(first.total_size, expected.len() as i64, "{condition}");

        // With text too: exactly the text's matches that pass the filter.
        let (filtered, _) = search_all(
            &mut client,
            SearchProductsRequest {
                query: "wireless".into(),
                ..request
            },
        )
        .await;
        let want: BTreeSet<String> = ids(&all_wireless)
            .into_iter()
            .filter(|id| expected.contains(id))
            .collect();
        assert_eq!(
            ids(&filtered).into_iter().collect::<BTreeSet<_>>(),
            want,
            "wireless + {condition}"
        );
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn facets_match_direct_sql_counts() {
    let (service, mut client) = start().await;
    stock_like_the_demo(service.db()).await;
    let electronics = root_category(service.db(), "electronics").await;
    let requests = [
        query(""),
        query("wireless"),
        query("the"),
        SearchProductsRequest {
            category_id: electronics.to_string(),
            in_stock_only: true,
            ..query("")
        },
        SearchProductsRequest {
            attributes: vec!["colour=Black".into()],
            ..query("headphones")
        },
    ];
    for request in requests {
        let label = format!(
            "{:?}",
            (&request.query, &request.category_id, &request.attributes)
        );
        let (found, response) = search_all(&mut client, request).await;
        let matched: Vec<Uuid> = found.iter().map(|p| p.id.parse().unwrap()).collect();
        assert!(!matched.is_empty(), "{label}");
        assert_eq!(response.total_size, matched.len() as i64, "{label}");

        // Categories: every category holding a match, counted with its subcategories.
        let expected: BTreeMap<String, (String, i64)> = sqlx::query_as::<_, (Uuid, String, i64)>(
            "WITH RECURSIVE up (product, category) AS (\
                 SELECT id, category_id FROM products WHERE id = ANY($1) \
                 UNION ALL \
                 SELECT u.product, c.parent_id FROM up u JOIN categories c ON c.id = u.category \
                 WHERE c.parent_id IS NOT NULL) \
             SELECT u.category, c.name, count(*) FROM up u JOIN categories c ON c.id = u.category \
             GROUP BY u.category, c.name",
        )
        .bind(&matched)
        .fetch_all(service.db())
        .await
        .unwrap()
        .into_iter()
        .map(|(id, name, n)| (id.to_string(), (name, n)))
        .collect();
        let facets: BTreeMap<String, (String, i64)> = response
            .category_facets
            .iter()
            .map(|f| (f.category_id.clone(), (f.name.clone(), f.count)))
            .collect();
        assert_eq!(facets, expected, "{label}: category facets");
        let counts: Vec<i64> = response.category_facets.iter().map(|f| f.count).collect();
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "{label}: largest first"
        );

        // Attribute values: every count exact, the top 10 per key, no key left out.
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT a.key, a.value, count(*) FROM products p, jsonb_each_text(p.attributes) a \
             WHERE p.id = ANY($1) GROUP BY a.key, a.value",
        )
        .bind(&matched)
        .fetch_all(service.db())
        .await
        .unwrap();
        let mut by_key: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for (key, value, n) in rows {
            by_key.entry(key).or_default().insert(value, n);
        }
        assert_eq!(
            response.attribute_facets.len(),
            by_key.len().min(20),
            "{label}: attribute keys"
        );
        for facet in &response.attribute_facets {
            let values = &by_key[&facet.key];
            assert_eq!(
                facet.values.len(),
                values.len().min(10),
                "{label}: {}",
                facet.key
            );
            let shown: HashSet<&str> = facet.values.iter().map(|v| v.value.as_str()).collect();
            let least_shown = facet.values.iter().map(|v| v.count).min().unwrap();
            for value in &facet.values {
                assert_eq!(values[&value.value], value.count, "{label}: {}", facet.key);
            }
            for (value, n) in values {
                assert!(
                    shown.contains(value.as_str()) || *n <= least_shown,
                    "{label}: {}={value} ({n}) should be shown",
                    facet.key
                );
            }
        }

        // Price buckets: six fixed ranges, counted directly.
        let expected: Vec<i64> = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE price_minor >= lo AND (hi = 0 OR price_minor < hi)) \
             FROM (VALUES (0, 1000, 1), (1000, 2500, 2), (2500, 5000, 3), (5000, 10000, 4), \
                          (10000, 25000, 5), (25000, 0, 6)) AS b(lo, hi, n) \
             LEFT JOIN products p ON p.id = ANY($1) GROUP BY n ORDER BY n",
        )
        .bind(&matched)
        .fetch_all(service.db())
        .await
        .unwrap();
        let buckets: Vec<(i64, i64, i64)> = response
            .price_buckets
            .iter()
            .map(|b| (b.min_minor, b.max_minor, b.count))
            .collect();
        assert_eq!(
            buckets.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
            [
                (0, 1_000),
                (1_000, 2_500),
                (2_500, 5_000),
                (5_000, 10_000),
                (10_000, 25_000),
                (25_000, 0)
            ]
        );
        assert_eq!(
            buckets.iter().map(|b| b.2).collect::<Vec<_>>(),
            expected,
            "{label}: price buckets"
        );
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn every_page_carries_the_facets_of_the_whole_match() {
    let (service, mut client) = start().await;
    let request = SearchProductsRequest {
        page_size: 10,
        ..query("wireless")
    };
    let first = search(&mut client, request.clone()).await;
    let mut token = first.next_page_token.clone();
    let mut pages = 1;
    while !token.is_empty() {
        let page = search(
            &mut client,
            SearchProductsRequest {
                page_token: token,
                ..request.clone()
            },
        )
        .await;
        assert_eq!(page.total_size, first.total_size);
        assert_eq!(page.category_facets, first.category_facets);
        assert_eq!(page.attribute_facets, first.attribute_facets);
        assert_eq!(page.price_buckets, first.price_buckets);
        token = page.next_page_token;
        pages += 1;
    }
    assert!(pages >= 3, "{pages} pages");
    service.stop().await.unwrap();
}

/// Inserts a live product straight into the database, as another replica's
/// admin write would land between two page requests.
async fn insert_product(db: &PgPool, name: &str, price_minor: i64) {
    sqlx::query(
        "INSERT INTO products (id, sku, name, category_id, price_minor, currency_code) \
         SELECT $1, $2, $3, id, $4, 'USD' FROM categories WHERE slug = 'headphones'",
    )
    .bind(Uuid::now_v7())
    .bind(format!("NEW-{}", &Uuid::now_v7().simple().to_string()[20..]).to_uppercase())
    .bind(name)
    .bind(price_minor)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn paging_is_stable_under_inserts_for_every_sort() {
    // Rows are inserted behind the service's back, so its cache is off here.
    let (service, mut client) = start_with(&[("PRODUCT_CACHE_TTL_SECONDS", "0")]).await;
    // Each order with products that sort ahead of every page already served.
    let cases: [(SearchOrder, &str, &str, i64); 4] = [
        (SearchOrder::Relevance, "headphones", "Headphones", 5_000),
        (
            SearchOrder::Newest,
            "headphones",
            "Brand New Headphones",
            5_000,
        ),
        (SearchOrder::PriceAsc, "headphones", "Budget Headphones", 1),
        (
            SearchOrder::PriceDesc,
            "wireless",
            "Golden Wireless Headphones",
            999_999_999,
        ),
    ];
    for (order, text, ahead, price) in cases {
        let request = SearchProductsRequest {
            order_by: order as i32,
            page_size: 7,
            ..query(text)
        };
        let first = search(&mut client, request.clone()).await;
        let next = SearchProductsRequest {
            page_token: first.next_page_token.clone(),
            ..request.clone()
        };
        let expected_second = search(&mut client, next.clone()).await;
        for _ in 0..3 {
            insert_product(service.db(), ahead, price).await;
        }
        let second = search(&mut client, next).await;
        assert_eq!(
            ids(&second.products),
            ids(&expected_second.products),
            "{order:?}: the second page shifted"
        );
        // The rest of the walk neither repeats nor skips what was there before.
        let mut seen: Vec<Product> = first.products.clone();
        seen.extend(second.products.clone());
        let mut token = second.next_page_token;
        while !token.is_empty() {
            let page = search(
                &mut client,
                SearchProductsRequest {
                    page_token: token,
                    ..request.clone()
                },
            )
            .await;
            seen.extend(page.products);
            token = page.next_page_token;
        }
        let unique: HashSet<String> = ids(&seen).into_iter().collect();
        assert_eq!(unique.len(), seen.len(), "{order:?}: a product twice");
        assert!(
            seen.iter().all(|p| p.name != ahead),
            "{order:?}: a product inserted ahead of the cursor showed up later"
        );
        let prices: Vec<i64> = seen
            .iter()
            .map(|p| p.price.as_ref().unwrap().amount_minor)
            .collect();
        match order {
            SearchOrder::PriceAsc => assert!(prices.windows(2).all(|w| w[0] <= w[1])),
            SearchOrder::PriceDesc => assert!(prices.windows(2).all(|w| w[0] >= w[1])),
            SearchOrder::Newest => {
                let times: Vec<_> = seen
                    .iter()
                    .map(|p| {
                        let t = p.create_time.unwrap();
                        (t.seconds, t.nanos)
                    })
                    .collect();
                assert!(times.windows(2).all(|w| w[0] >= w[1]));
            }
            _ => {}
        }
        // The inserted products are there for a walk that starts afresh.
        let fresh = search(&mut client, request.clone()).await;
        assert!(
            fresh.products.iter().any(|p| p.name == ahead),
            "{order:?}: {:?}",
            names(&fresh.products)
        );
    }

    // ListProducts pages by price the same way.
    for (order, price) in [
        (ProductOrder::PriceAsc, 0),
        (ProductOrder::PriceDesc, 2_000_000_000),
    ] {
        let request = ListProductsRequest {
            order_by: order as i32,
            page_size: 5,
            ..Default::default()
        };
        let first = client
            .list_products(request.clone())
            .await
            .unwrap()
            .into_inner();
        let next = ListProductsRequest {
            page_token: first.next_page_token,
            ..request
        };
        let before = client
            .list_products(next.clone())
            .await
            .unwrap()
            .into_inner();
        insert_product(service.db(), "Listed Ahead", price).await;
        let after = client.list_products(next).await.unwrap().into_inner();
        assert_eq!(ids(&after.products), ids(&before.products), "{order:?}");
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn the_relevance_cursor_holds_across_every_page() {
    let (service, mut client) = start().await;
    // Many ties: every match scores on the same two words.
    let (paged, _) = search_all(
        &mut client,
        SearchProductsRequest {
            page_size: 3,
            ..query("wireless earbuds")
        },
    )
    .await;
    let (whole, _) = search_all(&mut client, query("wireless earbuds")).await;
    assert!(whole.len() > 10);
    assert_eq!(ids(&paged), ids(&whole), "small pages walk the same order");
    service.stop().await.unwrap();
}

#[tokio::test]
async fn bad_searches_name_their_fields() {
    let (service, mut client) = start().await;
    let first = search(
        &mut client,
        SearchProductsRequest {
            page_size: 2,
            ..query("tent")
        },
    )
    .await;
    let cases = [
        (
            SearchProductsRequest {
                page_token: first.next_page_token.clone(),
                ..query("tents")
            },
            "page_token",
        ),
        (
            SearchProductsRequest {
                page_token: first.next_page_token,
                order_by: SearchOrder::PriceAsc as i32,
                ..query("tent")
            },
            "page_token",
        ),
        (
            SearchProductsRequest {
                category_id: Uuid::now_v7().to_string(),
                ..query("tent")
            },
            "category_id",
        ),
        (
            SearchProductsRequest {
                attributes: vec!["colour".into()],
                ..query("tent")
            },
            "attributes[0]",
        ),
        (query(&"tent ".repeat(60)), "query"),
    ];
    for (request, field) in cases {
        let status = client.search_products(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violated_fields(&status), [field]);
    }
    service.stop().await.unwrap();
}
