//! Two replicas on one database and one Redis, each with the catalog in its
//! memory: a write made through one, or straight in PostgreSQL, reaches the
//! other's reads (products and cached pages) as soon as PostgreSQL delivers
//! the commit's notification, never an old copy after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{DeleteProductRequest, SearchProductsRequest};
use shopmesh_testkit::{TestService, eventually};
use support::{
    Client, NO_INVENTORY, authorized, exact_match_product, get, price, search, set_price,
    start_with_identity, token,
};
use tonic::Code;

/// Polls `client` until the product's price is `amount`, and its first search
/// page (by `name`) shows that price too.
async fn until_priced(client: &Client, id: &str, name: &str, amount: i64) {
    eventually("the other replica to serve the new price", || {
        let mut client = client.clone();
        async move {
            let product = get(&mut client, id).await.unwrap();
            let request = SearchProductsRequest {
                query: name.into(),
                ..Default::default()
            };
            let page = search(&mut client, request).await;
            let listed = page.products.iter().find(|p| p.id == id)?;
            (price(&product) == amount && price(listed) == amount).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_write_through_one_replica_reaches_the_others_memory() {
    let (a, mut client_a, identity) = start_with_identity(&[]).await;
    let b = TestService::spawn(
        &svc_product::SPEC,
        &[
            ("DATABASE_URL", a.database_url.as_str()),
            ("AUTH_GRPC_URL", identity.auth_url.as_str()),
            ("INVENTORY_GRPC_URL", NO_INVENTORY),
        ],
        svc_product::build,
    )
    .await
    .expect("the second replica starts");
    let mut client_b = ProductServiceClient::new(b.channel().await.unwrap());
    let admin = token(&identity, &["admin"]).await;
    let (id, name) = exact_match_product(a.db()).await;

    // Both replicas hold the product and its search page in memory.
    let original = get(&mut client_b, &id).await.unwrap();
    assert_eq!(get(&mut client_a, &id).await.unwrap(), original);
    let amount = price(&original);
    until_priced(&client_b, &id, &name, amount).await;

    // An admin update through A: A serves it at once, B once it hears.
    let updated = set_price(&mut client_a, &admin, &id, amount + 100).await;
    assert_eq!(get(&mut client_a, &id).await.unwrap(), updated);
    until_priced(&client_b, &id, &name, amount + 100).await;
    assert_eq!(get(&mut client_b, &id).await.unwrap(), updated);

    // A write that bypasses both (another release, a migration, a hand
    // fix) still bumps the version, and the trigger announces it: both
    // replicas, and Redis, move to the new copy.
    sqlx::query(
        "UPDATE products SET price_minor = price_minor + 1, version = version + 1 WHERE id = $1::uuid",
    )
    .bind(&id)
    .execute(a.db())
    .await
    .unwrap();
    until_priced(&client_a, &id, &name, amount + 101).await;
    until_priced(&client_b, &id, &name, amount + 101).await;

    // A delete through B: A answers NOT_FOUND once it hears.
    client_b
        .delete_product(authorized(DeleteProductRequest { id: id.clone() }, &admin))
        .await
        .unwrap();
    assert_eq!(
        get(&mut client_b, &id).await.unwrap_err().code(),
        Code::NotFound
    );
    eventually("replica A to see the delete", || {
        let (mut client, id) = (client_a.clone(), id.clone());
        async move { (get(&mut client, &id).await.err()?.code() == Code::NotFound).then_some(()) }
    })
    .await;
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}
