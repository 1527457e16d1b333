//! The shared tier of the catalog cache, in Redis: single products and the
//! first pages of listings and searches, each for `PRODUCT_CACHE_TTL_SECONDS`,
//! never stale after an admin change. Every replica reads it on a miss in its
//! own memory ([`super::memory`]).
//!
//! * A product is cached at `<prefix>product:v1:<id>` as `<version>:P<prost
//!   bytes of Product>`, or `<version>:D` once deleted. Every write to Redis goes
//!   through one Lua script that refuses to replace a copy with an older or
//!   equal version, so a read that loaded version 1 from PostgreSQL before an
//!   update committed version 2 cannot put version 1 back, in whichever order
//!   the two reach Redis. After each committed write the new copy (or the
//!   tombstone) is written through before the admin call returns.
//! * Listing pages are cached under keys that contain the catalog generation
//!   `<prefix>product:gen`, which every committed write increments: a page
//!   cached before a write is never read after it, whatever it contains.
//!   Searches filtered to products in stock also carry the stock generation
//!   `<prefix>product:stock_gen`, incremented when a SKU sells out or returns.
//!
//! Redis is an optimisation, never a dependency: every call is bounded by a
//! short timeout and skipped while the client is disconnected, and callers
//! fall back to PostgreSQL. An invalidation that fails is retried in the
//! background until the TTL has passed (by then any stale copy has expired).

use std::future::Future;
use std::time::Duration;

use fred::bytes::Bytes;
use fred::prelude::{KeysInterface, LuaInterface, Value};
use prost::Message;
use shopmesh_platform::backoff::Backoff;
use shopmesh_platform::metrics::cache_lookup;
use shopmesh_proto::shop::product::v1::Product;
use uuid::Uuid;

/// How long a cache read or fill may take before the caller gives up on Redis.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// Invalidation after a write may wait longer: the reads that follow depend on it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS[1] = entry; ARGV = version, entry bytes, TTL in milliseconds.
/// 1 when stored, 0 when the entry already holds that version or a newer one.
const STORE_IF_NEWER: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '^(%d+):'))
  if version and version >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// KEYS = generation counters; ARGV = the value a missing counter starts at,
/// its lifetime in milliseconds. A counter starts at the current time in
/// microseconds, so one that expired or was lost (evicted, flushed) never comes
/// back to a generation that pages are cached under; that is also why counters
/// may expire (a day after the last write), and a catalog gone quiet leaves no keys.
const GENERATIONS: &str = r"
local generations = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2])
  generations[i] = redis.call('GET', key)
end
return generations
";

/// KEYS[1] = a generation counter; ARGV as for GENERATIONS.
const BUMP: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local generation = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return generation
";

/// How long a generation counter outlives the last write (see GENERATIONS).
const GENERATION_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

pub use shopmesh_platform::redis::BoundedError as CacheError;

/// What Redis holds for one product.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    Product {
        version: i64,
        product: Box<Product>,
    },
    /// Deleted: answer as not found without asking PostgreSQL.
    Deleted {
        version: i64,
    },
    Miss,
}

/// Where a listing page is (or will be) cached.
#[derive(Clone, Debug)]
pub struct RedisSlot {
    key: String,
}

/// The Redis tier, shared by every replica (cloning shares the connection).
#[derive(Clone)]
pub struct RedisCache {
    redis: fred::prelude::Client,
    /// Keeps catalogs that share a Redis apart (by default the database name).
    prefix: String,
    /// `None` turns caching off.
    ttl: Option<Duration>,
}

impl RedisCache {
    pub fn new(redis: fred::prelude::Client, prefix: String, ttl: Option<Duration>) -> Self {
        Self { redis, prefix, ttl }
    }

    pub fn product_key(&self, id: Uuid) -> String {
        format!("{}product:v1:{id}", self.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}product:gen", self.prefix)
    }

    fn stock_generation_key(&self) -> String {
        format!("{}product:stock_gen", self.prefix)
    }

    /// The cached state of each of `ids`, in order; all misses when Redis fails.
    pub async fn products(&self, ids: &[Uuid]) -> Vec<Stored> {
        if self.ttl.is_none() || ids.is_empty() {
            return vec![Stored::Miss; ids.len()];
        }
        let keys: Vec<String> = ids.iter().map(|id| self.product_key(*id)).collect();
        let found = match self
            .bounded(READ_TIMEOUT, self.redis.mget::<Value, _>(keys))
            .await
        {
            Ok(Value::Array(values)) => values,
            // MGET of one key may come back unwrapped.
            Ok(single) if ids.len() == 1 => vec![single],
            Ok(other) => {
                tracing::warn!(?other, "unexpected MGET reply");
                Vec::new()
            }
            Err(err) => {
                tracing::debug!(error = %err, "product cache read skipped");
                Vec::new()
            }
        };
        let mut states = Vec::with_capacity(ids.len());
        for index in 0..ids.len() {
            let state = found
                .get(index)
                .cloned()
                .and_then(Value::into_bytes)
                .map_or(Stored::Miss, |bytes| decode_entry(&bytes));
            cache_lookup("product", state != Stored::Miss);
            states.push(state);
        }
        states
    }

    /// Caches products just read from PostgreSQL, each unless the cache already
    /// holds its version or a newer one. Failures only cost a later miss.
    pub async fn fill(&self, products: &[(i64, Product)]) {
        if self.ttl.is_none() || products.is_empty() {
            return;
        }
        let writes = products.iter().map(|(version, product)| {
            self.store_if_newer(product_id(product), *version, Some(product), READ_TIMEOUT)
        });
        for result in futures::future::join_all(writes).await {
            if let Err(err) = result {
                tracing::debug!(error = %err, "product cache fill skipped");
                break;
            }
        }
    }

    /// After a committed write of `id` at `version` (`None`: deleted): the new
    /// copy replaces any older one, and listing pages cached before the write
    /// are dropped. Returns once both are done, or hands a failure to a
    /// background retry.
    pub async fn after_write(&self, id: Uuid, version: i64, product: Option<Product>) {
        let Some(ttl) = self.ttl else { return };
        let (entry, generation) = tokio::join!(
            self.store_if_newer(id, version, product.as_ref(), WRITE_TIMEOUT),
            self.bump(self.generation_key()),
        );
        if let Err(err) = &entry {
            tracing::warn!(error = %err, %id, "product cache write-through failed; retrying");
            let cache = self.clone();
            let product = product.clone();
            retry_for(ttl, move || {
                let (cache, product) = (cache.clone(), product.clone());
                async move {
                    cache
                        .store_if_newer(id, version, product.as_ref(), WRITE_TIMEOUT)
                        .await
                        .map(drop)
                }
            });
        }
        if let Err(err) = &generation {
            tracing::warn!(error = %err, "catalog generation bump failed; retrying");
            let cache = self.clone();
            retry_for(ttl, move || {
                let cache = cache.clone();
                async move { cache.bump(cache.generation_key()).await.map(drop) }
            });
        }
    }

    /// After SKUs sold out or came back: drops cached in-stock-only pages.
    pub async fn after_stock_change(&self) -> Result<(), CacheError> {
        if self.ttl.is_none() {
            return Ok(());
        }
        self.bump(self.stock_generation_key()).await.map(drop)
    }

    /// Another replica's write (or writes that may have been missed): drops
    /// listing pages cached before now.
    pub async fn catalog_changed(&self) -> Result<(), CacheError> {
        if self.ttl.is_none() {
            return Ok(());
        }
        self.bump(self.generation_key()).await.map(drop)
    }

    /// Looks up a first page of `kind` (e.g. `search`) for the query with
    /// `fingerprint`. `None` when caching is off or Redis fails; otherwise the
    /// slot to store the page in and the page if cached.
    pub async fn listing(
        &self,
        kind: &str,
        fingerprint: &str,
        stock_sensitive: bool,
    ) -> Option<(RedisSlot, Option<Bytes>)> {
        self.ttl?;
        let result = async {
            let mut keys = vec![self.generation_key()];
            if stock_sensitive {
                keys.push(self.stock_generation_key());
            }
            let generations: Vec<String> = self
                .bounded(
                    READ_TIMEOUT,
                    self.redis.eval(GENERATIONS, keys, generation_args()),
                )
                .await?;
            let key = format!(
                "{}product:list:v1:{kind}:{}:{fingerprint}",
                self.prefix,
                generations.join(":")
            );
            let page: Option<Bytes> = self.bounded(READ_TIMEOUT, self.redis.get(&key)).await?;
            Ok::<_, CacheError>((RedisSlot { key }, page))
        }
        .await;
        match result {
            Ok((slot, page)) => {
                cache_lookup("product_list", page.is_some());
                Some((slot, page))
            }
            Err(err) => {
                tracing::debug!(error = %err, "listing cache read skipped");
                cache_lookup("product_list", false);
                None
            }
        }
    }

    /// Caches a page computed for `slot`.
    pub async fn store_listing(&self, slot: &RedisSlot, page: Bytes) {
        let Some(ttl) = self.ttl else { return };
        let stored: Result<(), CacheError> = self
            .bounded(
                READ_TIMEOUT,
                self.redis.set(
                    slot.key.as_str(),
                    Value::Bytes(page),
                    Some(fred::prelude::Expiration::PX(millis(ttl))),
                    None,
                    false,
                ),
            )
            .await;
        if let Err(err) = stored {
            tracing::debug!(error = %err, "listing cache fill skipped");
        }
    }

    async fn store_if_newer(
        &self,
        id: Uuid,
        version: i64,
        product: Option<&Product>,
        timeout: Duration,
    ) -> Result<bool, CacheError> {
        let ttl = self.ttl.unwrap_or_default();
        let args = vec![
            Value::from(version),
            Value::Bytes(encode_entry(version, product).into()),
            Value::from(millis(ttl)),
        ];
        let stored: i64 = self
            .bounded(
                timeout,
                self.redis.eval(STORE_IF_NEWER, self.product_key(id), args),
            )
            .await?;
        Ok(stored == 1)
    }

    async fn bump(&self, key: String) -> Result<i64, CacheError> {
        self.bounded(WRITE_TIMEOUT, self.redis.eval(BUMP, key, generation_args()))
            .await
    }

    /// Runs one command unless Redis is known to be down, for at most `timeout`.
    /// A command cut off here may still run later; version checks and
    /// generation keys keep that harmless.
    async fn bounded<T>(
        &self,
        timeout: Duration,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        shopmesh_platform::redis::bounded(&self.redis, timeout, command).await
    }
}

fn product_id(product: &Product) -> Uuid {
    Uuid::parse_str(&product.id).unwrap_or_default()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// A missing generation counter starts now, in microseconds, and lives a day.
fn generation_args() -> Vec<Value> {
    vec![
        Value::from(chrono::Utc::now().timestamp_micros()),
        Value::from(millis(GENERATION_LIFETIME)),
    ]
}

/// `<version>:P<prost bytes>` for a product, `<version>:D` for a deleted one.
pub fn encode_entry(version: i64, product: Option<&Product>) -> Vec<u8> {
    let mut entry = format!("{version}:").into_bytes();
    match product {
        Some(product) => {
            entry.push(b'P');
            product.encode(&mut entry).unwrap_or_default();
        }
        None => entry.push(b'D'),
    }
    entry
}

/// The state an entry records; an entry that does not decode (written by
/// another release, damaged) is a miss, and the next write replaces it.
pub fn decode_entry(entry: &[u8]) -> Stored {
    let Some(colon) = entry.iter().position(|b| *b == b':') else {
        return Stored::Miss;
    };
    let Some(version) = std::str::from_utf8(&entry[..colon])
        .ok()
        .and_then(|version| version.parse().ok())
    else {
        return Stored::Miss;
    };
    match entry.get(colon + 1..) {
        Some([b'D']) => Stored::Deleted { version },
        Some([b'P', rest @ ..]) => match Product::decode(rest) {
            Ok(product) if !product.id.is_empty() => Stored::Product {
                version,
                product: Box::new(product),
            },
            _ => Stored::Miss,
        },
        _ => Stored::Miss,
    }
}

/// Retries `attempt` in the background with a growing pause until it succeeds
/// or `deadline` has passed.
fn retry_for<F, Fut>(deadline: Duration, attempt: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), CacheError>> + Send,
{
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let retry = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut failures = 0;
        while started.elapsed() < deadline {
            failures += 1;
            tokio::time::sleep(retry.jittered(failures)).await;
            match attempt().await {
                Ok(()) => return,
                Err(err) => tracing::debug!(error = %err, "cache invalidation retry failed"),
            }
        }
        tracing::warn!(
            "gave up retrying a cache invalidation; stale entries expire with their TTL"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product() -> Product {
        Product {
            id: Uuid::now_v7().to_string(),
            sku: "EL-HEAD-0001".into(),
            name: "Auralis Wireless Headphones".into(),
            ..Default::default()
        }
    }

    #[test]
    fn entries_round_trip() {
        let p = product();
        assert_eq!(
            decode_entry(&encode_entry(7, Some(&p))),
            Stored::Product {
                version: 7,
                product: Box::new(p)
            }
        );
        assert_eq!(
            decode_entry(&encode_entry(8, None)),
            Stored::Deleted { version: 8 }
        );
        assert!(encode_entry(12, None).starts_with(b"12:"));
    }

    #[test]
    fn unreadable_entries_are_misses() {
        for entry in [
            &b""[..],
            b"7",
            b"7:",
            b"7:X",
            b"7:P\xff\xff",
            b"7:Dx",
            b"x:D",
        ] {
            assert_eq!(decode_entry(entry), Stored::Miss, "{entry:?}");
        }
    }

    #[tokio::test]
    async fn a_disconnected_redis_is_skipped_not_waited_for() {
        // Built but never connected: every call must fail fast so reads go to PostgreSQL.
        let redis = fred::prelude::Builder::default_centralized()
            .build()
            .unwrap();
        let cache = RedisCache::new(redis, "t:".into(), Some(Duration::from_secs(60)));
        let id = Uuid::now_v7();
        let started = std::time::Instant::now();
        assert_eq!(cache.products(&[id]).await, [Stored::Miss]);
        assert!(cache.listing("search", "f", false).await.is_none());
        assert!(matches!(
            cache.store_if_newer(id, 1, None, WRITE_TIMEOUT).await,
            Err(CacheError::Disconnected)
        ));
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    async fn connected(ttl: Duration) -> RedisCache {
        let env = shopmesh_platform::settings::Env::from_pairs([(
            "REDIS_URL",
            shopmesh_testkit::redis_url(),
        )]);
        let settings = shopmesh_platform::settings::RedisSettings::from_env(&env).unwrap();
        let redis = shopmesh_platform::redis::connect(&settings).await.unwrap();
        RedisCache::new(
            redis,
            format!("test:{}:", Uuid::now_v7().simple()),
            Some(ttl),
        )
    }

    fn named(id: Uuid, name: &str) -> Product {
        Product {
            id: id.to_string(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// The race the version guard exists for: a read loads version 1 from
    /// PostgreSQL, an update commits version 2 and writes it through, and only
    /// then does the read's fill reach Redis.
    #[tokio::test]
    async fn a_late_fill_never_puts_back_an_older_copy() {
        let cache = connected(Duration::from_secs(60)).await;
        let id = Uuid::now_v7();
        cache.after_write(id, 2, Some(named(id, "v2"))).await;
        cache.fill(&[(1, named(id, "v1"))]).await;
        assert_eq!(
            cache.products(&[id]).await,
            [Stored::Product {
                version: 2,
                product: Box::new(named(id, "v2"))
            }]
        );
        cache.after_write(id, 3, None).await;
        cache.fill(&[(2, named(id, "v2"))]).await;
        assert_eq!(
            cache.products(&[id]).await,
            [Stored::Deleted { version: 3 }]
        );
        // A fill of a product nobody has cached yet is stored.
        let other = Uuid::now_v7();
        cache.fill(&[(1, named(other, "first"))]).await;
        assert_eq!(
            cache.products(&[other, id, Uuid::now_v7()]).await,
            [
                Stored::Product {
                    version: 1,
                    product: Box::new(named(other, "first"))
                },
                Stored::Deleted { version: 3 },
                Stored::Miss
            ]
        );
    }

    #[tokio::test]
    async fn a_page_computed_before_a_write_is_never_served_after_it() {
        let cache = connected(Duration::from_secs(60)).await;
        let (slot, page) = cache.listing("search", "q", false).await.unwrap();
        assert_eq!(page, None);
        // The write commits and bumps the generation while the page is computed…
        cache.after_write(Uuid::now_v7(), 2, None).await;
        cache
            .store_listing(&slot, Bytes::from_static(b"stale page"))
            .await;
        // …so the stale page is stored where no reader looks.
        let (slot, page) = cache.listing("search", "q", false).await.unwrap();
        assert_eq!(page, None);
        cache
            .store_listing(&slot, Bytes::from_static(b"fresh page"))
            .await;
        let (_, page) = cache.listing("search", "q", false).await.unwrap();
        assert_eq!(page.as_deref(), Some(&b"fresh page"[..]));
        // In-stock pages also turn over when stock flips, other pages do not.
        let (slot, _) = cache.listing("search", "q", true).await.unwrap();
        cache
            .store_listing(&slot, Bytes::from_static(b"in stock"))
            .await;
        cache.after_stock_change().await.unwrap();
        assert_eq!(cache.listing("search", "q", true).await.unwrap().1, None);
        assert!(
            cache
                .listing("search", "q", false)
                .await
                .unwrap()
                .1
                .is_some()
        );
    }

    #[tokio::test]
    async fn entries_expire_with_the_ttl() {
        let cache = connected(Duration::from_secs(7)).await;
        let id = Uuid::now_v7();
        cache.fill(&[(1, named(id, "v1"))]).await;
        let ttl: i64 = cache.redis.pttl(cache.product_key(id)).await.unwrap();
        assert!((1..=7_000).contains(&ttl), "{ttl}");
    }

    #[tokio::test]
    async fn caching_off_never_touches_redis() {
        let redis = fred::prelude::Builder::default_centralized()
            .build()
            .unwrap();
        let cache = RedisCache::new(redis, String::new(), None);
        assert_eq!(cache.products(&[Uuid::nil()]).await, [Stored::Miss]);
        assert!(cache.listing("list", "f", true).await.is_none());
        assert!(cache.after_stock_change().await.is_ok());
    }
}
