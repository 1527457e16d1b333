//! Training and the served model.
//!
//! - [`ModelCell`] holds the model being served; a swap replaces the whole
//!   `Arc` under a write lock held for a pointer store, so a request sees the
//!   old model or the new one, never a mix, and never waits on training.
//! - [`Trainer::train`] trains from the stored purchases and the catalog read
//!   from svc-product, on one replica at a time (a PostgreSQL advisory lock;
//!   a second run, here or on another replica, is refused as busy), persists
//!   the snapshot, announces it (`NOTIFY recommendation_model`) and swaps it in.
//!   The work runs in its own task: a caller that stops waiting does not stop it.
//! - [`Trainer::run`] trains at start when there is no model and then whenever
//!   the newest one is older than `RECOMMENDATION_TRAIN_INTERVAL_SECONDS`.
//! - [`Trainer::follow`] loads newer models persisted by other replicas, on
//!   their announcement and by polling.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shopmesh_platform::backoff::{Backoff, jitter};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogClient;
use crate::error::{StoreError, TrainError};
use crate::live::{Live, LiveCatalog};
use crate::model::{Model, TrainParams};
use crate::snapshot::{self, SnapshotError};
use crate::store::{self, MODEL_CHANNEL, Store};

const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// The longest pause between two looks at whether a training is due.
const MAX_CHECK: Duration = Duration::from_secs(60);

/// The model being served (none before the first training).
#[derive(Default)]
pub struct ModelCell {
    current: RwLock<Option<Arc<Model>>>,
}

impl ModelCell {
    pub fn current(&self) -> Option<Arc<Model>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `model` unless a newer one (a higher seq) is already served.
    pub fn swap(&self, model: Arc<Model>) -> bool {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|c| c.info.seq >= model.info.seq)
        {
            return false;
        }
        *current = Some(model);
        true
    }

    fn seq(&self) -> i64 {
        self.current().map_or(0, |m| m.info.seq)
    }
}

/// What started a training run, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// No model to serve yet.
    Start,
    Schedule,
    /// TrainModel.
    Command,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Schedule => "schedule",
            Self::Command => "command",
        }
    }
}

#[derive(Clone)]
pub struct Trainer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: CatalogClient,
    cell: Arc<ModelCell>,
    live: Arc<Live>,
    params: TrainParams,
    /// One run per process at a time (the advisory lock covers replicas).
    running: tokio::sync::Mutex<()>,
}

impl Trainer {
    pub fn new(
        store: Store,
        catalog: CatalogClient,
        cell: Arc<ModelCell>,
        live: Arc<Live>,
        params: TrainParams,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                catalog,
                cell,
                live,
                params,
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Trains, persists and serves a new model; [`TrainError::Busy`] when a run
    /// is going here or on another replica.
    pub async fn train(&self, trigger: Trigger) -> Result<Arc<Model>, TrainError> {
        self.train_unless_fresh(trigger, None)
            .await?
            .ok_or_else(|| TrainError::Aborted("skipped".to_owned()))
    }

    /// As [`Self::train`], but does nothing (`Ok(None)`) when, once the lock is
    /// held, the newest persisted model is younger than `fresh_for`.
    async fn train_unless_fresh(
        &self,
        trigger: Trigger,
        fresh_for: Option<Duration>,
    ) -> Result<Option<Arc<Model>>, TrainError> {
        let inner = self.inner.clone();
        let run = tokio::spawn(async move { inner.train_locked(trigger, fresh_for).await });
        let outcome = match run.await {
            Ok(outcome) => outcome,
            Err(err) => Err(TrainError::Aborted(err.to_string())),
        };
        let label = match &outcome {
            Ok(Some(_)) => "ok",
            Ok(None) => "skipped",
            Err(TrainError::Busy) => "busy",
            Err(_) => "failed",
        };
        metrics::counter!(
            "recommendation_trainings_total",
            "trigger" => trigger.as_str(),
            "outcome" => label,
        )
        .increment(1);
        outcome
    }

    /// Loads the newest persisted model if it is newer than the one served;
    /// true when it swapped one in.
    pub async fn load_newer(&self) -> Result<bool, StoreError> {
        self.inner.load_newer().await
    }

    /// Trains at start when nothing is served, then whenever the newest model
    /// is older than `interval`, until `shutdown`.
    pub fn run(&self, interval: Duration, shutdown: CancellationToken) {
        let trainer = self.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let serving = trainer.inner.cell.current().is_some();
                let due = match trainer.inner.store.newest_model().await {
                    Ok(None) => true,
                    Ok(Some((_, trained_at))) => !serving || age(trained_at) >= interval,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot look at the newest model");
                        false
                    }
                };
                let mut pause = jitter(interval.min(MAX_CHECK));
                if due {
                    let (trigger, fresh_for) = if serving {
                        (Trigger::Schedule, Some(interval))
                    } else {
                        (Trigger::Start, None)
                    };
                    match trainer.train_unless_fresh(trigger, fresh_for).await {
                        Ok(_) | Err(TrainError::Busy) => failures = 0,
                        Err(err) => {
                            failures += 1;
                            pause = RETRY.jittered(failures);
                            tracing::warn!(
                                error = format!("{err:#}"),
                                retry_in_s = pause.as_secs(),
                                trigger = trigger.as_str(),
                                "training failed; trying again"
                            );
                        }
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        });
    }

    /// Loads models other replicas persist: on their NOTIFY, and every `poll`.
    pub async fn follow(&self, poll: Duration, shutdown: CancellationToken) -> anyhow::Result<()> {
        let announced = Arc::new(Notify::new());
        let wake = announced.clone();
        shopmesh_platform::db::relay_notifications(
            self.inner.store.pool(),
            MODEL_CHANNEL,
            move |_| wake.notify_one(),
        )
        .await?;
        let trainer = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = announced.notified() => {}
                    () = tokio::time::sleep(jitter(poll)) => {}
                }
                if let Err(err) = trainer.load_newer().await {
                    tracing::warn!(error = %err, "cannot load the newest model");
                }
            }
        });
        Ok(())
    }
}

impl Inner {
    /// Loads the newest persisted model if it is newer than the one served;
    /// true when it swapped one in.
    async fn load_newer(&self) -> Result<bool, StoreError> {
        let inner = self;
        let Some(stored) = inner.store.model_after(inner.cell.seq()).await? else {
            return Ok(false);
        };
        let (seq, version) = (stored.seq, stored.version.clone());
        let decoded =
            tokio::task::spawn_blocking(move || snapshot::decode(stored.format, &stored.snapshot))
                .await;
        match decoded {
            Ok(Ok(model)) => {
                let model = Arc::new(model);
                inner.live.adopt_model(&model);
                let swapped = inner.cell.swap(model.clone());
                if swapped {
                    report(&model);
                    tracing::info!(version, "serving a persisted model");
                }
                Ok(swapped)
            }
            Ok(Err(err)) => {
                log_undecodable(seq, &version, &err);
                Ok(false)
            }
            Err(err) => {
                tracing::error!(error = %err, version, "decoding a model panicked");
                Ok(false)
            }
        }
    }

    async fn train_locked(
        &self,
        trigger: Trigger,
        fresh_for: Option<Duration>,
    ) -> Result<Option<Arc<Model>>, TrainError> {
        let Ok(_running) = self.running.try_lock() else {
            return Err(TrainError::Busy);
        };
        let mut conn = self.store.pool().acquire().await?;
        if !store::try_training_lock(&mut conn).await? {
            return Err(TrainError::Busy);
        }
        let outcome = self.train_holding_lock(&mut conn, trigger, fresh_for).await;
        if let Err(err) = store::release_training_lock(&mut conn).await {
            // Closing the session is what releases the lock then.
            tracing::warn!(error = %err, "cannot release the training lock; closing its connection");
            drop(conn.detach());
        }
        outcome
    }

    async fn train_holding_lock(
        &self,
        conn: &mut sqlx::PgConnection,
        trigger: Trigger,
        fresh_for: Option<Duration>,
    ) -> Result<Option<Arc<Model>>, TrainError> {
        if let Some(fresh_for) = fresh_for
            && let Some((_, trained_at)) = self.store.newest_model().await?
            && age(trained_at) < fresh_for
        {
            // Another replica trained while this one waited: serve that one.
            if let Err(err) = self.load_newer().await {
                tracing::warn!(error = %err, "cannot load the newest model");
            }
            return Ok(None);
        }
        let started = Instant::now();
        tracing::info!(trigger = trigger.as_str(), "training a model");
        let catalog = self.catalog.fetch().await?;
        self.live.replace(LiveCatalog::from_catalog(&catalog));
        let lines = self.store.training_lines().await?;
        let seq = store::next_model_seq(conn).await?;
        let params = self.params.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut model = Model::train(&catalog, &lines, &params);
            // Whole milliseconds, as persisted: every replica reports the same.
            let now = Utc::now();
            let trained_at = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
            model.info.seq = seq;
            model.info.version = format!("{}#{seq}", trained_at.format("%Y-%m-%dT%H:%M:%SZ"));
            model.info.trained_at = trained_at;
            model.info.duration = Duration::from_millis(started.elapsed().as_millis() as u64);
            let bytes = snapshot::encode(&model);
            (model, bytes)
        })
        .await;
        let (model, bytes) = built.map_err(|err| TrainError::Aborted(err.to_string()))?;
        store::save_model(
            self.store.pool(),
            seq,
            &model.info.version,
            snapshot::FORMAT,
            model.info.trained_at,
            &bytes,
        )
        .await?;
        let model = Arc::new(model);
        self.cell.swap(model.clone());
        report(&model);
        metrics::histogram!("recommendation_training_duration_seconds")
            .record(model.info.duration.as_secs_f64());
        tracing::info!(
            version = model.info.version,
            trigger = trigger.as_str(),
            duration_ms = model.info.duration.as_millis() as u64,
            orders = model.info.orders,
            users = model.info.users,
            products = model.info.products,
            interactions = model.info.interactions,
            snapshot_bytes = bytes.len(),
            "model trained and serving"
        );
        Ok(Some(model))
    }
}

fn log_undecodable(seq: i64, version: &str, err: &SnapshotError) {
    tracing::warn!(
        seq,
        version,
        error = %err,
        "a persisted model cannot be read by this build; a new one will be trained"
    );
}

/// Model gauges, on every replica that serves a new model.
fn report(model: &Model) {
    let info = &model.info;
    metrics::gauge!("recommendation_model_trained_timestamp_seconds")
        .set(info.trained_at.timestamp() as f64);
    for (what, value) in [
        ("orders", info.orders),
        ("users", info.users),
        ("products", info.products),
        ("interactions", info.interactions),
    ] {
        metrics::gauge!("recommendation_model_size", "what" => what).set(value as f64);
    }
}

fn age(at: chrono::DateTime<Utc>) -> Duration {
    (Utc::now() - at).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelInfo, Neighbours};

    fn model(seq: i64) -> Arc<Model> {
        Arc::new(Model::from_parts(
            ModelInfo {
                seq,
                version: format!("v#{seq}"),
                trained_at: Utc::now(),
                duration: Duration::ZERO,
                orders: 0,
                users: 0,
                products: 0,
                interactions: 0,
            },
            Vec::new(),
            Neighbours::from_rows(Vec::<Vec<(u32, f32)>>::new()),
            Neighbours::default(),
            Neighbours::default(),
            Vec::new(),
            None,
        ))
    }

    #[test]
    fn only_a_newer_model_replaces_the_served_one() {
        let cell = ModelCell::default();
        assert!(cell.current().is_none());
        assert!(cell.swap(model(2)));
        assert!(!cell.swap(model(1)));
        assert!(!cell.swap(model(2)));
        assert_eq!(cell.seq(), 2);
        assert!(cell.swap(model(3)));
        assert_eq!(
            cell.current().map(|m| m.info.version.clone()).as_deref(),
            Some("v#3")
        );
    }
}
