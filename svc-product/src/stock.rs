//! Availability from svc-inventory: a background subscription to its
//! `WatchStock` stream that keeps `stock_levels` current, for the in-stock
//! search filter.
//!
//! WatchStock takes at most 100 SKUs per stream, so the catalog's SKUs are
//! split into groups of up to 100, one stream each, all multiplexed over one
//! HTTP/2 connection. A SKU stays in its group while it is listed, so adding or
//! removing a product restarts only the stream of the group it touches. Each
//! stream reconnects with jittered exponential backoff; inventory starts every
//! stream (and so every reconnect) with the current level of each known SKU,
//! which repairs whatever was missed while disconnected. Groups are re-derived
//! from the catalog after every admin write and once a minute (writes made by
//! other replicas).
//!
//! Every replica subscribes on its own; the writes are idempotent (the newest
//! report per SKU wins), so the copies agree.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use shopmesh_platform::clients::LazyChannel;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::inventory::v1::{Stock, WatchStockRequest};
use tokio::sync::Notify;
use tonic::transport::Channel;

use crate::availability::Availability;
use crate::cache::ProductCache;
use crate::store::Store;
use crate::store::stock::{StockLevel, apply_levels, forget_unlisted};

/// WatchStock's limit of SKUs per stream.
pub const MAX_SKUS_PER_WATCH: usize = 100;
/// How often the groups are re-derived without a local admin write.
const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Levels that arrive together are written in one statement, up to this many.
const MAX_LEVELS_PER_WRITE: usize = 500;

/// The running subscription; tell it when the catalog's SKUs may have changed.
#[derive(Clone)]
pub struct StockWatch {
    resync: Arc<Notify>,
}

impl StockWatch {
    /// Starts the subscription in the background; it never blocks start-up and
    /// keeps retrying while inventory is unreachable.
    pub fn spawn(
        store: Store,
        cache: ProductCache,
        availability: Availability,
        inventory_url: &str,
    ) -> anyhow::Result<Self> {
        // A long-lived stream: keep-alive pings notice a peer that vanished.
        let channel = LazyChannel::new(Duration::from_secs(5))
            .keep_alive(Duration::from_secs(30), Duration::from_secs(10))
            .connect(inventory_url)
            .context("INVENTORY_GRPC_URL is not a valid URL")?;
        let resync = Arc::new(Notify::new());
        tokio::spawn(supervise(
            store,
            cache,
            availability,
            InventoryServiceClient::new(channel),
            resync.clone(),
        ));
        Ok(Self { resync })
    }

    /// Re-derives the watched SKUs now (after a product was created, deleted
    /// or got another SKU).
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

async fn supervise(
    store: Store,
    cache: ProductCache,
    availability: Availability,
    client: InventoryServiceClient<Channel>,
    resync: Arc<Notify>,
) {
    let mut groups: Vec<Group> = Vec::new();
    loop {
        if store.pool().is_closed() {
            return;
        }
        match store.live_skus().await {
            Ok(skus) => {
                let wanted: BTreeSet<String> = skus.into_iter().collect();
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
                                store.clone(),
                                cache.clone(),
                                availability.clone(),
                            )),
                            skus,
                        }),
                    }
                }
                if let Err(err) = forget_unlisted(store.pool()).await {
                    tracing::warn!(error = %err, "cannot forget stock of unlisted SKUs");
                }
                availability.retain(&wanted);
                tracing::debug!(
                    streams = groups.len(),
                    skus = wanted.len(),
                    "watching stock"
                );
            }
            Err(err) => tracing::warn!(error = %err, "cannot read the catalog's SKUs"),
        }
        tokio::select! {
            () = resync.notified() => {}
            () = tokio::time::sleep(RESYNC_INTERVAL) => {}
        }
    }
}

/// The groups after `wanted` replaces the catalog's SKUs: group `i` of the
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

/// Follows one group's stream for as long as the service runs.
async fn follow_group(
    skus: Vec<String>,
    mut client: InventoryServiceClient<Channel>,
    store: Store,
    cache: ProductCache,
    availability: Availability,
) {
    let mut pause = FIRST_RETRY;
    let mut failing = false;
    loop {
        if store.pool().is_closed() {
            return;
        }
        let mut delivered = false;
        let outcome = follow_once(
            &skus,
            &mut client,
            (&store, &cache, &availability),
            &mut delivered,
        )
        .await;
        if delivered {
            pause = FIRST_RETRY;
        }
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
        tokio::time::sleep(jittered(pause)).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

async fn follow_once(
    skus: &[String],
    client: &mut InventoryServiceClient<Channel>,
    (store, cache, availability): (&Store, &ProductCache, &Availability),
    delivered: &mut bool,
) -> anyhow::Result<()> {
    let stream = client
        .watch_stock(WatchStockRequest {
            skus: skus.to_vec(),
        })
        .await
        .context("WatchStock refused")?
        .into_inner();
    let mut batches = stream.ready_chunks(MAX_LEVELS_PER_WRITE);
    while let Some(batch) = batches.next().await {
        let mut levels = Vec::with_capacity(batch.len());
        let mut failure = None;
        for message in batch {
            match message {
                Ok(message) => levels.extend(message.stock.map(level)),
                Err(status) => {
                    failure = Some(status);
                    break;
                }
            }
        }
        let flips = apply_levels(store.pool(), &levels)
            .await
            .context("cannot store stock levels")?;
        availability.record(&levels);
        *delivered |= !levels.is_empty();
        if flips > 0
            && let Err(err) = cache.after_stock_change().await
        {
            tracing::warn!(error = %err, "cannot drop in-stock pages from the cache");
        }
        if let Some(status) = failure {
            return Err(status).context("WatchStock stream broke");
        }
    }
    Ok(())
}

fn level(stock: Stock) -> StockLevel {
    let updated_at = stock
        .update_time
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_else(chrono::Utc::now);
    StockLevel {
        sku: stock.sku,
        available: stock.available.max(0),
        updated_at,
    }
}

/// 50–150 % of `pause`, so that many streams do not reconnect in lockstep.
fn jittered(pause: Duration) -> Duration {
    let fraction = (uuid::Uuid::new_v4().as_u128() % 1_000) as f64 / 1_000.0;
    pause.mul_f64(0.5 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skus(range: std::ops::Range<usize>) -> BTreeSet<String> {
        range.map(|i| format!("SKU-{i:04}")).collect()
    }

    #[test]
    fn the_catalog_is_split_into_streams_of_at_most_100() {
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
        let level = level(stock);
        assert_eq!(level.available, 0);
        assert_eq!(level.updated_at.timestamp(), 1_767_225_600);
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_secs(2));
            assert!(pause >= Duration::from_secs(1) && pause <= Duration::from_secs(3));
        }
    }
}
