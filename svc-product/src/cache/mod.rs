//! The catalog cache, in two tiers in front of PostgreSQL: each replica's
//! memory ([`memory`]), then Redis, shared by the replicas ([`redis`]). A read
//! tries them in that order and fills the tiers it missed; a write updates
//! both before the admin call returns; every other replica hears of the write
//! from PostgreSQL ([`ProductCache::follow`]).
//!
//! The order of invalidation is what keeps a stale page out of memory: a
//! replica that hears of a change moves its memory's catalog generation on at
//! once (no page from before is served), then moves Redis's on, then its own
//! again, so a page copied from Redis in between, which may be from before the
//! change, is not served either.

pub mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use fred::bytes::Bytes;
use shopmesh_proto::shop::product::v1::Product;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use memory::{Known, MemoryCache, PageSlot, Ticket};
use redis::{RedisCache, RedisSlot, Stored};

use crate::changes::CatalogChanges;

pub use redis::CacheError;

/// The channel the `product_announce` trigger notifies on commit.
pub const CHANNEL: &str = "product_changed";
/// The longest memory serves an entry, however long Redis keeps it: the bound
/// on staleness should a notification be lost without the connection dropping.
const MEMORY_MAX_AGE: Duration = Duration::from_secs(60);

/// What the cache knows about one product.
#[derive(Clone, Debug, PartialEq)]
pub enum Cached {
    Product(Box<Product>),
    /// Deleted: answer as not found without asking PostgreSQL.
    Deleted,
    Miss,
}

/// Where a listing page is (or will be) cached, in each tier that is on.
#[derive(Clone, Debug)]
pub struct ListingSlot {
    memory: Option<PageSlot>,
    redis: Option<RedisSlot>,
}

/// Both tiers; clones share them.
#[derive(Clone)]
pub struct ProductCache {
    memory: MemoryCache,
    redis: RedisCache,
}

impl ProductCache {
    /// `ttl`: how long Redis keeps entries (`None`: no caching at all);
    /// `memory_budget`: the bytes each replica's memory may hold (0: no memory tier).
    pub fn new(
        redis: fred::prelude::Client,
        prefix: String,
        ttl: Option<Duration>,
        memory_budget: usize,
    ) -> Self {
        let memory = match ttl {
            Some(ttl) => MemoryCache::new(memory_budget, ttl.min(MEMORY_MAX_AGE)),
            None => MemoryCache::new(0, Duration::ZERO),
        };
        Self {
            memory,
            redis: RedisCache::new(redis, prefix, ttl),
        }
    }

    /// Hears every committed product write (and lost connections) from
    /// PostgreSQL until `shutdown`, and passes each on to `changes`. Returns
    /// once listening, so every write committed after the call is heard.
    pub async fn follow(
        &self,
        db: &PgPool,
        changes: CatalogChanges,
        shutdown: CancellationToken,
    ) -> sqlx::Result<()> {
        let heard = Arc::new(tokio::sync::Notify::new());
        let (memory, wake) = (self.memory.clone(), heard.clone());
        shopmesh_platform::db::relay_notifications(db, CHANNEL, move |payload| {
            match payload.and_then(parse_change) {
                Some((id, version)) => {
                    memory.changed(id, version);
                    changes.product_changed(id);
                }
                None => {
                    memory.forget_all();
                    changes.reset();
                }
            }
            wake.notify_one();
        })
        .await?;
        // Notify keeps one wake-up while this is busy: a burst costs one bump.
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = heard.notified() => {}
                }
                if let Err(err) = cache.redis.catalog_changed().await {
                    tracing::debug!(error = %err, "catalog generation bump skipped");
                }
                cache.memory.catalog_changed();
            }
        });
        Ok(())
    }

    /// The cached state of each of `ids`, in order, and the ticket to
    /// [`Self::fill`] the misses with.
    pub async fn products(&self, ids: &[Uuid]) -> (Vec<Cached>, Ticket) {
        let ticket = self.memory.ticket();
        let mut states = Vec::with_capacity(ids.len());
        let mut missed = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            match self.memory.product(*id) {
                Some(Known::Live(product)) => {
                    states.push(Cached::Product(Box::new((*product).clone())))
                }
                Some(Known::Deleted) => states.push(Cached::Deleted),
                None => {
                    states.push(Cached::Miss);
                    missed.push(index);
                }
            }
        }
        if missed.is_empty() {
            return (states, ticket);
        }
        let missed_ids: Vec<Uuid> = missed.iter().map(|&index| ids[index]).collect();
        let stored = self.redis.products(&missed_ids).await;
        for ((index, id), stored) in missed.into_iter().zip(missed_ids).zip(stored) {
            // A copy older than a write this replica has heard of (Redis
            // not yet updated by the writer, or a write that bypassed us) is
            // a miss: PostgreSQL has the newer one.
            states[index] = match stored {
                Stored::Product { version, product }
                    if self
                        .memory
                        .store_product(ticket, id, version, Some(&product)) =>
                {
                    Cached::Product(product)
                }
                Stored::Deleted { version }
                    if self.memory.store_product(ticket, id, version, None) =>
                {
                    Cached::Deleted
                }
                _ => Cached::Miss,
            };
        }
        (states, ticket)
    }

    /// Caches products just read from PostgreSQL after [`Self::products`]
    /// returned `ticket`, each unless a tier holds its version or a newer one.
    pub async fn fill(&self, ticket: Ticket, products: &[(i64, Product)]) {
        for (version, product) in products {
            if let Ok(id) = Uuid::parse_str(&product.id) {
                self.memory
                    .store_product(ticket, id, *version, Some(product));
            }
        }
        self.redis.fill(products).await;
    }

    /// After a committed write of `id` at `version` (`None`: deleted): both
    /// tiers hold the new copy and drop the pages cached before the write.
    pub async fn after_write(&self, id: Uuid, version: i64, product: Option<Product>) {
        self.memory.changed(id, version);
        self.memory
            .store_product(self.memory.ticket(), id, version, product.as_ref());
        self.redis.after_write(id, version, product).await;
        self.memory.catalog_changed();
    }

    /// After SKUs sold out or came back: drops cached in-stock-only pages.
    pub async fn after_stock_change(&self) -> Result<(), CacheError> {
        self.memory.stock_changed();
        let bumped = self.redis.after_stock_change().await;
        self.memory.stock_changed();
        bumped
    }

    /// Looks up a first page of `kind` (e.g. `search`) for the query with
    /// `fingerprint`. `None` when caching is off; otherwise the slot to store
    /// the page in and the page if cached.
    pub async fn listing(
        &self,
        kind: &str,
        fingerprint: &str,
        stock_sensitive: bool,
    ) -> Option<(ListingSlot, Option<Bytes>)> {
        let memory = self.memory.page_slot(kind, fingerprint, stock_sensitive);
        if let Some(page) = memory.as_ref().and_then(|slot| self.memory.page(slot)) {
            let slot = ListingSlot {
                memory,
                redis: None,
            };
            return Some((slot, Some(page)));
        }
        let (redis, page) = match self.redis.listing(kind, fingerprint, stock_sensitive).await {
            Some((slot, page)) => (Some(slot), page),
            None => (None, None),
        };
        if let (Some(slot), Some(page)) = (&memory, &page) {
            self.memory.store_page(slot, page.clone());
        }
        let slot = ListingSlot { memory, redis };
        (slot.memory.is_some() || slot.redis.is_some()).then_some((slot, page))
    }

    /// Caches a page computed for `slot`.
    pub async fn store_listing(&self, slot: &ListingSlot, page: Vec<u8>) {
        let page = Bytes::from(page);
        if let Some(memory) = &slot.memory {
            self.memory.store_page(memory, page.clone());
        }
        if let Some(redis) = &slot.redis {
            self.redis.store_listing(redis, page).await;
        }
    }
}

/// `<id>:<version>`, as the trigger writes it; `None` when unreadable (which
/// the follower treats as changes missed).
fn parse_change(payload: &str) -> Option<(Uuid, i64)> {
    let (id, version) = payload.split_once(':')?;
    Some((Uuid::parse_str(id).ok()?, version.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_payloads_are_read_or_refused() {
        let id = Uuid::now_v7();
        assert_eq!(parse_change(&format!("{id}:7")), Some((id, 7)));
        for payload in ["", "7", &format!("{id}"), &format!("{id}:x"), "x:7"] {
            assert_eq!(parse_change(payload), None, "{payload}");
        }
    }
}
