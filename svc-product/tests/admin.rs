//! Admin writes through the real access layer: create, update with a mask,
//! soft delete, SKU uniqueness, validation naming fields, and who may call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost_types::FieldMask;
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::product::v1::{
    BatchGetProductsRequest, CreateProductRequest, DeleteProductRequest, GetProductRequest,
    ListCategoriesRequest, ListProductsRequest, Product, SearchProductsRequest,
    UpdateProductRequest,
};
use support::{
    Client, authorized, error_reason, search, start_with_identity, token, violated_fields,
};
use tonic::Code;
use uuid::Uuid;

async fn headphones_category(db: &sqlx::PgPool) -> String {
    let id: Uuid = sqlx::query_scalar("SELECT id FROM categories WHERE slug = 'headphones'")
        .fetch_one(db)
        .await
        .unwrap();
    id.to_string()
}

fn new_product(category_id: &str, sku: &str, name: &str) -> Product {
    Product {
        sku: sku.into(),
        name: name.into(),
        description: "Studio sound for the long haul.".into(),
        category_id: category_id.into(),
        price: Some(Money {
            currency_code: "USD".into(),
            amount_minor: 12_999,
        }),
        attributes: [
            ("brand".to_owned(), "Zephyrine".to_owned()),
            ("colour".to_owned(), "Teal".to_owned()),
        ]
        .into(),
        image_urls: vec!["https://images.shopmesh.example/products/zephyr-1.jpg".into()],
        ..Default::default()
    }
}

async fn create(
    client: &mut Client,
    admin: &str,
    product: Product,
) -> Result<Product, tonic::Status> {
    client
        .create_product(authorized(
            CreateProductRequest {
                product: Some(product),
            },
            admin,
        ))
        .await
        .map(|r| r.into_inner().product.unwrap())
}

async fn get(client: &mut Client, id: &str) -> Result<Product, tonic::Status> {
    client
        .get_product(GetProductRequest { id: id.into() })
        .await
        .map(|r| r.into_inner().product.unwrap())
}

/// UpdateProduct of `product` (its id names it) with `paths` as the mask
/// (`None`: no mask, every writable field).
async fn update(
    client: &mut Client,
    token: &str,
    product: Product,
    paths: Option<&[&str]>,
) -> Result<Product, tonic::Status> {
    let request = UpdateProductRequest {
        product: Some(product),
        update_mask: paths.and_then(mask),
    };
    client
        .update_product(authorized(request, token))
        .await
        .map(|r| r.into_inner().product.unwrap())
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn a_product_lives_from_create_through_update_to_soft_delete() {
    let (service, mut client, identity) = start_with_identity(&[]).await;
    let admin = token(&identity, &["admin"]).await;
    let category = headphones_category(service.db()).await;

    let created = create(
        &mut client,
        &admin,
        new_product(
            &category,
            "EL-ZEPH-0001",
            "Zephyrine Studio Monitor Headphones",
        ),
    )
    .await
    .unwrap();
    assert_eq!(Uuid::parse_str(&created.id).unwrap().get_version_num(), 7);
    assert!(created.create_time.is_some() && created.update_time.is_some());
    assert_eq!(get(&mut client, &created.id).await.unwrap(), created);
    let found = search(
        &mut client,
        SearchProductsRequest {
            query: "zephyrine studio".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found.products[0].id, created.id);

    // Only the masked fields change.
    let updated = update(
        &mut client,
        &admin,
        Product {
            id: created.id.clone(),
            name: "Zephyrine Studio Monitor Headphones II".into(),
            price: Some(Money {
                currency_code: "USD".into(),
                amount_minor: 9_999,
            }),
            sku: "IGNORED-NOT-IN-MASK".into(),
            ..Default::default()
        },
        Some(&["name", "price"]),
    )
    .await
    .unwrap();
    assert_eq!(updated.name, "Zephyrine Studio Monitor Headphones II");
    assert_eq!(updated.price.as_ref().unwrap().amount_minor, 9_999);
    assert_eq!(updated.sku, created.sku);
    assert_eq!(updated.attributes, created.attributes);
    assert_eq!(updated.create_time, created.create_time);
    assert_eq!(get(&mut client, &created.id).await.unwrap(), updated);
    let version: i64 = sqlx::query_scalar("SELECT version FROM products WHERE id = $1::uuid")
        .bind(&created.id)
        .fetch_one(service.db())
        .await
        .unwrap();
    assert_eq!(version, 2);

    // An empty mask replaces every writable field.
    let replaced = update(
        &mut client,
        &admin,
        Product {
            id: created.id.clone(),
            ..new_product(&category, "EL-ZEPH-0002", "Zephyrine Replaced")
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(replaced.sku, "EL-ZEPH-0002");
    assert_eq!(replaced.price.unwrap().amount_minor, 12_999);

    // The category tree counts it (the second read comes from the cache)…
    for _ in 0..2 {
        assert_eq!(counted_in_tree(&mut client).await, 1201);
    }

    // Soft delete: gone from every read, the row stays, and deleting again is fine.
    for _ in 0..2 {
        client
            .delete_product(authorized(
                DeleteProductRequest {
                    id: created.id.clone(),
                },
                &admin,
            ))
            .await
            .unwrap();
    }
    let gone = get(&mut client, &created.id).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let batch = client
        .batch_get_products(BatchGetProductsRequest {
            ids: vec![created.id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(batch.products.is_empty());
    assert_eq!(batch.missing_ids, std::slice::from_ref(&created.id));
    let found = search(
        &mut client,
        SearchProductsRequest {
            query: "zephyrine".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found.total_size, 0);
    let listed = support::list_all(
        &mut client,
        ListProductsRequest {
            category_id: category.clone(),
            page_size: 100,
            ..Default::default()
        },
    )
    .await;
    assert!(listed.iter().all(|p| p.id != created.id));
    // …and no longer once it is deleted.
    assert_eq!(
        counted_in_tree(&mut client).await,
        1200,
        "the deleted product is not counted"
    );
    let deleted_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT deleted_at FROM products WHERE id = $1::uuid")
            .bind(&created.id)
            .fetch_one(service.db())
            .await
            .unwrap();
    assert!(deleted_at.is_some(), "the row stays for order history");
    // An update of a deleted product is NOT_FOUND; its SKU is free again.
    let status = update(
        &mut client,
        &admin,
        Product {
            id: created.id.clone(),
            name: "Back from the dead".into(),
            ..Default::default()
        },
        Some(&["name"]),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    create(
        &mut client,
        &admin,
        new_product(&category, "EL-ZEPH-0002", "Zephyrine Successor"),
    )
    .await
    .unwrap();
    // Deleting what never existed is NOT_FOUND.
    let status = client
        .delete_product(authorized(
            DeleteProductRequest {
                id: Uuid::now_v7().to_string(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_taken_sku_is_already_exists() {
    let (service, mut client, identity) = start_with_identity(&[]).await;
    let admin = token(&identity, &["admin"]).await;
    let category = headphones_category(service.db()).await;

    let status = create(
        &mut client,
        &admin,
        new_product(&category, "EL-HEAD-0001", "Clone of a demo product"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&status), "SKU_TAKEN");

    let mine = create(
        &mut client,
        &admin,
        new_product(&category, "EL-ZEPH-0003", "Zephyrine Taken Test"),
    )
    .await
    .unwrap();
    let status = update(
        &mut client,
        &admin,
        Product {
            id: mine.id.clone(),
            sku: "EL-HEAD-0002".into(),
            ..Default::default()
        },
        Some(&["sku"]),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&status), "SKU_TAKEN");
    assert_eq!(
        get(&mut client, &mine.id).await.unwrap().sku,
        "EL-ZEPH-0003"
    );
    service.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_creates_of_one_sku_leave_one_product() {
    let (service, client, identity) = start_with_identity(&[]).await;
    let admin = token(&identity, &["admin"]).await;
    let category = headphones_category(service.db()).await;
    let attempts = (0..8).map(|i| {
        let (mut client, admin) = (client.clone(), admin.clone());
        let product = new_product(&category, "EL-RACE-0001", &format!("Race {i}"));
        async move { create(&mut client, &admin, product).await }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for status in results.into_iter().filter_map(Result::err) {
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(error_reason(&status), "SKU_TAKEN");
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn validation_names_every_bad_field() {
    let (service, mut client, identity) = start_with_identity(&[]).await;
    let admin = token(&identity, &["admin"]).await;
    let category = headphones_category(service.db()).await;

    let bad = Product {
        sku: "not a sku".into(),
        name: " ".into(),
        category_id: "headphones".into(),
        price: Some(Money {
            currency_code: "usd".into(),
            amount_minor: -100,
        }),
        attributes: [
            ("Brand".to_owned(), "Zephyrine".to_owned()),
            ("colour".to_owned(), "x".repeat(101)),
        ]
        .into(),
        image_urls: vec![
            "https://images.shopmesh.example/ok.jpg".into(),
            "images/relative.jpg".into(),
            "javascript:alert(1)".into(),
        ],
        ..Default::default()
    };
    let status = create(&mut client, &admin, bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "product.sku",
            "product.name",
            "product.category_id",
            "product.price.amount_minor",
            "product.price.currency_code",
            "product.attributes[\"Brand\"]",
            "product.attributes[\"colour\"]",
            "product.image_urls[1]",
            "product.image_urls[2]",
        ]
    );

    let mut euro = new_product(&category, "EL-ZEPH-0004", "Zephyrine Euro");
    euro.price = Some(Money {
        currency_code: "EUR".into(),
        amount_minor: 100,
    });
    let status = create(&mut client, &admin, euro).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["product.price.currency_code"]);

    let mut crowded = new_product(&category, "EL-ZEPH-0005", "Zephyrine Crowded");
    crowded.attributes = (0..21)
        .map(|i| (format!("key_{}", char::from(b'a' + i)), "v".to_owned()))
        .collect();
    let status = create(&mut client, &admin, crowded).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["product.attributes"]);

    // A well-formed id of no category.
    let status = create(
        &mut client,
        &admin,
        new_product(
            &Uuid::now_v7().to_string(),
            "EL-ZEPH-0006",
            "Zephyrine Lost",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["product.category_id"]);

    let missing = client
        .create_product(authorized(CreateProductRequest { product: None }, &admin))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&missing), ["product"]);

    let existing = create(
        &mut client,
        &admin,
        new_product(&category, "EL-ZEPH-0007", "Zephyrine Masked"),
    )
    .await
    .unwrap();
    for (request, field, code) in [
        (
            UpdateProductRequest {
                product: Some(Product {
                    id: existing.id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["name", "create_time"]),
            },
            "update_mask",
            Code::InvalidArgument,
        ),
        (
            UpdateProductRequest {
                product: Some(Product {
                    id: "42".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            },
            "product.id",
            Code::InvalidArgument,
        ),
        (
            UpdateProductRequest {
                product: Some(Product {
                    id: existing.id.clone(),
                    price: Some(Money {
                        currency_code: "USD".into(),
                        amount_minor: -1,
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["price"]),
            },
            "product.price.amount_minor",
            Code::InvalidArgument,
        ),
        (
            UpdateProductRequest {
                product: Some(Product {
                    id: Uuid::now_v7().to_string(),
                    name: "Nobody".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            },
            "",
            Code::NotFound,
        ),
    ] {
        let status = client
            .update_product(authorized(request, &admin))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{field}: {status:?}");
        if !field.is_empty() {
            assert_eq!(violated_fields(&status), [field]);
        }
    }
    // Nothing invalid was written.
    assert_eq!(get(&mut client, &existing.id).await.unwrap(), existing);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn only_admins_may_write() {
    let (service, mut client, identity) = start_with_identity(&[]).await;
    let shopper = token(&identity, &["user"]).await;
    let category = headphones_category(service.db()).await;
    let some_id: Uuid = sqlx::query_scalar("SELECT id FROM products LIMIT 1")
        .fetch_one(service.db())
        .await
        .unwrap();
    let product = new_product(&category, "EL-ZEPH-0008", "Zephyrine Forbidden");

    let refused = [
        create(&mut client, &shopper, product.clone())
            .await
            .unwrap_err(),
        update(
            &mut client,
            &shopper,
            Product {
                id: some_id.to_string(),
                name: "Hijacked".into(),
                ..Default::default()
            },
            Some(&["name"]),
        )
        .await
        .unwrap_err(),
        client
            .delete_product(authorized(
                DeleteProductRequest {
                    id: some_id.to_string(),
                },
                &shopper,
            ))
            .await
            .unwrap_err(),
    ];
    for status in refused {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let anonymous = client
        .create_product(CreateProductRequest {
            product: Some(product),
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let untouched: (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT name, deleted_at FROM products WHERE id = $1")
            .bind(some_id)
            .fetch_one(service.db())
            .await
            .unwrap();
    assert_ne!(untouched.0, "Hijacked");
    assert!(untouched.1.is_none());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM products WHERE sku = 'EL-ZEPH-0008'")
        .fetch_one(service.db())
        .await
        .unwrap();
    assert_eq!(count, 0);
    service.stop().await.unwrap();
}

/// Products counted by the roots of the category tree.
async fn counted_in_tree(client: &mut support::Client) -> i64 {
    let tree = client
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    tree.categories.iter().map(|c| c.product_count).sum()
}
