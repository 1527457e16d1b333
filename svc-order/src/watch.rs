//! Following orders as they change, on every replica. Each status change
//! `pg_notify`s `order_status` with the order id in its own transaction, so
//! PostgreSQL delivers it on commit to every listening process. Each process
//! keeps one LISTEN connection and fans the ids out to its streams
//! (`platform::db::ChangeFeed`).
//!
//! Streams read what changed from `order_status_history`, not from the
//! notification: a stream that lags, or a relay that reconnects, reads the
//! history again from where it was and misses no status.

use std::time::Duration;

use futures::Stream;
use shopmesh_platform::db::{Change, ChangeFeed, Subscription};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{OrderError, WatchEnd};
use crate::order::{Order, OrderStatus, StatusChange};
use crate::store::{CHANNEL, Store};

const CAPACITY: usize = 1024;
/// Waiting RPCs also look again this often, in case a notification was lost.
const RECHECK: Duration = Duration::from_millis(500);

/// The ids of the orders that change, for every watch of the process.
#[derive(Clone)]
pub struct OrderWatch {
    feed: ChangeFeed<Uuid>,
}

impl OrderWatch {
    /// LISTENs (holding one pooled connection for good) and relays until the
    /// pool closes; streams end when `closing` is cancelled.
    pub async fn start(db: &PgPool, closing: CancellationToken) -> anyhow::Result<Self> {
        let parse = |id: &str| Uuid::parse_str(id).ok();
        let feed = ChangeFeed::listen(db, CHANNEL, CAPACITY, parse, closing).await?;
        Ok(Self { feed })
    }

    /// The order once its status is one `done` accepts, or as it stands at `until`.
    pub async fn wait_settled(
        &self,
        store: &Store,
        order_id: Uuid,
        until: Instant,
        done: fn(OrderStatus) -> bool,
    ) -> Result<Order, OrderError> {
        let mut changes = self.feed.subscribe();
        loop {
            let order = store
                .order(order_id)
                .await?
                .ok_or(OrderError::NotFound(order_id))?;
            if done(order.status) || Instant::now() >= until {
                return Ok(order);
            }
            let wake = async {
                loop {
                    match changes.next().await {
                        Change::Changed(id) if id != order_id => continue,
                        // The deadline still ends the wait.
                        Change::Closing => std::future::pending::<()>().await,
                        _ => return,
                    }
                }
            };
            tokio::select! {
                () = wake => {}
                () = tokio::time::sleep(RECHECK) => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// The order now, then again for every status it enters, until it is
    /// CONFIRMED or terminal. Each message carries the status, reason and time
    /// of one history entry, so none is skipped however fast they come.
    pub fn watch(
        &self,
        store: Store,
        order_id: Uuid,
    ) -> impl Stream<Item = Result<Order, WatchEnd>> + Send + 'static {
        let follower = Follower {
            order_id,
            changes: self.feed.subscribe(),
            store,
            pending: std::collections::VecDeque::new(),
            last_seq: None,
            done: false,
        };
        futures::stream::unfold(follower, |mut follower| async move {
            follower.next().await.map(|item| (item, follower))
        })
    }
}

struct Follower {
    order_id: Uuid,
    changes: Subscription<Uuid>,
    store: Store,
    pending: std::collections::VecDeque<Order>,
    /// The newest history entry sent; `None` before the first read.
    last_seq: Option<i64>,
    done: bool,
}

impl Follower {
    async fn next(&mut self) -> Option<Result<Order, WatchEnd>> {
        loop {
            if self.done {
                return None;
            }
            if self.last_seq.is_none() {
                // History first, then the order: a change committed between
                // the two is sent twice rather than never.
                if let Err(err) = self.start().await {
                    self.done = true;
                    return Some(Err(err));
                }
            }
            if let Some(order) = self.pending.pop_front() {
                if order.status.is_settled() {
                    self.done = true;
                }
                return Some(Ok(order));
            }
            match self.changes.next().await {
                Change::Closing => {
                    self.done = true;
                    return Some(Err(WatchEnd::ShuttingDown));
                }
                Change::Changed(id) if id != self.order_id => {}
                Change::Changed(_) | Change::Resync => {
                    if let Err(err) = self.catch_up().await {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
            }
        }
    }

    async fn start(&mut self) -> Result<(), WatchEnd> {
        let changes = self.store.history(self.order_id, None, i64::MAX).await?;
        self.last_seq = Some(changes.last().map_or(0, |c| c.seq));
        let order = self
            .store
            .order(self.order_id)
            .await?
            .ok_or(WatchEnd::Gone)?;
        self.pending.push_back(order);
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), WatchEnd> {
        let id = self.order_id;
        let changes = self.store.history(id, self.last_seq, 1000).await?;
        if changes.is_empty() {
            return Ok(());
        }
        let order = self.store.order(id).await?.ok_or(WatchEnd::Gone)?;
        for change in changes {
            self.last_seq = Some(change.seq);
            let settled = as_of(&order, &change);
            let stop = settled.status.is_settled();
            self.pending.push_back(settled);
            if stop {
                break;
            }
        }
        Ok(())
    }
}

/// The order as one history entry left it: its status, reason and time.
fn as_of(order: &Order, change: &StatusChange) -> Order {
    let mut order = order.clone();
    if let Some(status) = OrderStatus::parse(&change.status) {
        order.status = status;
    }
    order.status_reason = change.reason.clone();
    order.updated_at = change.changed_at;
    order
}
