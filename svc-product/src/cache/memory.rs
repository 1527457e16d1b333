//! The catalog in each replica's memory, in front of the Redis tier: products
//! by id and the first pages of listings and searches, bounded in bytes
//! (`PRODUCT_MEMORY_CACHE_MB`), so a warm read is a hash lookup and a copy,
//! with no round trip at all.
//!
//! Every replica hears of every committed write: the `product_announce`
//! trigger notifies `product_changed` with `<id>:<version>` inside the writing
//! transaction, and PostgreSQL delivers it on commit to each replica's LISTEN
//! connection ([`super::ProductCache::follow`]). Hearing it,
//! * the product is marked changed at that version: neither its old copy nor
//!   a read that loaded the old copy before the commit and stores it after
//!   the notification can be served again, as every store is checked against
//!   the version held ([`MemoryCache::store_product`]);
//! * the catalog generation moves on; pages are stored under the generation
//!   current when their read began, and one stored under an older generation
//!   is never served.
//!
//! Pages of in-stock-only searches also carry the stock generation, moved on
//! when this replica's own copy of availability sees a SKU sell out or come
//! back. A LISTEN connection that was lost (notifications may have been
//! missed) empties the cache and turns away every fill begun before
//! ([`Ticket`]). As a last bound, should a notification never arrive, entries
//! are served for at most `max_age`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use fred::bytes::Bytes;
use prost::Message;
use shopmesh_platform::lru::SampledLru;
use shopmesh_platform::metrics::cache_lookup;
use shopmesh_proto::shop::product::v1::Product;
use uuid::Uuid;

/// The share of the budget that pages may use; products get the rest.
const PAGES_SHARE: usize = 2;

/// What memory holds for a product.
#[derive(Clone, Debug, PartialEq)]
pub enum Known {
    Live(Arc<Product>),
    Deleted,
}

#[derive(Clone, Debug)]
enum State {
    Known(Known),
    /// A write committed at the entry's version; its copy is not here yet.
    Changed,
}

#[derive(Debug)]
struct Entry {
    version: i64,
    state: State,
    stored: Instant,
}

#[derive(Debug)]
struct Page {
    catalog: u64,
    stock: Option<u64>,
    bytes: Bytes,
    stored: Instant,
}

/// Taken before a read of Redis or PostgreSQL; a fill with a ticket from
/// before the cache was emptied is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// Where a page read from elsewhere (or computed) is stored: under the
/// generations current when the read began.
#[derive(Clone, Debug)]
pub struct PageSlot {
    key: String,
    catalog: u64,
    stock: Option<u64>,
}

struct Inner {
    products: RwLock<SampledLru<Uuid, Entry>>,
    pages: RwLock<SampledLru<String, Page>>,
    /// Moved on when the cache is emptied.
    epoch: AtomicU64,
    catalog: AtomicU64,
    stock: AtomicU64,
    max_age: Duration,
}

/// The in-memory tier; clones share it. Built with a budget of 0 it holds nothing.
#[derive(Clone)]
pub struct MemoryCache {
    inner: Option<Arc<Inner>>,
}

impl MemoryCache {
    /// A cache of at most `budget` bytes, serving entries for at most `max_age`.
    pub fn new(budget: usize, max_age: Duration) -> Self {
        let inner = (budget > 0).then(|| {
            let pages = budget / PAGES_SHARE;
            Arc::new(Inner {
                products: RwLock::new(SampledLru::new(budget - pages)),
                pages: RwLock::new(SampledLru::new(pages)),
                epoch: AtomicU64::new(0),
                catalog: AtomicU64::new(0),
                stock: AtomicU64::new(0),
                max_age,
            })
        });
        Self { inner }
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(
            self.inner
                .as_ref()
                .map_or(0, |inner| inner.epoch.load(Ordering::Acquire)),
        )
    }

    /// What memory holds for `id`; `None` on a miss.
    pub fn product(&self, id: Uuid) -> Option<Known> {
        let inner = self.inner.as_ref()?;
        let known = {
            let products = inner
                .products
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match products.get(&id) {
                Some(Entry {
                    state: State::Known(known),
                    stored,
                    ..
                }) if stored.elapsed() < inner.max_age => Some(known.clone()),
                _ => None,
            }
        };
        cache_lookup("product_memory", known.is_some());
        known
    }

    /// Stores what a read found for `id` at `version` (`None`: deleted),
    /// unless memory holds a newer version, or the same one, or the cache was
    /// emptied since `ticket` was taken. False when the copy is older than a
    /// version memory knows of (held, or announced by a write), or the cache
    /// was emptied: the reader should not trust it.
    pub fn store_product(
        &self,
        ticket: Ticket,
        id: Uuid,
        version: i64,
        product: Option<&Product>,
    ) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let state = State::Known(match product {
            Some(product) => Known::Live(Arc::new(product.clone())),
            None => Known::Deleted,
        });
        // Decoded, a product takes about twice its encoded size.
        let weight = product.map_or(0, |product| {
            2 * product.encoded_len() + std::mem::size_of::<Product>()
        });
        let mut products = inner
            .products
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if inner.epoch.load(Ordering::Acquire) != ticket.0 {
            return false;
        }
        let (fresher, current) = match products.peek(&id) {
            None => (true, true),
            // The copy of a version announced as changed is the one awaited.
            Some(held) => match held.state {
                State::Changed => (version >= held.version, version >= held.version),
                State::Known(_) => (version > held.version, version >= held.version),
            },
        };
        if fresher {
            let entry = Entry {
                version,
                state,
                stored: Instant::now(),
            };
            products.insert(id, entry, weight);
        }
        current
    }

    /// A write of `id` committed at `version`: whatever memory holds from
    /// before it is no longer served or stored.
    pub fn changed(&self, id: Uuid, version: i64) {
        let Some(inner) = &self.inner else { return };
        {
            let mut products = inner
                .products
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if products.peek(&id).is_none_or(|held| held.version < version) {
                let entry = Entry {
                    version,
                    state: State::Changed,
                    stored: Instant::now(),
                };
                products.insert(id, entry, 0);
            }
        }
        self.catalog_changed();
    }

    /// The catalog changed: pages stored before are no longer served.
    pub fn catalog_changed(&self) {
        if let Some(inner) = &self.inner {
            inner.catalog.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A SKU sold out or came back: in-stock pages stored before are no
    /// longer served.
    pub fn stock_changed(&self) {
        if let Some(inner) = &self.inner {
            inner.stock.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Changes may have been missed: drops everything, and every fill begun
    /// before.
    pub fn forget_all(&self) {
        let Some(inner) = &self.inner else { return };
        let mut products = inner
            .products
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        inner.epoch.fetch_add(1, Ordering::AcqRel);
        products.clear();
        inner
            .pages
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.catalog_changed();
        self.stock_changed();
    }

    /// Where the first page of `kind` for the query with `fingerprint` is
    /// stored, under the generations current now; `None` when off.
    pub fn page_slot(
        &self,
        kind: &str,
        fingerprint: &str,
        stock_sensitive: bool,
    ) -> Option<PageSlot> {
        let inner = self.inner.as_ref()?;
        Some(PageSlot {
            key: format!("{kind}:{fingerprint}"),
            catalog: inner.catalog.load(Ordering::Acquire),
            stock: stock_sensitive.then(|| inner.stock.load(Ordering::Acquire)),
        })
    }

    /// The page stored for `slot`, if stored under its generations.
    pub fn page(&self, slot: &PageSlot) -> Option<Bytes> {
        let inner = self.inner.as_ref()?;
        let page = {
            let pages = inner.pages.read().unwrap_or_else(PoisonError::into_inner);
            pages
                .get(slot.key.as_str())
                .filter(|page| {
                    page.catalog == slot.catalog
                        && page.stock == slot.stock
                        && page.stored.elapsed() < inner.max_age
                })
                .map(|page| page.bytes.clone())
        };
        cache_lookup("product_list_memory", page.is_some());
        page
    }

    /// Stores a page read or computed for `slot`, unless the generations
    /// moved on since the slot was taken.
    pub fn store_page(&self, slot: &PageSlot, bytes: Bytes) {
        let Some(inner) = &self.inner else { return };
        let current = slot.catalog == inner.catalog.load(Ordering::Acquire)
            && slot
                .stock
                .is_none_or(|stock| stock == inner.stock.load(Ordering::Acquire));
        if !current {
            return;
        }
        let weight = slot.key.len() + bytes.len();
        let page = Page {
            catalog: slot.catalog,
            stock: slot.stock,
            bytes,
            stored: Instant::now(),
        };
        inner
            .pages
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(slot.key.clone(), page, weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(id: Uuid, name: &str) -> Product {
        Product {
            id: id.to_string(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn live(id: Uuid, name: &str) -> Option<Known> {
        Some(Known::Live(Arc::new(named(id, name))))
    }

    fn cache() -> MemoryCache {
        MemoryCache::new(1 << 20, Duration::from_secs(60))
    }

    #[test]
    fn newer_versions_replace_older_ones_never_the_reverse() {
        let cache = cache();
        let id = Uuid::now_v7();
        assert_eq!(cache.product(id), None);
        cache.store_product(cache.ticket(), id, 2, Some(&named(id, "v2")));
        cache.store_product(cache.ticket(), id, 1, Some(&named(id, "v1")));
        assert_eq!(cache.product(id), live(id, "v2"));
        cache.store_product(cache.ticket(), id, 3, None);
        cache.store_product(cache.ticket(), id, 2, Some(&named(id, "v2")));
        assert_eq!(cache.product(id), Some(Known::Deleted));
    }

    /// The race the marks exist for: a read loads version 1, another replica
    /// commits version 2 and its notification arrives, then the read stores.
    #[test]
    fn a_read_that_loaded_before_a_change_cannot_store_after_it() {
        let cache = cache();
        let id = Uuid::now_v7();
        cache.store_product(cache.ticket(), id, 1, Some(&named(id, "v1")));
        let ticket = cache.ticket();
        cache.changed(id, 2);
        assert_eq!(cache.product(id), None, "the old copy is not served");
        assert!(!cache.store_product(ticket, id, 1, Some(&named(id, "v1"))));
        assert_eq!(cache.product(id), None, "nor stored again");
        assert!(cache.store_product(ticket, id, 2, Some(&named(id, "v2"))));
        assert_eq!(cache.product(id), live(id, "v2"));
        // The same version again is current, though not stored twice.
        assert!(cache.store_product(ticket, id, 2, Some(&named(id, "v2"))));
        // A notification of a version memory already holds changes nothing.
        cache.changed(id, 2);
        assert_eq!(cache.product(id), live(id, "v2"));
        // One for a product memory never held is remembered too.
        let other = Uuid::now_v7();
        let ticket = cache.ticket();
        cache.changed(other, 5);
        cache.store_product(ticket, other, 4, Some(&named(other, "v4")));
        assert_eq!(cache.product(other), None);
    }

    #[test]
    fn forgetting_all_turns_away_fills_begun_before() {
        let cache = cache();
        let id = Uuid::now_v7();
        cache.store_product(cache.ticket(), id, 1, Some(&named(id, "v1")));
        let slot = cache.page_slot("list", "q", false).unwrap();
        cache.store_page(&slot, Bytes::from_static(b"page"));
        let ticket = cache.ticket();
        cache.forget_all();
        assert_eq!(cache.product(id), None);
        assert_eq!(cache.page(&slot), None);
        assert!(!cache.store_product(ticket, id, 1, Some(&named(id, "v1"))));
        assert_eq!(cache.product(id), None);
        cache.store_product(cache.ticket(), id, 1, Some(&named(id, "v1")));
        assert_eq!(cache.product(id), live(id, "v1"));
    }

    #[test]
    fn pages_are_served_only_under_the_generations_they_were_read_in() {
        let cache = cache();
        let plain = cache.page_slot("list", "q", false).unwrap();
        let in_stock = cache.page_slot("search", "q", true).unwrap();
        cache.store_page(&plain, Bytes::from_static(b"plain"));
        cache.store_page(&in_stock, Bytes::from_static(b"in stock"));
        let again = |kind, stock| cache.page(&cache.page_slot(kind, "q", stock).unwrap());
        assert_eq!(again("list", false).as_deref(), Some(&b"plain"[..]));
        assert_eq!(again("search", true).as_deref(), Some(&b"in stock"[..]));
        // Stock flips drop in-stock pages only.
        cache.stock_changed();
        assert_eq!(again("list", false).as_deref(), Some(&b"plain"[..]));
        assert_eq!(again("search", true), None);
        // A page computed while the catalog changed is not stored.
        let slot = cache.page_slot("list", "q", false).unwrap();
        cache.changed(Uuid::now_v7(), 1);
        cache.store_page(&slot, Bytes::from_static(b"stale"));
        assert_eq!(again("list", false), None);
    }

    #[test]
    fn entries_are_served_for_at_most_max_age() {
        let cache = MemoryCache::new(1 << 20, Duration::ZERO);
        let id = Uuid::now_v7();
        cache.store_product(cache.ticket(), id, 1, Some(&named(id, "v1")));
        assert_eq!(cache.product(id), None);
        let slot = cache.page_slot("list", "q", false).unwrap();
        cache.store_page(&slot, Bytes::from_static(b"page"));
        assert_eq!(cache.page(&slot), None);
    }

    #[test]
    fn a_zero_budget_holds_nothing() {
        let cache = MemoryCache::new(0, Duration::from_secs(60));
        let id = Uuid::now_v7();
        cache.store_product(cache.ticket(), id, 1, Some(&named(id, "v1")));
        assert_eq!(cache.product(id), None);
        assert!(cache.page_slot("list", "q", false).is_none());
    }
}
