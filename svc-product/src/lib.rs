//! The catalog service: products and the category tree in PostgreSQL, full-text
//! and typo-tolerant search with facets, admin writes, a cache in each
//! replica's memory and in Redis that is never stale after a write, and
//! availability from svc-inventory's stock stream. Seeded with a deterministic
//! demo catalog on first start.

mod api;
mod availability;
mod cache;
mod catalog;
mod changes;
mod error;
mod product;
mod search;
mod settings;
mod stock;
mod store;

pub use settings::ProductSettings;
pub use store::seed_if_empty;

use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::product::v1::product_service_server::{
    ProductService, ProductServiceServer,
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-product",
    grpc_port: 50053,
    metrics_port: 9103,
    migrator: Some(&MIGRATOR),
    check_settings: |env| ProductSettings::from_env(env).map(drop),
    extensions: &[],
};

/// Builds the service on a prepared context: seeds the demo catalog when asked
/// (`SEED_DEMO_CATALOG`, default true) and the catalog is empty, and starts the
/// stock subscription.
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let service = product_service(&ctx).await?;
    Ok(ctx.grpc.add_service(service))
}

/// The ProductService alone, ready to be hosted (what [`build`] adds to the
/// platform's server; the search benchmark also hosts it on a bare server).
pub async fn product_service(
    ctx: &Context,
) -> anyhow::Result<ProductServiceServer<impl ProductService>> {
    let settings = ProductSettings::from_env(&ctx.env)?;
    let db = ctx.database()?;
    if settings.seed_demo_catalog {
        store::seed_if_empty(&db, &shopmesh_demo::demo_catalog()).await?;
    }
    let prefix = match settings.cache_prefix {
        Some(prefix) => prefix,
        None => format!("{}:", store::database_name(&db).await?),
    };
    let cache = cache::ProductCache::new(
        ctx.redis.clone(),
        prefix,
        settings.cache_ttl,
        settings.memory_cache_bytes,
    );
    let changes = changes::CatalogChanges::new(ctx.shutdown.clone());
    cache
        .follow(&db, changes.clone(), ctx.shutdown.clone())
        .await?;
    let store = store::Store::new(db.clone());
    let availability = availability::Availability::load(&db).await?;
    let stock = stock::StockWatch::spawn(
        store.clone(),
        cache.clone(),
        availability.clone(),
        changes.clone(),
        &settings.inventory_url,
        ctx.shutdown.clone(),
    )?;
    let rules = product::ProductRules {
        currency: settings.currency,
    };
    let api = api::ProductApi::new(store, cache, rules, stock, availability, changes);
    Ok(ProductServiceServer::new(api))
}
