//! Following svc-inventory's stock: a background subscription to its
//! `WatchStock` stream for the SKUs a service cares about, and an in-memory
//! copy of the levels (newest report per SKU wins) that requests read without
//! touching a database. svc-product (availability, the in-stock filter) and
//! svc-recommendation (never recommending what is sold out) both follow stock
//! this way; what each does with a level is its [`StockSink`].
//!
//! WatchStock takes at most 100 SKUs per stream, so the SKUs are split into
//! groups of up to 100, one stream each, all multiplexed over one HTTP/2
//! connection. A SKU stays in its group while it is followed, so adding or
//! removing one restarts only the stream of the group it touches. Each stream
//! reconnects with jittered exponential backoff; inventory starts every stream
//! (and so every reconnect) with the current level of each known SKU, which
//! repairs whatever was missed while disconnected. Groups are re-derived from
//! [`StockSink::skus`] on [`StockFollower::resync`] and once a minute.
//!
//! Every replica subscribes on its own; the copies agree because the newest
//! report per SKU wins.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use shopmesh_platform::backoff::Backoff;
use shopmesh_platform::clients::LazyChannel;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::inventory::v1::{Stock, WatchStockRequest};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// WatchStock's limit of SKUs per stream.
pub const MAX_SKUS_PER_WATCH: usize = 100;
/// How often the groups are re-derived without a [`StockFollower::resync`].
const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
/// Levels that arrive together are handed to the sink in one call, up to this many.
const MAX_LEVELS_PER_BATCH: usize = 500;

/// One level as inventory reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockLevel {
    pub sku: String,
    /// Units that can be sold now, never negative.
    pub available: i64,
    pub updated_at: DateTime<Utc>,
}

impl From<Stock> for StockLevel {
    fn from(stock: Stock) -> Self {
        let updated_at = stock
            .update_time
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_else(Utc::now);
        Self {
            sku: stock.sku,
            available: stock.available.max(0),
            updated_at,
        }
    }
}

/// What a service does with the stock it follows.
pub trait StockSink: Clone + Send + Sync + 'static {
    /// The SKUs to follow now; asked at start, on every resync and once a minute.
    fn skus(&self) -> impl Future<Output = anyhow::Result<BTreeSet<String>>> + Send;

    /// Called with the SKUs just derived: levels of any other SKU may be dropped
    /// (a SKU followed again later starts from inventory's next report).
    fn retain(&self, skus: &BTreeSet<String>) -> impl Future<Output = ()> + Send;

    /// Levels that arrived together. An error restarts the stream, which
    /// starts again with the current level of every SKU in it.
    fn apply(&self, levels: &[StockLevel]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The running subscription; tell it when the followed SKUs may have changed.
#[derive(Clone, Debug)]
pub struct StockFollower {
    resync: Arc<Notify>,
}

impl StockFollower {
    /// Starts following in the background until `shutdown`; it never blocks
    /// start-up and keeps retrying while inventory is unreachable. Fails only
    /// for an `inventory_url` that is not a URL.
    pub fn spawn<S: StockSink>(
        sink: S,
        inventory_url: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        // A long-lived stream: keep-alive pings notice a peer that vanished.
        let channel = LazyChannel::new(Duration::from_secs(5))
            .keep_alive(Duration::from_secs(30), Duration::from_secs(10))
            .connect(inventory_url)
            .context("INVENTORY_GRPC_URL is not a valid URL")?;
        let resync = Arc::new(Notify::new());
        let supervisor = supervise(sink, InventoryServiceClient::new(channel), resync.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = supervisor => {}
                // Dropping the supervisor drops its groups, which abort their streams.
                () = shutdown.cancelled() => {}
            }
        });
        Ok(Self { resync })
    }

    /// Re-derives the followed SKUs now (after they may have changed).
    pub fn resync(&self) {
        self.resync.notify_one();
    }
}

/// One stream's SKUs and the task following it (aborted when dropped).
struct Group {
    skus: BTreeSet<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn supervise<S: StockSink>(
    sink: S,
    client: InventoryServiceClient<Channel>,
    resync: Arc<Notify>,
) {
    let mut groups: Vec<Group> = Vec::new();
    loop {
        match sink.skus().await {
            Ok(wanted) => {
                let current: Vec<BTreeSet<String>> =
                    groups.iter().map(|g| g.skus.clone()).collect();
                let next = regroup(&current, &wanted);
                let mut old = std::mem::take(&mut groups).into_iter();
                for skus in next {
                    match old.next() {
                        Some(group) if group.skus == skus => groups.push(group),
                        // Changed or new: the old stream (if any) stops as it is dropped.
                        _ if skus.is_empty() => {}
                        _ => groups.push(Group {
                            task: tokio::spawn(follow_group(
                                skus.iter().cloned().collect(),
                                client.clone(),
                                sink.clone(),
                            )),
                            skus,
                        }),
                    }
                }
                sink.retain(&wanted).await;
                tracing::debug!(
                    streams = groups.len(),
                    skus = wanted.len(),
                    "watching stock"
                );
            }
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "cannot list the SKUs to follow")
            }
        }
        tokio::select! {
            () = resync.notified() => {}
            () = tokio::time::sleep(RESYNC_INTERVAL) => {}
        }
    }
}

/// The groups after `wanted` replaces the followed SKUs: group `i` of the
/// result is group `i` of `groups` minus the SKUs no longer wanted, topped up
/// with new SKUs while it has room (possibly empty: its stream stops); new
/// groups follow for the SKUs left over.
pub fn regroup(groups: &[BTreeSet<String>], wanted: &BTreeSet<String>) -> Vec<BTreeSet<String>> {
    let mut next: Vec<BTreeSet<String>> = groups
        .iter()
        .map(|group| group.intersection(wanted).cloned().collect())
        .collect();
    let unplaced: Vec<String> = {
        let placed: BTreeSet<&String> = next.iter().flatten().collect();
        wanted
            .iter()
            .filter(|sku| !placed.contains(sku))
            .cloned()
            .collect()
    };
    let mut unplaced = unplaced.into_iter();
    // Groups that lost SKUs restart anyway, so they take new SKUs first; an
    // untouched group is restarted only when they are full.
    let mut order: Vec<usize> = (0..next.len()).collect();
    order.sort_by_key(|i| next[*i].len() == groups[*i].len());
    for i in order {
        let group = &mut next[i];
        while group.len() < MAX_SKUS_PER_WATCH {
            match unplaced.next() {
                Some(sku) => {
                    group.insert(sku);
                }
                None => break,
            }
        }
    }
    let rest: Vec<String> = unplaced.collect();
    next.extend(
        rest.chunks(MAX_SKUS_PER_WATCH)
            .map(|chunk| chunk.iter().cloned().collect()),
    );
    next
}

/// Follows one group's stream for as long as the follower runs.
async fn follow_group<S: StockSink>(
    skus: Vec<String>,
    mut client: InventoryServiceClient<Channel>,
    sink: S,
) {
    let mut failures = 0;
    let mut failing = false;
    loop {
        let mut delivered = false;
        let outcome = follow_once(&skus, &mut client, &sink, &mut delivered).await;
        if delivered {
            failures = 0;
        }
        failures += 1;
        let pause = RETRY.jittered(failures);
        match outcome {
            Ok(()) => tracing::debug!("stock stream ended; reconnecting"),
            Err(err) if failing && !delivered => {
                tracing::debug!(error = format!("{err:#}"), "stock stream still failing");
            }
            Err(err) => {
                failing = true;
                tracing::warn!(
                    error = format!("{err:#}"),
                    retry_in_ms = pause.as_millis() as u64,
                    "stock stream failed; reconnecting with backoff"
                );
            }
        }
        tokio::time::sleep(pause).await;
    }
}

async fn follow_once<S: StockSink>(
    skus: &[String],
    client: &mut InventoryServiceClient<Channel>,
    sink: &S,
    delivered: &mut bool,
) -> anyhow::Result<()> {
    let stream = client
        .watch_stock(WatchStockRequest {
            skus: skus.to_vec(),
        })
        .await
        .context("WatchStock refused")?
        .into_inner();
    let mut batches = stream.ready_chunks(MAX_LEVELS_PER_BATCH);
    while let Some(batch) = batches.next().await {
        let mut levels = Vec::with_capacity(batch.len());
        let mut failure = None;
        for message in batch {
            match message {
                Ok(message) => levels.extend(message.stock.map(StockLevel::from)),
                Err(status) => {
                    failure = Some(status);
                    break;
                }
            }
        }
        if !levels.is_empty() {
            sink.apply(&levels).await?;
            *delivered = true;
        }
        if let Some(status) = failure {
            return Err(status).context("WatchStock stream broke");
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct Level {
    available: i64,
    updated_at: DateTime<Utc>,
}

/// Available units per SKU, in memory; clones share the same levels.
#[derive(Clone, Debug, Default)]
pub struct StockLevels {
    levels: Arc<RwLock<HashMap<String, Level>>>,
}

impl StockLevels {
    /// Starts from levels stored earlier (e.g. at start, from a table).
    pub fn from_levels(levels: impl IntoIterator<Item = StockLevel>) -> Self {
        let this = Self::default();
        this.record(&levels.into_iter().collect::<Vec<_>>());
        this
    }

    /// Takes reported levels; a report older than the one held changes
    /// nothing. Returns how many SKUs went out of stock or came back (a SKU
    /// with no level counts as out of stock).
    pub fn record(&self, reported: &[StockLevel]) -> usize {
        let mut levels = self.levels.write().unwrap_or_else(PoisonError::into_inner);
        let mut flips = 0;
        for level in reported {
            let incoming = Level {
                available: level.available.max(0),
                updated_at: level.updated_at,
            };
            let before = levels.get(&level.sku).map_or(0, |held| held.available);
            let held = levels.entry(level.sku.clone()).or_insert(incoming);
            if held.updated_at <= incoming.updated_at {
                *held = incoming;
            }
            if (before > 0) != (held.available > 0) {
                flips += 1;
            }
        }
        flips
    }

    /// Forgets every SKU not in `followed`.
    pub fn retain(&self, followed: &BTreeSet<String>) {
        self.levels
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|sku, _| followed.contains(sku));
    }

    /// A consistent view for reading many levels at once (hold it briefly:
    /// reports wait while it is held).
    pub fn read(&self) -> StockView<'_> {
        StockView(self.levels.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Units available for `sku`; 0 when inventory reported none.
    pub fn available(&self, sku: &str) -> i64 {
        self.read().available(sku)
    }

    /// How many SKUs have a reported level.
    pub fn len(&self) -> usize {
        self.read().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A read view of [`StockLevels`].
pub struct StockView<'a>(RwLockReadGuard<'a, HashMap<String, Level>>);

impl StockView<'_> {
    /// Units available for `sku`; 0 when inventory reported none.
    pub fn available(&self, sku: &str) -> i64 {
        self.0.get(sku).map_or(0, |level| level.available)
    }

    /// The reported level of `sku`, `None` when inventory reported none yet.
    pub fn reported(&self, sku: &str) -> Option<i64> {
        self.0.get(sku).map(|level| level.available)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skus(range: std::ops::Range<usize>) -> BTreeSet<String> {
        range.map(|i| format!("SKU-{i:04}")).collect()
    }

    fn level(sku: &str, available: i64, at: i64) -> StockLevel {
        StockLevel {
            sku: sku.to_owned(),
            available,
            updated_at: DateTime::from_timestamp(at, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn the_skus_are_split_into_streams_of_at_most_100() {
        let groups = regroup(&[], &skus(0..250));
        assert_eq!(
            groups.iter().map(BTreeSet::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let all: BTreeSet<String> = groups.into_iter().flatten().collect();
        assert_eq!(all, skus(0..250));
    }

    #[test]
    fn a_new_sku_joins_a_group_with_room_and_leaves_the_others_alone() {
        let before = regroup(&[], &skus(0..250));
        let mut wanted = skus(0..250);
        wanted.insert("NEW-0001".into());
        let after = regroup(&before, &wanted);
        assert_eq!(after[0], before[0]);
        assert_eq!(after[1], before[1]);
        assert_eq!(after[2].len(), 51);
        assert!(after[2].contains("NEW-0001"));
        assert_eq!(after.len(), 3);
    }

    #[test]
    fn new_skus_fill_a_group_that_restarts_anyway() {
        let before = regroup(&[], &skus(0..250));
        let mut wanted = skus(0..250);
        wanted.remove("SKU-0010");
        wanted.insert("NEW-0001".into());
        let after = regroup(&before, &wanted);
        assert!(after[0].contains("NEW-0001"));
        assert_eq!(after[1], before[1]);
        assert_eq!(after[2], before[2]);
    }

    #[test]
    fn a_removed_sku_changes_only_its_group() {
        let before = regroup(&[], &skus(0..250));
        let mut wanted = skus(0..250);
        wanted.remove("SKU-0150");
        let after = regroup(&before, &wanted);
        assert_eq!(after[0], before[0]);
        assert_eq!(after[2], before[2]);
        assert_eq!(after[1].len(), 99);
        // Everything gone: every group empties, so every stream stops.
        let none = regroup(&after, &BTreeSet::new());
        assert!(none.iter().all(BTreeSet::is_empty));
    }

    #[test]
    fn reports_become_levels() {
        let stock = Stock {
            sku: "EL-HEAD-0001".into(),
            available: -3,
            update_time: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 5,
            }),
            ..Default::default()
        };
        let level = StockLevel::from(stock);
        assert_eq!(level.available, 0);
        assert_eq!(level.updated_at.timestamp(), 1_767_225_600);
    }

    #[test]
    fn the_newest_report_wins_whatever_the_arrival_order() {
        let levels = StockLevels::default();
        levels.record(&[level("A", 5, 20)]);
        levels.record(&[level("A", 9, 10)]);
        assert_eq!(levels.available("A"), 5);
        levels.record(&[level("A", 2, 30), level("B", -1, 30)]);
        assert_eq!(levels.available("A"), 2);
        assert_eq!(levels.available("B"), 0);
        assert_eq!(levels.available("unknown"), 0);
        assert_eq!(levels.read().reported("unknown"), None);
        assert_eq!(levels.read().reported("B"), Some(0));
    }

    #[test]
    fn unfollowed_skus_are_forgotten() {
        let levels = StockLevels::from_levels([level("A", 7, 1), level("B", 3, 1)]);
        assert_eq!(levels.len(), 2);
        levels.retain(&BTreeSet::from(["A".to_owned()]));
        assert_eq!(levels.available("B"), 0);
        assert_eq!(levels.available("A"), 7);
        assert_eq!(levels.len(), 1);
    }
}
