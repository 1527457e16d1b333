//! Availability: svc-product follows svc-inventory's WatchStock stream (here a
//! fake inventory serving only that method) into its own `stock_levels`, and
//! the in-stock search filter reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::inventory::v1::inventory_service_server::{
    InventoryService, InventoryServiceServer,
};
use shopmesh_proto::shop::inventory::v1::{Stock, WatchStockRequest, WatchStockResponse};
use shopmesh_proto::shop::product::v1::{
    BatchGetProductsRequest, CreateProductRequest, DeleteProductRequest, GetProductRequest,
    ListProductsRequest, Product, SearchProductsRequest, UpdateProductRequest, WatchCatalogRequest,
    WatchCatalogResponse,
};
use shopmesh_testkit::{TestIdentity, TestService};
use sqlx::PgPool;
use support::{
    Client, authorized, eventually, search, search_all, start_with, start_with_identity, token,
};
use tokio::sync::broadcast;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

/// An inventory that knows stock levels and streams them, nothing else.
#[derive(Clone)]
struct FakeInventory {
    levels: Arc<Mutex<HashMap<String, Stock>>>,
    changes: broadcast::Sender<Stock>,
    /// Every WatchStock call's SKUs.
    watches: Arc<Mutex<Vec<Vec<String>>>>,
    /// Ends every open stream with UNAVAILABLE, as a restart would.
    breaks: broadcast::Sender<()>,
}

fn stock(sku: &str, available: i64) -> Stock {
    let now = chrono::Utc::now();
    Stock {
        sku: sku.into(),
        on_hand: available,
        reserved: 0,
        available,
        update_time: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
    }
}

impl FakeInventory {
    fn with_demo_stock() -> Self {
        let levels = shopmesh_demo::demo_catalog()
            .products
            .iter()
            .map(|p| (p.sku.clone(), stock(&p.sku, p.initial_stock)))
            .collect();
        Self {
            levels: Arc::new(Mutex::new(levels)),
            changes: broadcast::channel(1024).0,
            watches: Arc::default(),
            breaks: broadcast::channel(4).0,
        }
    }

    /// A stock change, streamed to whoever watches the SKU.
    fn set(&self, sku: &str, available: i64) {
        let level = stock(sku, available);
        self.levels
            .lock()
            .unwrap()
            .insert(sku.into(), level.clone());
        let _ = self.changes.send(level);
    }

    /// A change nobody hears about until they reconnect.
    fn set_unannounced(&self, sku: &str, available: i64) {
        self.levels
            .lock()
            .unwrap()
            .insert(sku.into(), stock(sku, available));
    }

    fn watched(&self) -> Vec<Vec<String>> {
        self.watches.lock().unwrap().clone()
    }

    /// Serves on `listener` until the test ends.
    fn serve(&self, listener: tokio::net::TcpListener) -> String {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = InventoryServiceServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        url
    }

    async fn start(&self) -> String {
        self.serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }
}

#[tonic::async_trait]
impl InventoryService for FakeInventory {
    async fn watch_stock(
        &self,
        request: Request<WatchStockRequest>,
    ) -> Result<Response<BoxStream<WatchStockResponse>>, Status> {
        let skus = request.into_inner().skus;
        if skus.is_empty() || skus.len() > 100 {
            return Err(Status::invalid_argument("watch 1 to 100 SKUs"));
        }
        self.watches.lock().unwrap().push(skus.clone());
        let watched: BTreeSet<String> = skus.into_iter().collect();
        // Subscribed before the snapshot is taken, so no change falls between.
        let mut changes = self.changes.subscribe();
        let mut breaks = self.breaks.subscribe();
        let snapshot: Vec<Stock> = {
            let levels = self.levels.lock().unwrap();
            watched
                .iter()
                .filter_map(|sku| levels.get(sku).cloned())
                .collect()
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            for level in snapshot {
                let message = WatchStockResponse { stock: Some(level) };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(level) if watched.contains(&level.sku) => {
                            if tx.send(Ok(WatchStockResponse { stock: Some(level) })).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    },
                    _ = breaks.recv() => {
                        let _ = tx.send(Err(Status::unavailable("inventory restarting"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

async fn level(db: &PgPool, sku: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT available FROM stock_levels WHERE sku = $1")
        .bind(sku)
        .fetch_optional(db)
        .await
        .unwrap()
}

async fn levels_stored(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM stock_levels")
        .fetch_one(db)
        .await
        .unwrap()
}

fn in_stock(query: &str) -> SearchProductsRequest {
    SearchProductsRequest {
        query: query.into(),
        in_stock_only: true,
        page_size: 100,
        ..Default::default()
    }
}

/// A fake inventory with the demo stock, and the service following it, once
/// every demo SKU has its level.
async fn stocked() -> (FakeInventory, TestService, Client, TestIdentity) {
    let inventory = FakeInventory::with_demo_stock();
    let url = inventory.start().await;
    let (service, client, identity) =
        start_with_identity(&[("INVENTORY_GRPC_URL", url.as_str())]).await;
    let db = service.db().clone();
    eventually(20, "every demo SKU has a level", || {
        let db = db.clone();
        async move { levels_stored(&db).await == 1200 }
    })
    .await;
    (inventory, service, client, identity)
}

#[tokio::test]
async fn the_stream_feeds_the_in_stock_filter_and_follows_the_catalog() {
    let (inventory, service, mut client, identity) = stocked().await;
    let db = service.db().clone();

    // Streams of at most 100 SKUs that together cover the catalog, once each.
    let watches = inventory.watched();
    assert!(watches.iter().all(|w| (1..=100).contains(&w.len())));
    let covered: Vec<&String> = watches.iter().flatten().collect();
    let unique: BTreeSet<&String> = covered.iter().copied().collect();
    assert_eq!(covered.len(), 1200);
    assert_eq!(unique.len(), 1200);

    let catalog = shopmesh_demo::demo_catalog();
    let in_stock_demo = catalog
        .products
        .iter()
        .filter(|p| p.initial_stock > 0)
        .count();
    let first = search(&mut client, in_stock("")).await;
    assert_eq!(first.total_size, in_stock_demo as i64);
    assert!(in_stock_demo < 1200, "the demo has sold-out SKUs");

    // A SKU sells out: the next search (even the cached first page) leaves it out.
    let sku = "EL-HEAD-0001";
    inventory.set(sku, 40);
    eventually(10, "the level arrives", || {
        let db = db.clone();
        async move { level(&db, sku).await == Some(40) }
    })
    .await;
    let before = search(&mut client, in_stock("")).await.total_size;
    search(&mut client, in_stock("")).await;
    inventory.set(sku, 0);
    eventually(10, "the sell-out arrives", || {
        let db = db.clone();
        async move { level(&db, sku).await == Some(0) }
    })
    .await;
    let (after, response) = search_all(&mut client, in_stock("")).await;
    assert_eq!(response.total_size, before - 1);
    assert!(after.iter().all(|p| p.sku != sku));
    let (everything, _) = search_all(
        &mut client,
        SearchProductsRequest {
            in_stock_only: false,
            ..in_stock("")
        },
    )
    .await;
    assert!(
        everything.iter().any(|p| p.sku == sku),
        "only filtered, not hidden"
    );

    // A new product's SKU is watched as soon as it is created…
    let admin = token(&identity, &["admin"]).await;
    inventory.set("EL-NEWS-0001", 7);
    let category: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM categories WHERE slug = 'headphones'")
            .fetch_one(&db)
            .await
            .unwrap();
    let created = client
        .create_product(authorized(
            CreateProductRequest {
                product: Some(Product {
                    sku: "EL-NEWS-0001".into(),
                    name: "Newsroom Wireless Headset".into(),
                    category_id: category.to_string(),
                    price: Some(Money {
                        currency_code: "USD".into(),
                        amount_minor: 4_999,
                    }),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    eventually(10, "the new SKU is watched and stocked", || {
        let db = db.clone();
        async move { level(&db, "EL-NEWS-0001").await == Some(7) }
    })
    .await;
    assert!(
        inventory
            .watched()
            .iter()
            .any(|w| w.contains(&"EL-NEWS-0001".to_owned()))
    );
    let found = search(&mut client, in_stock("newsroom headset")).await;
    assert_eq!(found.products[0].id, created.id);

    // …and forgotten once the product is deleted.
    client
        .delete_product(authorized(DeleteProductRequest { id: created.id }, &admin))
        .await
        .unwrap();
    eventually(10, "the deleted product's level is forgotten", || {
        let db = db.clone();
        async move { level(&db, "EL-NEWS-0001").await.is_none() }
    })
    .await;
    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_broken_stream_reconnects_and_catches_up_from_the_snapshot() {
    let (inventory, service, _client, _identity) = stocked().await;
    let db = service.db().clone();
    let watches = inventory.watched().len();

    // Changes made while the streams are down reach the catalog on reconnect.
    inventory.set_unannounced("HK-COOK-0001", 0);
    inventory.set_unannounced("SP-CAMP-0002", 123);
    inventory.breaks.send(()).unwrap();
    eventually(
        15,
        "the missed changes arrive with the new snapshot",
        || {
            let db = db.clone();
            async move {
                level(&db, "HK-COOK-0001").await == Some(0)
                    && level(&db, "SP-CAMP-0002").await == Some(123)
            }
        },
    )
    .await;
    eventually(15, "every stream reconnected", || {
        let inventory = inventory.clone();
        async move { inventory.watched().len() >= watches + 12 }
    })
    .await;
    service.stop().await.unwrap();
}

#[tokio::test]
async fn an_inventory_that_starts_late_is_picked_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}");
    let (service, _client, _identity) =
        start_with_identity(&[("INVENTORY_GRPC_URL", url.as_str())]).await;
    // Nothing answers yet: the service serves anyway and keeps retrying.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(levels_stored(service.db()).await, 0);

    let inventory = FakeInventory::with_demo_stock();
    inventory.serve(tokio::net::TcpListener::bind(addr).await.unwrap());
    let db = service.db().clone();
    eventually(20, "the late inventory's levels arrive", || {
        let db = db.clone();
        async move { levels_stored(&db).await == 1200 }
    })
    .await;
    service.stop().await.unwrap();
}

/// `available_quantity` of one product as GetProduct, BatchGetProducts and a
/// search for its name show it (the last two possibly from the cache).
async fn shown_availability(client: &mut Client, id: &str, name: &str) -> [i64; 3] {
    let got = client
        .get_product(GetProductRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    let batch = client
        .batch_get_products(BatchGetProductsRequest {
            ids: vec![id.into()],
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    let found = search(
        client,
        SearchProductsRequest {
            query: name.into(),
            page_size: 5,
            ..Default::default()
        },
    )
    .await;
    let searched = found.products.iter().find(|p| p.id == id).unwrap();
    [
        got.available_quantity,
        batch[0].available_quantity,
        searched.available_quantity,
    ]
}

#[tokio::test]
async fn product_reads_show_current_availability_even_from_the_cache() {
    let (inventory, service, mut client, _identity) = stocked().await;
    let db = service.db().clone();
    let catalog = shopmesh_demo::demo_catalog();
    let demo = catalog
        .products
        .iter()
        .find(|p| p.initial_stock > 5)
        .unwrap();
    let (id, name): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, name FROM products WHERE sku = $1")
            .bind(&demo.sku)
            .fetch_one(&db)
            .await
            .unwrap();
    let id = id.to_string();
    let initial = demo.initial_stock;
    // Twice: the second round is served from the product and page caches.
    for _ in 0..2 {
        assert_eq!(
            shown_availability(&mut client, &id, &name).await,
            [initial; 3]
        );
    }
    let listed = client
        .list_products(ListProductsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    for product in &listed {
        let expected = catalog
            .products
            .iter()
            .find(|p| p.sku == product.sku)
            .map_or(0, |p| p.initial_stock);
        assert_eq!(product.available_quantity, expected, "{}", product.sku);
    }

    // Stock moves (down, sold out, restocked): every read shows it, cached
    // copies included.
    for level in [3, 0, 11] {
        inventory.set(&demo.sku, level);
        eventually(10, "reads show the new level", || {
            let mut client = client.clone();
            let (id, name) = (id.clone(), name.clone());
            async move { shown_availability(&mut client, &id, &name).await == [level; 3] }
        })
        .await;
    }
    let database_url = service.database_url.clone();
    service.stop().await.unwrap();

    // A restart with inventory unreachable still shows the last known levels.
    let (service, mut client) = start_with(&[("DATABASE_URL", database_url.as_str())]).await;
    assert_eq!(shown_availability(&mut client, &id, &name).await, [11; 3]);
    service.stop().await.unwrap();
}

/// Reads `stream` until a message names `id`, for at most 10 s.
async fn until_named(stream: &mut tonic::Streaming<WatchCatalogResponse>, id: &str) {
    let named = async {
        loop {
            let message = stream
                .message()
                .await
                .unwrap()
                .expect("the stream stays open");
            assert!(!message.reset, "no change was missed");
            if message.product_ids.iter().any(|named| named == id) {
                return;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), named)
        .await
        .expect("a message names the product");
}

#[tokio::test]
async fn watch_catalog_names_the_products_whose_reads_changed() {
    let (inventory, service, mut client, identity) = stocked().await;
    let db = service.db().clone();
    let (id, sku): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, sku FROM products ORDER BY sku LIMIT 1")
            .fetch_one(&db)
            .await
            .unwrap();
    let id = id.to_string();

    let mut stream = client
        .watch_catalog(WatchCatalogRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.reset && first.product_ids.is_empty(), "{first:?}");

    // Its availability changes…
    inventory.set(&sku, 1);
    until_named(&mut stream, &id).await;
    // …an admin changes it…
    let admin = token(&identity, &["admin"]).await;
    client
        .update_product(authorized(
            UpdateProductRequest {
                product: Some(Product {
                    id: id.clone(),
                    name: "Renamed while watched".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
            },
            &admin,
        ))
        .await
        .unwrap();
    until_named(&mut stream, &id).await;
    // …or a write bypasses the service: every one is named.
    sqlx::query("UPDATE products SET version = version + 1 WHERE id = $1::uuid")
        .bind(&id)
        .execute(&db)
        .await
        .unwrap();
    until_named(&mut stream, &id).await;
    drop(stream);
    service.stop().await.unwrap();
}
