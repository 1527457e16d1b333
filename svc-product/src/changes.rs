//! WatchCatalog's fan-out: which products' reads changed, for caches in front
//! of the catalog (the gateway's edge cache). Fed by the two things a product
//! response depends on:
//! * admin writes, as every replica hears them from PostgreSQL
//!   ([`crate::cache::ProductCache::follow`]), whichever replica made them;
//! * availability, as this replica's stock follower applies inventory's
//!   levels ([`crate::stock`]), mapped from SKU to product.
//!
//! A lost LISTEN connection, or a stream that falls behind, is a reset: its
//! client drops everything it cached.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use shopmesh_platform::db::{Change, ChangeFeed};
use shopmesh_proto::shop::product::v1::WatchCatalogResponse;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::codegen::BoxStream;
use uuid::Uuid;

/// Changes a stream may fall behind by before it is reset.
const CAPACITY: usize = 1024;

/// The process-wide hub; clones share it.
#[derive(Clone)]
pub struct CatalogChanges {
    /// Each change: the products it touched.
    feed: ChangeFeed<Arc<[Uuid]>>,
    /// The live product of each SKU, as the stock follower last derived them.
    by_sku: Arc<RwLock<HashMap<String, Uuid>>>,
}

impl CatalogChanges {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            feed: ChangeFeed::detached(CAPACITY, shutdown),
            by_sku: Arc::default(),
        }
    }

    /// A committed write of `id`.
    pub fn product_changed(&self, id: Uuid) {
        self.feed.send(Some(Arc::from([id])));
    }

    /// Changes may have been missed: every stream resets.
    pub fn reset(&self) {
        self.feed.send(None);
    }

    /// The live products and their SKUs, whenever the follower derives them.
    pub fn set_products(&self, products: HashMap<String, Uuid>) {
        *self.by_sku.write().unwrap_or_else(PoisonError::into_inner) = products;
    }

    /// New availability for these SKUs: their products' reads changed.
    pub fn stock_changed<'a>(&self, skus: impl IntoIterator<Item = &'a str>) {
        let ids: Arc<[Uuid]> = {
            let by_sku = self.by_sku.read().unwrap_or_else(PoisonError::into_inner);
            skus.into_iter()
                .filter_map(|sku| by_sku.get(sku).copied())
                .collect()
        };
        if !ids.is_empty() {
            self.feed.send(Some(ids));
        }
    }

    /// One WatchCatalog stream: a reset first, then the changes as they come.
    pub fn watch(&self) -> BoxStream<WatchCatalogResponse> {
        let subscription = self.feed.subscribe();
        let changes = futures::stream::unfold(subscription, |mut subscription| async move {
            let message = match subscription.next().await {
                Change::Changed(ids) => WatchCatalogResponse {
                    reset: false,
                    product_ids: ids.iter().map(Uuid::to_string).collect(),
                },
                Change::Resync => reset_message(),
                Change::Closing => return None,
            };
            Some((Ok::<_, Status>(message), subscription))
        });
        futures::stream::once(async { Ok(reset_message()) })
            .chain(changes)
            .boxed()
    }
}

/// The message that tells a client to drop everything it cached.
fn reset_message() -> WatchCatalogResponse {
    WatchCatalogResponse {
        reset: true,
        product_ids: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_start_with_a_reset_then_name_the_changed_products() {
        let shutdown = CancellationToken::new();
        let changes = CatalogChanges::new(shutdown.clone());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        changes.set_products(HashMap::from([
            ("SKU-A".to_owned(), a),
            ("SKU-B".to_owned(), b),
        ]));
        let mut stream = changes.watch();
        let mut next = async || stream.next().await.unwrap().unwrap();
        assert!(next().await.reset);
        changes.product_changed(a);
        changes.stock_changed(["SKU-B", "SKU-UNLISTED", "SKU-A"]);
        changes.stock_changed(["SKU-UNLISTED"]);
        changes.reset();
        let first = next().await;
        assert_eq!(
            (first.reset, first.product_ids),
            (false, vec![a.to_string()])
        );
        let second = next().await;
        assert_eq!(second.product_ids, vec![b.to_string(), a.to_string()]);
        assert!(next().await.reset, "an unlisted SKU alone sends nothing");
        shutdown.cancel();
        assert!(stream.next().await.is_none());
    }
}
