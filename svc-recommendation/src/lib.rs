//! The recommendation service: similar products, products bought together and
//! personal recommendations, from a model trained on confirmed orders and the
//! catalog (docs/recommendations.md).
//!
//! A consumer in group `svc-recommendation` records purchases from
//! `shop.order.events` (inbox: each counts once). A trainer builds a model
//! snapshot from them and the catalog (svc-product) at start when none exists,
//! on a schedule and on TrainModel, one replica at a time; it is persisted in
//! PostgreSQL, so restarts and other replicas serve it at once. Requests are
//! answered from memory, filtered by the live catalog and by availability
//! followed from svc-inventory's WatchStock.

pub mod algo;
mod api;
mod catalog;
pub mod consumer;
mod content;
mod error;
pub mod evaluate;
mod live;
mod model;
pub mod settings;
mod snapshot;
mod store;
mod trainer;

use std::sync::Arc;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::{Context, GrpcServer, ServiceSpec};
use shopmesh_proto::shop::recommendation::v1::recommendation_service_server::RecommendationServiceServer;

pub use settings::RecommendationSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "svc-recommendation",
    grpc_port: 50059,
    metrics_port: 9109,
    migrator: Some(&MIGRATOR),
    check_settings: |env| RecommendationSettings::from_env(env).map(drop),
    extensions: &[&shopmesh_events::EVENTS],
};

/// Builds the service on a prepared context: serves the newest persisted
/// model at once, seeds the demo history when asked and the purchase table is
/// empty, and starts the consumer, the trainer, the model follower, the
/// catalog refresh and the stock follower (all until `ctx.shutdown`).
pub async fn build(ctx: Context) -> anyhow::Result<GrpcServer> {
    let db = ctx.database()?;
    let settings = RecommendationSettings::from_env(&ctx.env)?;
    let credentials = ServiceCredentials::new(SPEC.name, &ctx.settings.auth.internal_token)?;
    let store = store::Store::new(db.clone());
    let catalog = catalog::CatalogClient::connect(&settings.product_url, credentials)?;
    let cell = Arc::new(trainer::ModelCell::default());
    let live = Arc::new(live::Live::default());
    let params = model::TrainParams {
        personal: algo::PersonalParams {
            max_items: settings.personal_max_items,
            ..model::TrainParams::default().personal
        },
        ..model::TrainParams::default()
    };
    let trainer = trainer::Trainer::new(
        store.clone(),
        catalog.clone(),
        cell.clone(),
        live.clone(),
        params,
    );
    if let Err(err) = trainer.load_newer().await {
        tracing::warn!(error = %err, "cannot load the persisted model; training a new one");
    }
    if settings.seed_demo_orders {
        let orders: Vec<store::OrderRecord> = shopmesh_demo::demo_orders()
            .into_iter()
            .map(|order| store::OrderRecord {
                order_id: order.id,
                user_id: order.user_id,
                at: order.confirmed_at,
                lines: order
                    .lines
                    .into_iter()
                    .map(|line| store::PurchaseLine {
                        product_id: line.product_id,
                        quantity: line.quantity,
                    })
                    .collect(),
            })
            .collect();
        if store.seed_if_empty(&orders).await? {
            tracing::info!(orders = orders.len(), "demo purchase history seeded");
        }
    }
    live.follow_stock(&settings.inventory_url, ctx.shutdown.clone())?;
    live.refresh_catalog(
        catalog.clone(),
        settings.catalog_refresh,
        ctx.shutdown.clone(),
    );
    trainer
        .follow(settings.model_poll, ctx.shutdown.clone())
        .await?;
    trainer.run(settings.train_interval, ctx.shutdown.clone());
    shopmesh_events::start_consumer(
        &ctx,
        &settings.consumer_group,
        consumer::TOPICS,
        consumer::PurchaseRecorder,
        |c| c,
    )?;
    let api = api::RecommendationApi {
        cell,
        live,
        store,
        catalog,
        trainer,
    };
    Ok(ctx.grpc.add_service(RecommendationServiceServer::new(api)))
}
