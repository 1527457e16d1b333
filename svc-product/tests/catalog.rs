//! svc-product against a real PostgreSQL: the service is started as in
//! production (fresh database, migrations, demo seed) on an ephemeral port and
//! called with the generated client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use shopmesh_proto::shop::product::v1::{
    BatchGetProductsRequest, CreateProductRequest, DeleteProductRequest, GetProductRequest,
    ListCategoriesRequest, ListProductsRequest, Product, ProductOrder, SearchProductsRequest,
    UpdateProductRequest,
};
use support::{Client, http_get, start, violated_fields};
use tonic::Code;
use tonic_types::StatusExt;

async fn list(client: &mut Client, request: ListProductsRequest) -> (Vec<Product>, String) {
    let response = client
        .list_products(request)
        .await
        .expect("list")
        .into_inner();
    (response.products, response.next_page_token)
}

#[tokio::test]
async fn pages_walk_the_whole_catalog_newest_first_without_overlap() {
    let (service, mut client) = start().await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(service.db())
        .await
        .unwrap();
    assert!(
        total >= 1000,
        "the demo catalog has at least 1000 products, got {total}"
    );

    let (first, token) = list(
        &mut client,
        ListProductsRequest {
            page_size: 20,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.len(), 20);
    assert!(!token.is_empty());

    let mut seen: HashSet<String> = first.iter().map(|p| p.id.clone()).collect();
    let mut previous = first.last().unwrap().create_time.unwrap();
    let mut token = token;
    while !token.is_empty() {
        let (page, next) = list(
            &mut client,
            ListProductsRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await;
        for product in &page {
            assert!(
                seen.insert(product.id.clone()),
                "product {} appears twice",
                product.id
            );
            let created = product.create_time.unwrap();
            assert!(
                (created.seconds, created.nanos) <= (previous.seconds, previous.nanos),
                "not newest first"
            );
            previous = created;
        }
        token = next;
    }
    assert_eq!(
        seen.len() as i64,
        total,
        "every product is listed exactly once"
    );
    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_parent_category_lists_its_subcategories_products() {
    let (service, mut client) = start().await;
    let (parent_id, expected): (uuid::Uuid, i64) = sqlx::query_as(
        "SELECT c.id, count(p.id) FROM categories c \
         JOIN categories child ON child.parent_id = c.id \
         JOIN products p ON p.category_id = child.id AND p.deleted_at IS NULL \
         WHERE c.parent_id IS NULL GROUP BY c.id ORDER BY c.slug LIMIT 1",
    )
    .fetch_one(service.db())
    .await
    .unwrap();
    let children: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM categories WHERE parent_id = $1")
            .bind(parent_id)
            .fetch_all(service.db())
            .await
            .unwrap();
    let children: HashSet<String> = children.iter().map(ToString::to_string).collect();

    let mut count = 0;
    let mut token = String::new();
    loop {
        let (page, next) = list(
            &mut client,
            ListProductsRequest {
                page_size: 100,
                page_token: token,
                category_id: parent_id.to_string(),
                ..Default::default()
            },
        )
        .await;
        for product in &page {
            assert!(
                children.contains(&product.category_id),
                "{} is outside the category",
                product.name
            );
        }
        count += page.len() as i64;
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(count, expected, "the same count as a direct SQL count");
    service.stop().await.unwrap();
}

#[tokio::test]
async fn price_filters_and_price_sorting() {
    let (service, mut client) = start().await;
    for (order, ascending) in [
        (ProductOrder::PriceAsc, true),
        (ProductOrder::PriceDesc, false),
    ] {
        let mut prices = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = list(
                &mut client,
                ListProductsRequest {
                    page_size: 50,
                    page_token: token,
                    min_price_minor: 2_000,
                    max_price_minor: 5_000,
                    order_by: order as i32,
                    ..Default::default()
                },
            )
            .await;
            prices.extend(page.iter().map(|p| p.price.as_ref().unwrap().amount_minor));
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let expected: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM products WHERE price_minor BETWEEN 2000 AND 5000 AND deleted_at IS NULL",
        )
        .fetch_one(service.db())
        .await
        .unwrap();
        assert_eq!(prices.len() as i64, expected);
        assert!(prices.iter().all(|p| (2_000..=5_000).contains(p)));
        let sorted = prices.windows(2).all(|w| {
            if ascending {
                w[0] <= w[1]
            } else {
                w[0] >= w[1]
            }
        });
        assert!(sorted, "{order:?} is not sorted");
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn paging_is_stable_while_products_are_inserted() {
    let (service, mut client) = start().await;
    let (first, token) = list(
        &mut client,
        ListProductsRequest {
            page_size: 10,
            ..Default::default()
        },
    )
    .await;
    let (expected_second, _) = list(
        &mut client,
        ListProductsRequest {
            page_size: 10,
            page_token: token.clone(),
            ..Default::default()
        },
    )
    .await;
    // A product newer than everything lands at the head of the list meanwhile.
    sqlx::query(
        "INSERT INTO products (id, sku, name, category_id, price_minor, currency_code) \
         SELECT $1, 'NEW-1', 'Brand New Thing', category_id, 100, 'USD' FROM products LIMIT 1",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(service.db())
    .await
    .unwrap();
    let (second, _) = list(
        &mut client,
        ListProductsRequest {
            page_size: 10,
            page_token: token,
            ..Default::default()
        },
    )
    .await;
    let ids = |page: &[Product]| page.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&second),
        ids(&expected_second),
        "the second page did not shift"
    );
    assert!(first.iter().all(|p| !ids(&second).contains(&p.id)));
    service.stop().await.unwrap();
}

#[tokio::test]
async fn get_and_batch_get() {
    let (service, mut client) = start().await;
    let (page, _) = list(
        &mut client,
        ListProductsRequest {
            page_size: 3,
            ..Default::default()
        },
    )
    .await;
    let product = client
        .get_product(GetProductRequest {
            id: page[0].id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(product, page[0]);
    assert!(product.price.as_ref().unwrap().amount_minor > 0);
    assert_eq!(product.price.as_ref().unwrap().currency_code, "USD");
    assert!(product.attributes.contains_key("brand"));

    let missing = uuid::Uuid::now_v7().to_string();
    let batch = client
        .batch_get_products(BatchGetProductsRequest {
            ids: vec![page[2].id.clone(), missing.clone(), page[0].id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch
            .products
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>(),
        [page[2].id.clone(), page[0].id.clone()]
    );
    assert_eq!(batch.missing_ids, [missing]);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let (service, mut client) = start().await;
    let unknown = client
        .get_product(GetProductRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        unknown.get_error_details().error_info().unwrap().reason,
        "PRODUCT_NOT_FOUND"
    );

    let malformed = client
        .get_product(GetProductRequest { id: "42".into() })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&malformed), ["id"]);

    for (request, field) in [
        (
            ListProductsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListProductsRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListProductsRequest {
                category_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            },
            "category_id",
        ),
    ] {
        let status = client.list_products(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }

    let too_many = BatchGetProductsRequest {
        ids: (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect(),
    };
    assert_eq!(
        client
            .batch_get_products(too_many)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    service.stop().await.unwrap();
}

#[tokio::test]
async fn the_category_tree_counts_every_product() {
    let (service, mut client) = start().await;
    let tree = client
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .categories;
    fn walk(nodes: &[shopmesh_proto::shop::product::v1::Category], count: &mut usize) {
        for node in nodes {
            *count += 1;
            let below: i64 = node.children.iter().map(|c| c.product_count).sum();
            assert!(
                node.product_count >= below,
                "{} counts less than its children",
                node.name
            );
            walk(&node.children, count);
        }
    }
    let mut categories = 0;
    walk(&tree, &mut categories);
    assert!(categories >= 20, "at least 20 categories, got {categories}");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(service.db())
        .await
        .unwrap();
    assert_eq!(tree.iter().map(|c| c.product_count).sum::<i64>(), total);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn the_seed_runs_once() {
    let (service, _client) = start().await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(service.db())
        .await
        .unwrap();
    // A second replica (or a restart) on the same database seeds nothing more.
    let catalog = shopmesh_demo::demo_catalog();
    let again = futures_join(service.db(), &catalog).await;
    assert!(again.iter().all(Result::is_ok));
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(service.db())
        .await
        .unwrap();
    assert_eq!(before, after);
    service.stop().await.unwrap();
}

async fn futures_join(
    db: &sqlx::PgPool,
    catalog: &shopmesh_demo::Catalog,
) -> Vec<anyhow::Result<()>> {
    let (a, b) = tokio::join!(
        svc_product::seed_if_empty(db, catalog),
        svc_product::seed_if_empty(db, catalog)
    );
    vec![a, b]
}

#[tokio::test]
async fn every_method_is_implemented() {
    let (service, mut client) = start().await;
    client
        .search_products(SearchProductsRequest {
            query: "headphones".into(),
            ..Default::default()
        })
        .await
        .expect("search answers");
    // Admin methods exist: without a token they are refused, not unimplemented.
    let refusals = [
        client
            .create_product(CreateProductRequest::default())
            .await
            .unwrap_err(),
        client
            .update_product(UpdateProductRequest::default())
            .await
            .unwrap_err(),
        client
            .delete_product(DeleteProductRequest::default())
            .await
            .unwrap_err(),
    ];
    for status in refusals {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn health_reflection_and_metrics_are_served() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let (service, mut client) = start().await;
    let channel = service.channel().await.unwrap();
    for name in ["", "shop.product.v1.ProductService"] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{name:?}"
        );
    }

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("reflection did not list services");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"shop.product.v1.ProductService"),
        "{names:?}"
    );

    client
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap();
    let metrics = http_get(&format!("http://{}/metrics", service.metrics_addr)).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("grpc_server_requests_total")
                && l.contains("method=\"ListCategories\"")
                && l.contains("code=\"OK\"")),
        "{metrics}"
    );
    assert!(metrics.contains("grpc_server_request_duration_seconds_bucket"));
    service.stop().await.unwrap();
}
