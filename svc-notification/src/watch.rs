//! WatchMyNotifications on every replica. Each notification that becomes
//! final `pg_notify`s [`SETTLED_CHANNEL`] with its user id in the settling
//! transaction; each process keeps one LISTEN connection and fans the ids out
//! to its streams (`platform::db::ChangeFeed`). Streams read from the table by `settled_seq`, not
//! from the notification, so a lagging stream or a reconnecting relay misses
//! nothing: it reads again from where it was.

use std::collections::VecDeque;

use futures::Stream;
use shopmesh_platform::db::{Change, ChangeFeed, Subscription};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::WatchEnd;
use crate::model::Notification;
use crate::store::{SETTLED_CHANNEL, Store};

const CAPACITY: usize = 1024;
const PAGE: i64 = 100;

#[derive(Clone)]
pub struct NotificationWatch {
    /// The users whose notifications settle.
    feed: ChangeFeed<Uuid>,
}

impl NotificationWatch {
    /// LISTENs (one pooled connection for good) and relays until the pool
    /// closes; streams end when `shutdown` is cancelled.
    pub async fn start(db: &PgPool, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let parse = |id: &str| Uuid::parse_str(id).ok();
        let feed = ChangeFeed::listen(db, SETTLED_CHANNEL, CAPACITY, parse, shutdown).await?;
        Ok(Self { feed })
    }

    /// `user_id`'s notifications as they become final: first those settled
    /// after `after` (a notification id), then live ones. Where to start is
    /// read before this returns, so everything settled after the call is sent.
    pub async fn watch(
        &self,
        store: Store,
        user_id: Uuid,
        after: Option<Uuid>,
    ) -> Result<impl Stream<Item = Result<Notification, WatchEnd>> + Send + 'static, WatchEnd> {
        let mut follower = Follower {
            user_id,
            changes: self.feed.subscribe(),
            store,
            pending: VecDeque::new(),
            last_seq: 0,
            done: false,
        };
        follower.start(after).await?;
        Ok(futures::stream::unfold(
            follower,
            |mut follower| async move { follower.next().await.map(|item| (item, follower)) },
        ))
    }
}

struct Follower {
    user_id: Uuid,
    changes: Subscription<Uuid>,
    store: Store,
    pending: VecDeque<Notification>,
    /// The newest settled position sent (or skipped as before the start).
    last_seq: i64,
    done: bool,
}

impl Follower {
    async fn next(&mut self) -> Option<Result<Notification, WatchEnd>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(n) = self.pending.pop_front() {
                return Some(Ok(n));
            }
            match self.changes.next().await {
                Change::Closing => {
                    self.done = true;
                    return Some(Err(WatchEnd::ShuttingDown));
                }
                Change::Changed(id) if id != self.user_id => {}
                Change::Changed(_) | Change::Resync => {
                    if let Err(err) = self.catch_up().await {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
            }
        }
    }

    /// Where to start: after the resume point when it is one of the user's
    /// final notifications, otherwise at the newest (live only).
    async fn start(&mut self, after: Option<Uuid>) -> Result<(), WatchEnd> {
        let resume = match after {
            Some(id) => self
                .store
                .notification_of(self.user_id, id)
                .await?
                .and_then(|n| n.settled_seq),
            None => None,
        };
        match resume {
            Some(seq) => {
                self.last_seq = seq;
                self.catch_up().await
            }
            None => {
                self.last_seq = self.store.last_settled(self.user_id).await?;
                Ok(())
            }
        }
    }

    async fn catch_up(&mut self) -> Result<(), WatchEnd> {
        loop {
            let page = self
                .store
                .settled_since(self.user_id, self.last_seq, PAGE)
                .await?;
            let full = page.len() as i64 == PAGE;
            for n in page {
                self.last_seq = n.settled_seq.unwrap_or(self.last_seq);
                self.pending.push_back(n);
            }
            if !full {
                return Ok(());
            }
        }
    }
}
