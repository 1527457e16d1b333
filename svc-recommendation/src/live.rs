//! What may be recommended right now, in memory: the live catalog (products
//! not deleted, with their SKU and category) and the available stock of each
//! SKU, followed from svc-inventory's WatchStock (`shopmesh_inventory_client`).
//!
//! The catalog comes from svc-product at every training and every
//! `RECOMMENDATION_CATALOG_REFRESH_SECONDS` in between (so a deleted product
//! stops being recommended within that time); until the first read succeeds,
//! the served model's own product list stands in. A SKU inventory has not
//! reported counts as sold out, as in svc-product.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use shopmesh_inventory_client::{StockFollower, StockLevel, StockLevels, StockSink};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogClient, root_of};
use crate::model::Model;

/// How soon a failed catalog read is tried again.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveProduct {
    pub sku: String,
    pub category: Uuid,
}

/// The live catalog at one moment.
#[derive(Clone, Debug, Default)]
pub struct LiveCatalog {
    products: HashMap<Uuid, LiveProduct>,
    parents: HashMap<Uuid, Option<Uuid>>,
    /// Read from svc-product (rather than taken from a model).
    pub from_catalog: bool,
}

impl LiveCatalog {
    pub fn from_catalog(catalog: &Catalog) -> Self {
        Self {
            products: catalog
                .products
                .iter()
                .map(|p| {
                    (
                        p.id,
                        LiveProduct {
                            sku: p.sku.clone(),
                            category: p.category_id,
                        },
                    )
                })
                .collect(),
            parents: catalog.parents(),
            from_catalog: true,
        }
    }

    /// The catalog a model was trained on, until svc-product has been read.
    pub fn from_model(model: &Model) -> Self {
        let mut parents = HashMap::new();
        let products = model
            .products
            .iter()
            .map(|p| {
                parents.insert(p.root, None);
                if p.category != p.root {
                    parents.insert(p.category, Some(p.root));
                }
                (
                    p.id,
                    LiveProduct {
                        sku: p.sku.clone(),
                        category: p.category,
                    },
                )
            })
            .collect();
        Self {
            products,
            parents,
            from_catalog: false,
        }
    }

    pub fn product(&self, id: Uuid) -> Option<&LiveProduct> {
        self.products.get(&id)
    }

    pub fn root_of(&self, category: Uuid) -> Uuid {
        root_of(&self.parents, category)
    }

    pub fn skus(&self) -> BTreeSet<String> {
        self.products.values().map(|p| p.sku.clone()).collect()
    }
}

/// The live catalog and stock, shared by the API and the background tasks.
#[derive(Default)]
pub struct Live {
    catalog: RwLock<Arc<LiveCatalog>>,
    stock: StockLevels,
    follower: OnceLock<StockFollower>,
}

impl Live {
    pub fn catalog(&self) -> Arc<LiveCatalog> {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn stock(&self) -> &StockLevels {
        &self.stock
    }

    /// Replaces the live catalog and re-derives the SKUs followed.
    pub fn replace(&self, catalog: LiveCatalog) {
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
        if let Some(follower) = self.follower.get() {
            follower.resync();
        }
    }

    /// Takes a model's catalog when svc-product has not been read yet.
    pub fn adopt_model(&self, model: &Model) {
        if !self.catalog().from_catalog {
            self.replace(LiveCatalog::from_model(model));
        }
    }

    /// Starts following the stock of the live catalog's SKUs.
    pub fn follow_stock(
        self: &Arc<Self>,
        inventory_url: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let follower = StockFollower::spawn(LiveStock(self.clone()), inventory_url, shutdown)?;
        let _ = self.follower.set(follower);
        Ok(())
    }

    /// Reads the catalog from svc-product now and then every `every` (every
    /// few seconds while it cannot be read) until `shutdown`.
    pub fn refresh_catalog(
        self: &Arc<Self>,
        client: CatalogClient,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let live = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::ZERO;
            let mut failing = false;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                match client.fetch().await {
                    Ok(catalog) => {
                        live.replace(LiveCatalog::from_catalog(&catalog));
                        (wait, failing) = (every, false);
                    }
                    Err(err) => {
                        if !failing {
                            tracing::warn!(error = %err, "cannot read the live catalog; retrying");
                        }
                        (wait, failing) = (every.min(RETRY), true);
                    }
                }
            }
        });
    }
}

/// Stock levels go into memory only: a restarted replica gets them again
/// from WatchStock's first messages.
#[derive(Clone)]
struct LiveStock(Arc<Live>);

impl StockSink for LiveStock {
    async fn skus(&self) -> anyhow::Result<BTreeSet<String>> {
        Ok(self.0.catalog().skus())
    }

    async fn retain(&self, skus: &BTreeSet<String>) {
        self.0.stock.retain(skus);
    }

    async fn apply(&self, levels: &[StockLevel]) -> anyhow::Result<()> {
        self.0.stock.record(levels);
        Ok(())
    }
}
