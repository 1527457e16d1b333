//! Availability from svc-inventory: the stock follower of
//! `shopmesh_inventory_client` subscribed to WatchStock for every listed SKU,
//! keeping `stock_levels` (the in-stock search filter) and the in-memory
//! [`Availability`] current, telling WatchCatalog's clients which products'
//! availability changed, and dropping cached in-stock pages when a SKU sells
//! out or comes back. The SKUs are re-derived from the catalog after
//! every admin write and once a minute (writes made by other replicas).

use std::collections::BTreeSet;

use shopmesh_inventory_client::{StockFollower, StockLevel, StockSink};
use tokio_util::sync::CancellationToken;

use crate::availability::Availability;
use crate::cache::ProductCache;
use crate::changes::CatalogChanges;
use crate::store::Store;
use crate::store::stock::{apply_levels, forget_unlisted};

/// The running subscription; tell it when the catalog's SKUs may have changed.
#[derive(Clone)]
pub struct StockWatch {
    follower: StockFollower,
}

/// Where followed levels go: the table, the in-memory copy, the cache, the
/// catalog's watchers.
#[derive(Clone)]
struct CatalogStock {
    store: Store,
    cache: ProductCache,
    availability: Availability,
    changes: CatalogChanges,
}

impl StockSink for CatalogStock {
    async fn skus(&self) -> anyhow::Result<BTreeSet<String>> {
        let products = self.store.live_products().await?;
        let skus = products.keys().cloned().collect();
        self.changes.set_products(products);
        Ok(skus)
    }

    async fn retain(&self, skus: &BTreeSet<String>) {
        if let Err(err) = forget_unlisted(self.store.pool()).await {
            tracing::warn!(error = %err, "cannot forget stock of unlisted SKUs");
        }
        self.availability.retain(skus);
    }

    async fn apply(&self, levels: &[StockLevel]) -> anyhow::Result<()> {
        let stored_flips = apply_levels(self.store.pool(), levels)
            .await
            .map_err(|err| anyhow::anyhow!("cannot store stock levels: {err}"))?;
        // The table is shared, so only the first replica to store a flip sees
        // it there; each replica's own copy sees every flip, and its memory
        // tier depends on hearing them.
        let seen_flips = self.availability.record(levels);
        self.changes
            .stock_changed(levels.iter().map(|level| level.sku.as_str()));
        if (stored_flips > 0 || seen_flips > 0)
            && let Err(err) = self.cache.after_stock_change().await
        {
            tracing::warn!(error = %err, "cannot drop in-stock pages from the cache");
        }
        Ok(())
    }
}

impl StockWatch {
    /// Starts the subscription in the background until `shutdown`; it never
    /// blocks start-up and keeps retrying while inventory is unreachable.
    pub fn spawn(
        store: Store,
        cache: ProductCache,
        availability: Availability,
        changes: CatalogChanges,
        inventory_url: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let sink = CatalogStock {
            store,
            cache,
            availability,
            changes,
        };
        Ok(Self {
            follower: StockFollower::spawn(sink, inventory_url, shutdown)?,
        })
    }

    /// Re-derives the watched SKUs now (after a product was created, deleted
    /// or got another SKU).
    pub fn resync(&self) {
        self.follower.resync();
    }
}
