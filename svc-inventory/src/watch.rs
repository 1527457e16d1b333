//! WatchStock's fan-out. The `stock_announce` trigger calls `pg_notify` inside
//! every transaction that changes a stock row; PostgreSQL delivers the
//! notification only when that transaction commits, in commit order, to the
//! listeners of every replica. Each process keeps one LISTEN connection and
//! fans what it hears out to its streams (`platform::db::ChangeFeed`); every
//! WatchStock stream picks its SKUs out of it.
//!
//! A stream that falls behind the channel, or a relay that lost its connection
//! (and so may have missed notifications), answers with a fresh snapshot of the
//! watched SKUs instead of ending. Levels carry the row's version, so a stream
//! never goes back to an older level than one it already sent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::Stream;
use futures::future::BoxFuture;
use serde::Deserialize;
use shopmesh_platform::db::{Change, ChangeFeed, Subscription};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::WatchEnd;
use crate::stock::StockLevel;

/// The notification channel the `stock_announce` trigger sends on.
pub const CHANNEL: &str = "inventory_stock";
/// Changes a stream may fall behind by before it resynchronises.
const CAPACITY: usize = 1024;

/// Reads the current levels of some SKUs (the store, or a stand-in in tests).
pub type Snapshot =
    Arc<dyn Fn(Vec<String>) -> BoxFuture<'static, sqlx::Result<Vec<StockLevel>>> + Send + Sync>;

/// The process-wide hub the WatchStock streams subscribe to.
#[derive(Clone)]
pub struct StockWatch {
    /// Each committed change: the SKU's levels after it.
    feed: ChangeFeed<Arc<StockLevel>>,
}

impl StockWatch {
    /// LISTENs on `db` (holding one of its connections for good) and starts
    /// relaying until the pool closes. Returns once LISTEN is in place, so every
    /// change committed afterwards reaches the streams. The streams end when
    /// `closing` is cancelled (the binary passes its shutdown).
    pub async fn start(db: &PgPool, closing: CancellationToken) -> anyhow::Result<Self> {
        let feed = ChangeFeed::listen(db, CHANNEL, CAPACITY, level_of, closing).await?;
        Ok(Self { feed })
    }

    /// The levels of `skus` (distinct, in the order to send them): the current
    /// ones of the known SKUs first, then one each time one of them changes.
    pub fn watch(
        &self,
        skus: Vec<String>,
        snapshot: Snapshot,
    ) -> impl Stream<Item = Result<StockLevel, WatchEnd>> + Send + 'static {
        // Subscribe before the first snapshot: a change committed between the
        // two is then seen twice (harmless) rather than never.
        let watcher = Watcher {
            wanted: skus.iter().cloned().collect(),
            skus,
            changes: self.feed.subscribe(),
            snapshot,
            sent: HashMap::new(),
            queue: VecDeque::new(),
            resync: true,
            done: false,
        };
        futures::stream::unfold(watcher, |mut watcher| async move {
            watcher.next().await.map(|item| (item, watcher))
        })
    }
}

/// The payload `stock_announce` sends.
#[derive(Deserialize)]
struct Announcement {
    sku: String,
    on_hand: i64,
    reserved: i64,
    version: i64,
    updated_at_us: i64,
}

impl From<Announcement> for StockLevel {
    fn from(a: Announcement) -> Self {
        Self {
            sku: a.sku,
            on_hand: a.on_hand,
            reserved: a.reserved,
            version: a.version,
            updated_at: DateTime::<Utc>::from_timestamp_micros(a.updated_at_us).unwrap_or_default(),
        }
    }
}

/// The levels a notification announces (`None`, a resync, when unreadable).
fn level_of(payload: &str) -> Option<Arc<StockLevel>> {
    match serde_json::from_str::<Announcement>(payload) {
        Ok(announcement) => Some(Arc::new(announcement.into())),
        Err(err) => {
            tracing::warn!(error = %err, "unreadable stock announcement");
            None
        }
    }
}

/// One WatchStock stream's state.
struct Watcher {
    /// Distinct SKUs in the order they were asked for.
    skus: Vec<String>,
    wanted: HashSet<String>,
    changes: Subscription<Arc<StockLevel>>,
    snapshot: Snapshot,
    /// The version last sent per SKU.
    sent: HashMap<String, i64>,
    queue: VecDeque<StockLevel>,
    /// Read every watched level again before anything else.
    resync: bool,
    done: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<StockLevel, WatchEnd>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(level) = self.queue.pop_front() {
                return Some(Ok(level));
            }
            if self.resync {
                self.resync = false;
                match (self.snapshot)(self.skus.clone()).await {
                    Ok(levels) => self.enqueue_snapshot(levels),
                    Err(err) => {
                        self.done = true;
                        return Some(Err(WatchEnd::Snapshot(err)));
                    }
                }
                continue;
            }
            match self.changes.next().await {
                Change::Closing => {
                    self.done = true;
                    return Some(Err(WatchEnd::ShuttingDown));
                }
                Change::Changed(level) => self.enqueue_change(&level),
                Change::Resync => self.resync = true,
            }
        }
    }

    /// A snapshot is sent whole, in the order asked, whatever was sent before.
    fn enqueue_snapshot(&mut self, levels: Vec<StockLevel>) {
        let mut by_sku: HashMap<String, StockLevel> =
            levels.into_iter().map(|l| (l.sku.clone(), l)).collect();
        for sku in &self.skus {
            if let Some(level) = by_sku.remove(sku) {
                self.sent.insert(sku.clone(), level.version);
                self.queue.push_back(level);
            }
        }
    }

    /// A change is sent when it is one of ours and newer than what was sent.
    fn enqueue_change(&mut self, level: &StockLevel) {
        if !self.wanted.contains(&level.sku) {
            return;
        }
        let newer = self
            .sent
            .get(&level.sku)
            .is_none_or(|sent| level.version > *sent);
        if newer {
            self.sent.insert(level.sku.clone(), level.version);
            self.queue.push_back(level.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    fn level(sku: &str, on_hand: i64, version: i64) -> StockLevel {
        StockLevel {
            sku: sku.to_owned(),
            on_hand,
            reserved: 0,
            version,
            updated_at: Utc::now(),
        }
    }

    /// A snapshot over a shared table, counting its reads.
    fn table(levels: &[StockLevel]) -> (Arc<Mutex<Vec<StockLevel>>>, Arc<AtomicUsize>, Snapshot) {
        let rows = Arc::new(Mutex::new(levels.to_vec()));
        let reads = Arc::new(AtomicUsize::new(0));
        let (shared, counter) = (rows.clone(), reads.clone());
        let snapshot: Snapshot = Arc::new(move |skus: Vec<String>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let rows: Vec<StockLevel> = shared
                .lock()
                .unwrap()
                .iter()
                .filter(|l| skus.contains(&l.sku))
                .cloned()
                .collect();
            Box::pin(async move { Ok(rows) })
        });
        (rows, reads, snapshot)
    }

    /// A hub nobody relays into; cancelling the token closes its streams.
    fn detached(capacity: usize) -> (StockWatch, CancellationToken) {
        let close = CancellationToken::new();
        let feed = ChangeFeed::detached(capacity, close.clone());
        (StockWatch { feed }, close)
    }

    fn send(watch: &StockWatch, level: StockLevel) {
        watch.feed.send(Some(Arc::new(level)));
    }

    async fn next(
        stream: &mut (impl Stream<Item = Result<StockLevel, WatchEnd>> + Unpin),
    ) -> (String, i64) {
        let level = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a level within 5 s")
            .expect("the stream is open")
            .expect("a level, not an end");
        (level.sku, level.on_hand)
    }

    #[tokio::test]
    async fn current_levels_first_then_newer_changes_of_watched_skus_only() {
        let (watch, _close) = detached(16);
        let (_, _, snapshot) = table(&[level("B", 2, 1), level("A", 1, 1)]);
        let mut stream =
            Box::pin(watch.watch(vec!["A".into(), "B".into(), "NEW".into()], snapshot));
        assert_eq!(next(&mut stream).await, ("A".into(), 1));
        assert_eq!(next(&mut stream).await, ("B".into(), 2));

        send(&watch, level("OTHER", 9, 5));
        send(&watch, level("A", 1, 1)); // what the snapshot already said
        send(&watch, level("A", 3, 2));
        send(&watch, level("NEW", 7, 1)); // a SKU created after the watch began
        send(&watch, level("B", 0, 1)); // older than what was sent
        send(&watch, level("B", 5, 3));
        assert_eq!(next(&mut stream).await, ("A".into(), 3));
        assert_eq!(next(&mut stream).await, ("NEW".into(), 7));
        assert_eq!(next(&mut stream).await, ("B".into(), 5));
    }

    #[tokio::test]
    async fn a_stream_that_lags_gets_a_fresh_snapshot_and_carries_on() {
        let (watch, _close) = detached(4);
        let (rows, reads, snapshot) = table(&[level("A", 100, 1)]);
        let mut stream = Box::pin(watch.watch(vec!["A".into()], snapshot));
        assert_eq!(next(&mut stream).await, ("A".into(), 100));

        // Twenty changes while the client reads nothing: more than the channel holds.
        for version in 2..22 {
            send(&watch, level("A", 100 - version, version));
        }
        *rows.lock().unwrap() = vec![level("A", 79, 21)];
        assert_eq!(next(&mut stream).await, ("A".into(), 79), "the snapshot");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // What the channel still held is older than the snapshot: dropped.
        let stale = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
        assert!(stale.is_err(), "nothing newer than the snapshot yet");
        send(&watch, level("A", 50, 22));
        assert_eq!(next(&mut stream).await, ("A".into(), 50));
    }

    #[tokio::test]
    async fn a_resync_signal_rereads_the_levels() {
        let (watch, _close) = detached(16);
        let (rows, _, snapshot) = table(&[level("A", 1, 1)]);
        let mut stream = Box::pin(watch.watch(vec!["A".into()], snapshot));
        assert_eq!(next(&mut stream).await, ("A".into(), 1));
        *rows.lock().unwrap() = vec![level("A", 4, 3)];
        watch.feed.send(None);
        assert_eq!(next(&mut stream).await, ("A".into(), 4));
    }

    #[tokio::test]
    async fn closing_the_hub_ends_every_stream() {
        let (watch, close) = detached(16);
        let (_, _, snapshot) = table(&[level("A", 1, 1)]);
        let mut stream = Box::pin(watch.watch(vec!["A".into()], snapshot));
        assert_eq!(next(&mut stream).await, ("A".into(), 1));
        close.cancel();
        assert!(matches!(
            stream.next().await,
            Some(Err(WatchEnd::ShuttingDown))
        ));
        assert!(stream.next().await.is_none());
    }

    #[test]
    fn announcements_parse_into_levels() {
        let payload = r#"{"sku":"EL-PHON-0001","on_hand":12,"reserved":3,"version":7,"updated_at_us":1735689600000000}"#;
        let level: StockLevel = serde_json::from_str::<Announcement>(payload)
            .unwrap()
            .into();
        assert_eq!(level.available(), 9);
        assert_eq!(level.version, 7);
        assert_eq!(level.updated_at.timestamp(), 1_735_689_600);
    }
}
