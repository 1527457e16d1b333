//! Following orders as they change, on every replica. Each status change
//! `pg_notify`s `order_status` with the order id in its own transaction, so
//! PostgreSQL delivers it on commit to every listening process. Each process
//! keeps one LISTEN connection (`platform::db::relay_notifications`) and
//! relays the ids into a tokio broadcast channel.
//!
//! Streams read what changed from `order_status_history`, not from the
//! notification: a stream that lags, or a relay that reconnects, reads the
//! history again from where it was and misses no status.

use std::future::Future;
use std::time::Duration;

use futures::Stream;
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::order::{Order, OrderError, OrderStatus, StatusChange};
use crate::store::{CHANNEL, Store};

const CAPACITY: usize = 1024;
/// Waiting RPCs also look again this often, in case a notification was lost.
const RECHECK: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
enum Signal {
    Changed(Uuid),
    /// Notifications may have been missed.
    Resync,
}

/// How a watch ends other than by the order settling or the client leaving.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the order was deleted")]
    Gone,
    #[error(transparent)]
    Store(#[from] OrderError),
}

#[derive(Clone)]
pub struct OrderWatch {
    signals: broadcast::Sender<Signal>,
    closing: watch::Receiver<bool>,
}

impl OrderWatch {
    /// LISTENs (holding one pooled connection for good) and relays until the
    /// pool closes; streams end when `closing` resolves.
    pub async fn start(
        db: &PgPool,
        closing: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (signals, _) = broadcast::channel(CAPACITY);
        let (close, closed) = watch::channel(false);
        let relayed = signals.clone();
        // No stream listening is fine; a gap in listening makes everyone look again.
        shopmesh_platform::db::relay_notifications(db, CHANNEL, move |payload| {
            let signal = payload
                .and_then(|id| Uuid::parse_str(id).ok())
                .map_or(Signal::Resync, Signal::Changed);
            let _ = relayed.send(signal);
        })
        .await?;
        tokio::spawn(async move {
            closing.await;
            let _ = close.send(true);
        });
        Ok(Self {
            signals,
            closing: closed,
        })
    }

    /// The order once its status is one `done` accepts, or as it stands at `until`.
    pub async fn wait_settled(
        &self,
        store: &Store,
        order_id: Uuid,
        until: Instant,
        done: fn(OrderStatus) -> bool,
    ) -> Result<Order, OrderError> {
        let mut signals = self.signals.subscribe();
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
                    match signals.recv().await {
                        Ok(Signal::Changed(id)) if id != order_id => continue,
                        Err(RecvError::Closed) => std::future::pending::<()>().await,
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
            signals: self.signals.subscribe(),
            closing: self.closing.clone(),
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
    signals: broadcast::Receiver<Signal>,
    closing: watch::Receiver<bool>,
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
            tokio::select! {
                biased;
                () = closed(&mut self.closing) => {
                    self.done = true;
                    return Some(Err(WatchEnd::ShuttingDown));
                }
                signal = self.signals.recv() => match signal {
                    Ok(Signal::Changed(id)) if id != self.order_id => {}
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if let Err(err) = self.catch_up().await {
                            self.done = true;
                            return Some(Err(err));
                        }
                    }
                    Err(RecvError::Closed) => self.done = true,
                },
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

async fn closed(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}
