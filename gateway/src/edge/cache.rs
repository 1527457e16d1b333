//! The edge cache of product pages (`GET /v1/products/{id}`): the JSON the
//! gateway answered, by product id, answered again from memory as a CDN would,
//! bounded in bytes (`GATEWAY_CACHE_MB`, evicting about the least recently
//! used page) and served for at most `GATEWAY_CACHE_TTL_SECONDS`.
//!
//! It is kept honest by svc-product's `WatchCatalog` stream, which names every
//! product whose reads changed (an admin write, a change of its available
//! quantity) as it changes ([`follow_catalog`]):
//! * a page is dropped when its product is named;
//! * a `reset` (the stream's first message, and any sent when changes may have
//!   been missed) drops every page;
//! * pages are served, and stored, **only while a stream is live**: from its
//!   first `reset` until it ends or fails. Then everything is dropped and
//!   nothing is served or stored until a new stream has delivered its reset.
//!   Without invalidations there is no caching (fail closed), so a page can
//!   trail its product only by the stream's delivery delay.
//! * A page is stored only under the id the product itself carries, the id
//!   the stream names it by: a request spelling the id otherwise (upper case)
//!   is answered but not stored, as no invalidation would ever reach it.
//!
//! Pages carry a strong ETag of their bytes; to make them the same bytes for
//! the same product on every read and replica, the JSON is written again with
//! its keys in order ([`Page::new`]).
//!
//! The race: a page read from svc-product before an invalidation, stored
//! after it, would hold the old copy for a whole TTL. So a read takes a
//! [`Ticket`] (the invalidation sequence number) before it calls upstream,
//! and its store is refused when anything that applies to its page was
//! invalidated since:
//! * every invalidation moves the sequence on and records, for each id it
//!   names, the sequence it happened at; a store whose ticket is older than
//!   its id's record is refused;
//! * a reset, or the stream's loss, moves the `floor` up to the sequence and
//!   forgets the records: a store whose ticket is below the floor is refused.
//!   So does a record grown past [`MAX_RECORDED`] ids, which keeps it bounded
//!   at the price of refusing the few stores in flight at that moment.
//!
//! That holds for the replica of svc-product that sends the stream: it
//! applies a change to its own memory before it tells the stream. Another
//! replica answering the read may hear of the same change a little later
//! (each hears PostgreSQL and inventory on its own), so a store is also
//! refused for [`SETTLE`] after its id was named, and every store for
//! [`SETTLE`] after a reset: a replica lagging by less than that cannot put
//! an old copy back.

use std::collections::HashMap;
use std::hash::Hasher as _;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use shopmesh_platform::backoff::Backoff;
use shopmesh_platform::lru::SampledLru;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{WatchCatalogRequest, WatchCatalogResponse};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Invalidations remembered id by id; past this many the record is replaced
/// by the floor.
const MAX_RECORDED: usize = 4096;
/// How long after an invalidation (of one id, or a reset) no page is stored
/// for it: the lag allowed between the replica sending the stream and the one
/// answering a read. Notifications reach every replica within milliseconds.
const SETTLE: Duration = Duration::from_secs(1);
/// Reconnecting the catalog stream; the cache serves nothing meanwhile.
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));

/// A product page as the gateway answered it.
#[derive(Clone, Debug)]
pub struct Page {
    /// The JSON body, as sent.
    pub body: Bytes,
    /// Its strong validator: `"` + 16 hex digits of a 64-bit hash + `"`. The
    /// same product has the same bytes, so the same ETag, on every read and
    /// every replica of one build.
    pub etag: String,
    /// The `id` the page carries, if it is a JSON object with one.
    product: Option<String>,
    stored: Instant,
}

impl Page {
    /// The page of the JSON a product read answered, written again with the
    /// keys of every object in order. Proto map fields (`attributes`) come
    /// out of the transcoder in hash order, which differs from read to read
    /// and replica to replica, and a strong ETag must name the bytes. (This
    /// relies on `serde_json` without `preserve_order`: its maps are sorted.)
    /// A body that is not JSON is kept as it is, and never stored.
    pub fn new(json: Bytes) -> Self {
        let value = serde_json::from_slice::<serde_json::Value>(&json).ok();
        let product = value
            .as_ref()
            .and_then(|value| value.get("id")?.as_str())
            .map(str::to_owned);
        let body = value
            .and_then(|value| serde_json::to_vec(&value).ok())
            .map_or(json, Bytes::from);
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(&body);
        Self {
            etag: format!("\"{:016x}\"", hasher.finish()),
            body,
            product,
            stored: Instant::now(),
        }
    }

    /// Whether `If-None-Match` (every value of the header) names this page:
    /// `*`, or its ETag, compared weakly as RFC 9110 asks (`W/` ignored).
    pub fn matches(&self, if_none_match: &[HeaderValue]) -> bool {
        if_none_match
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == self.etag)
    }

    /// Whether the page is the product `id`, as the catalog names it.
    fn is_product(&self, id: &str) -> bool {
        self.product.as_deref() == Some(id)
    }

    /// What the page costs the budget besides the map's own overhead.
    fn weight(&self, id: &str) -> usize {
        2 * id.len() + self.body.len() + self.etag.len()
    }
}

/// Taken before a page is read from upstream, handed back to store it: the
/// invalidation sequence number at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

struct State {
    pages: SampledLru<String, Page>,
    /// A stream has delivered its reset and has not ended since.
    live: bool,
    /// Moves on with every invalidation, reset and loss.
    sequence: u64,
    /// The sequence each id was last invalidated at, since `floor`, and when.
    invalidated: HashMap<String, (u64, Instant)>,
    /// Stores with a ticket below this are refused: everything before it was
    /// dropped at once, or forgotten id by id.
    floor: u64,
    /// When `floor` last moved: no store at all for [`SETTLE`] after.
    floored_at: Instant,
}

impl State {
    /// Drops every page and turns away every store begun before.
    fn forget_all(&mut self) {
        self.pages.clear();
        self.invalidated.clear();
        self.sequence += 1;
        self.floor = self.sequence;
        self.floored_at = Instant::now();
    }
}

/// Product pages by id; shared by every request.
pub struct EdgeCache {
    state: RwLock<State>,
    ttl: Duration,
    /// [`SETTLE`], shorter in tests.
    settle: Duration,
    /// Dropped with the cache: tells its catalog watch to stop.
    _watch: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for EdgeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeCache")
            .field("live", &self.is_live())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl EdgeCache {
    /// A cache of at most `budget` bytes serving pages for at most `ttl`; it
    /// serves nothing until [`Self::apply`] has been given a reset.
    pub fn new(budget: usize, ttl: Duration) -> Self {
        Self::settling(budget, ttl, SETTLE)
    }

    fn settling(budget: usize, ttl: Duration, settle: Duration) -> Self {
        Self {
            state: RwLock::new(State {
                pages: SampledLru::new(budget),
                live: false,
                sequence: 0,
                invalidated: HashMap::new(),
                floor: 0,
                floored_at: Instant::now(),
            }),
            ttl,
            settle,
            _watch: None,
        }
    }

    /// A cache kept in step with svc-product's `WatchCatalog` on `product`
    /// by a background task, which ends when the cache is dropped. Returns at
    /// once: the cache serves once the stream is live.
    pub fn watching(budget: usize, ttl: Duration, product: Channel) -> anyhow::Result<Arc<Self>> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|err| anyhow::anyhow!("the edge cache's catalog watch needs Tokio: {err}"))?;
        let (watch, dropped) = oneshot::channel();
        let cache = Arc::new(Self {
            _watch: Some(watch),
            ..Self::new(budget, ttl)
        });
        runtime.spawn(follow_catalog(Arc::downgrade(&cache), product, dropped));
        Ok(cache)
    }

    /// The page of product `id`, if one is held, younger than the TTL, and
    /// the stream is live.
    pub fn get(&self, id: &str) -> Option<Page> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if !state.live {
            return None;
        }
        state
            .pages
            .get(id)
            .filter(|page| page.stored.elapsed() < self.ttl)
            .cloned()
    }

    /// Take before reading a page from upstream; pass to [`Self::store`].
    pub fn ticket(&self) -> Ticket {
        Ticket(
            self.state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .sequence,
        )
    }

    /// Holds `page` for product `id` unless the stream is not live, the page
    /// is not that product, or an invalidation that applies to it came after
    /// `ticket` was taken. Whether it is held.
    pub fn store(&self, ticket: Ticket, id: &str, page: Page) -> bool {
        if !page.is_product(id) {
            return false;
        }
        let weight = page.weight(id);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let invalidated_since = ticket.0 < state.floor
            || state.floored_at.elapsed() < self.settle
            || state
                .invalidated
                .get(id)
                .is_some_and(|&(sequence, at)| sequence > ticket.0 || at.elapsed() < self.settle);
        if !state.live || invalidated_since {
            return false;
        }
        state.pages.insert(id.to_owned(), page, weight)
    }

    /// One message of the catalog stream: a reset drops everything and makes
    /// the cache live; named products are dropped. Whether the cache went live
    /// with it (it was not before).
    pub fn apply(&self, message: &WatchCatalogResponse) -> bool {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let went_live = message.reset && !state.live;
        if message.reset {
            state.forget_all();
            state.live = true;
        }
        if message.product_ids.is_empty() {
            return went_live;
        }
        state.sequence += 1;
        let (sequence, now) = (state.sequence, Instant::now());
        for id in &message.product_ids {
            state.pages.remove(id.as_str());
            state.invalidated.insert(id.clone(), (sequence, now));
        }
        if state.invalidated.len() > MAX_RECORDED {
            state.invalidated.clear();
            state.floor = sequence;
            state.floored_at = now;
        }
        went_live
    }

    /// The stream ended or failed: drop everything and serve nothing until a
    /// new stream's reset. Whether the cache was live.
    pub fn lost(&self) -> bool {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let was_live = state.live;
        state.forget_all();
        state.live = false;
        was_live
    }

    pub fn is_live(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .live
    }
}

/// How one catalog stream ended.
enum StreamEnd {
    /// The server closed it (it is shutting down).
    Closed,
    Failed(tonic::Status),
    CacheDropped,
}

/// Keeps `cache` in step with `WatchCatalog` until the cache is dropped
/// (`dropped` fires): each message applied as it comes; a stream that ends or
/// fails turns the cache off until a new one, opened after a jittered
/// backoff, has delivered its reset.
async fn follow_catalog(
    cache: Weak<EdgeCache>,
    product: Channel,
    mut dropped: oneshot::Receiver<()>,
) {
    let mut failures: u32 = 0;
    loop {
        let end = tokio::select! {
            _ = &mut dropped => return,
            end = follow_stream(&cache, product.clone(), &mut failures) => end,
        };
        let Some(was_live) = cache.upgrade().map(|cache| cache.lost()) else {
            return;
        };
        failures = failures.saturating_add(1);
        match end {
            StreamEnd::CacheDropped => return,
            StreamEnd::Closed if was_live => {
                tracing::info!("catalog stream closed: edge cache off until it is back");
            }
            StreamEnd::Failed(status) if failures == 1 => tracing::warn!(
                code = ?status.code(),
                message = status.message(),
                "catalog stream unavailable: edge cache off until it is back"
            ),
            StreamEnd::Closed | StreamEnd::Failed(_) => {
                tracing::debug!(failures, "catalog stream still unavailable");
            }
        }
        tokio::select! {
            _ = &mut dropped => return,
            () = tokio::time::sleep(RETRY.jittered(failures)) => {}
        }
    }
}

/// One `WatchCatalog` stream applied to `cache` until it ends; a reset
/// counts as success (`failures` back to 0).
async fn follow_stream(cache: &Weak<EdgeCache>, product: Channel, failures: &mut u32) -> StreamEnd {
    let mut stream = match ProductServiceClient::new(product)
        .watch_catalog(WatchCatalogRequest {})
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return StreamEnd::Failed(status),
    };
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let Some(cache) = cache.upgrade() else {
                    return StreamEnd::CacheDropped;
                };
                if cache.apply(&message) {
                    tracing::info!("catalog stream live: edge cache serving");
                }
                if message.reset {
                    *failures = 0;
                }
            }
            Ok(None) => return StreamEnd::Closed,
            Err(status) => return StreamEnd::Failed(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    fn page(id: &str, price: u32) -> Page {
        Page::new(Bytes::from(format!(
            r#"{{"id":"{id}","price":{{"amountMinor":"{price}"}}}}"#
        )))
    }

    fn reset() -> WatchCatalogResponse {
        WatchCatalogResponse {
            reset: true,
            product_ids: Vec::new(),
        }
    }

    fn changed(ids: &[&str]) -> WatchCatalogResponse {
        WatchCatalogResponse {
            reset: false,
            product_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        }
    }

    fn live_cache() -> EdgeCache {
        let cache = EdgeCache::settling(1 << 20, TTL, Duration::ZERO);
        assert!(cache.apply(&reset()));
        cache
    }

    fn body(page: Option<Page>) -> Option<Bytes> {
        page.map(|page| page.body)
    }

    #[test]
    fn nothing_is_served_or_stored_before_the_first_reset() {
        let cache = EdgeCache::settling(1 << 20, TTL, Duration::ZERO);
        assert!(!cache.is_live());
        assert!(!cache.store(cache.ticket(), "a", page("a", 100)));
        assert!(cache.get("a").is_none());
        assert!(!cache.apply(&changed(&["a"])), "only a reset makes it live");
        assert!(!cache.store(cache.ticket(), "a", page("a", 100)));

        assert!(cache.apply(&reset()));
        assert!(cache.is_live());
        assert!(cache.store(cache.ticket(), "a", page("a", 100)));
        assert_eq!(body(cache.get("a")), Some(page("a", 100).body));
        assert!(!cache.apply(&reset()), "already live");
        assert!(cache.get("a").is_none(), "a reset drops every page");
    }

    #[test]
    fn a_lost_stream_drops_everything_until_the_next_reset() {
        let cache = live_cache();
        assert!(cache.store(cache.ticket(), "a", page("a", 100)));
        let before_loss = cache.ticket();
        assert!(cache.lost());
        assert!(!cache.is_live());
        assert!(cache.get("a").is_none());
        assert!(!cache.store(cache.ticket(), "a", page("a", 100)));
        assert!(!cache.lost(), "not live any more");

        // A read begun before the loss (or while off) is not stored after the
        // new stream's reset either: it may predate changes nobody heard of.
        let while_off = cache.ticket();
        assert!(cache.apply(&reset()));
        assert!(
            cache.get("a").is_none(),
            "the reset does not bring pages back"
        );
        assert!(!cache.store(before_loss, "a", page("a", 100)));
        assert!(!cache.store(while_off, "a", page("a", 100)));
        assert!(cache.store(cache.ticket(), "a", page("a", 101)));
        assert_eq!(body(cache.get("a")), Some(page("a", 101).body));
    }

    #[test]
    fn an_invalidation_between_ticket_and_store_refuses_the_store() {
        let cache = live_cache();
        // The read of "a" began before "a" changed: its copy may be the old one.
        let ticket = cache.ticket();
        cache.apply(&changed(&["a"]));
        assert!(!cache.store(ticket, "a", page("a", 100)));
        assert!(cache.get("a").is_none());
        // Another product's change does not concern "b".
        assert!(cache.store(ticket, "b", page("b", 200)));
        // A read begun after the change stores.
        assert!(cache.store(cache.ticket(), "a", page("a", 101)));
        assert_eq!(body(cache.get("a")), Some(page("a", 101).body));

        // A later change drops the page held...
        cache.apply(&changed(&["x", "a"]));
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some());
        // ...and a reset between ticket and store refuses any store.
        let ticket = cache.ticket();
        cache.apply(&reset());
        assert!(!cache.store(ticket, "c", page("c", 300)));
    }

    /// Another replica may answer a read before it has heard of a change the
    /// stream already named: no page of that product, and none at all after
    /// a reset, is stored until the settle time has passed.
    #[test]
    fn nothing_named_is_stored_until_the_replicas_settled() {
        let settle = Duration::from_millis(200);
        let cache = EdgeCache::settling(1 << 20, TTL, settle);
        cache.apply(&reset());
        assert!(
            !cache.store(cache.ticket(), "a", page("a", 100)),
            "just reset"
        );
        std::thread::sleep(settle);
        assert!(cache.store(cache.ticket(), "a", page("a", 100)));
        cache.apply(&changed(&["a"]));
        // A read begun after the change, answered by a replica that lags.
        assert!(!cache.store(cache.ticket(), "a", page("a", 100)));
        assert!(cache.store(cache.ticket(), "b", page("b", 200)));
        std::thread::sleep(settle);
        assert!(cache.store(cache.ticket(), "a", page("a", 101)));
    }

    #[test]
    fn a_forgotten_record_still_refuses_older_stores() {
        let cache = live_cache();
        let old = cache.ticket();
        for n in 0..=MAX_RECORDED {
            cache.apply(&changed(&[&format!("id-{n}")]));
        }
        // The record of id-0 is gone, the floor stands in for it.
        assert!(cache.state.read().unwrap().invalidated.len() <= MAX_RECORDED);
        assert!(!cache.store(old, "id-0", page("id-0", 1)));
        assert!(!cache.store(old, "never-changed", page("never-changed", 1)));
        assert!(cache.store(cache.ticket(), "id-0", page("id-0", 2)));
    }

    #[test]
    fn pages_expire_after_the_ttl() {
        let cache = EdgeCache::settling(1 << 20, Duration::from_millis(30), Duration::ZERO);
        cache.apply(&reset());
        assert!(cache.store(cache.ticket(), "a", page("a", 100)));
        assert!(cache.get("a").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn only_the_product_the_page_is_is_stored_under_its_id() {
        let cache = live_cache();
        let id = "0193b4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d";
        let upper = id.to_ascii_uppercase();
        assert!(!cache.store(cache.ticket(), &upper, page(id, 100)));
        assert!(!cache.store(cache.ticket(), id, Page::new(Bytes::from("not json"))));
        assert!(!cache.store(cache.ticket(), id, page("another", 100)));
        assert!(cache.store(cache.ticket(), id, page(id, 100)));
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let one = page("id-00000", 100).weight("id-00000") + SampledLru::<String, Page>::OVERHEAD;
        let budget = 50 * one;
        let cache = EdgeCache::settling(budget, TTL, Duration::ZERO);
        cache.apply(&reset());
        for n in 0..1_000 {
            let id = format!("id-{n:05}");
            assert!(cache.store(cache.ticket(), &id, page(&id, 100)));
            assert!(cache.state.read().unwrap().pages.bytes() <= budget);
        }
        let held = (0..1_000)
            .filter(|n| cache.get(&format!("id-{n:05}")).is_some())
            .count();
        assert_eq!(held, 50);
        // A page larger than the whole budget is not held.
        let id = "big";
        let big = Page::new(Bytes::from(format!(
            r#"{{"id":"{id}","description":"{}"}}"#,
            "x".repeat(budget)
        )));
        assert!(!cache.store(cache.ticket(), id, big));
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn the_same_product_is_the_same_bytes_whatever_order_its_map_came_in() {
        let one = Page::new(Bytes::from_static(
            br#"{"id":"a","attributes":{"brand":"X","age":"12+"},"price":{"amountMinor":"1"}}"#,
        ));
        let other = Page::new(Bytes::from_static(
            br#"{"id":"a","attributes":{"age":"12+","brand":"X"},"price":{"amountMinor":"1"}}"#,
        ));
        assert_eq!(one.body, other.body);
        assert_eq!(one.etag, other.etag);
        let json: serde_json::Value = serde_json::from_slice(&one.body).unwrap();
        assert_eq!(json["attributes"]["brand"], "X");
        assert_eq!(json["id"], "a");
    }

    #[test]
    fn etags_are_strong_and_follow_the_body() {
        let (a, b) = (page("a", 100), page("a", 101));
        assert_eq!(a.etag.len(), 18);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
        assert!(a.etag[1..17].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.etag, page("a", 100).etag);
        assert_ne!(a.etag, b.etag);
    }

    #[test]
    fn if_none_match_is_compared_weakly_over_every_listed_tag() {
        let page = page("a", 100);
        let header = |value: &str| vec![HeaderValue::from_str(value).unwrap()];
        assert!(page.matches(&header(&page.etag)));
        assert!(page.matches(&header(&format!("W/{}", page.etag))));
        assert!(page.matches(&header(&format!("\"other\", {}", page.etag))));
        assert!(page.matches(&header("*")));
        assert!(!page.matches(&header("\"0000000000000000\"")));
        assert!(!page.matches(&header(page.etag.trim_matches('"'))));
        assert!(!page.matches(&[]));
        let two = vec![
            HeaderValue::from_static("\"other\""),
            HeaderValue::from_str(&page.etag).unwrap(),
        ];
        assert!(page.matches(&two));
    }
}
