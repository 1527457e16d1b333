//! The outbox relay: publishes committed outbox rows to Kafka and marks them
//! published once the broker has acknowledged them.
//!
//! Several replicas may run it: each claims a batch with `FOR UPDATE SKIP
//! LOCKED`, so no row is claimed twice at once. Events of one record key are
//! published one after the other, each only after the previous one was
//! acknowledged, and never past an earlier unpublished event of the same key
//! (failed and waiting for its retry, or claimed by another replica): a key's
//! events reach Kafka in outbox order. Failures are recorded on the row and
//! retried with capped exponential backoff.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use shopmesh_proto::shop::events::v1::EventEnvelope;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::kafka::{envelope_headers, producer};
use crate::outbox::NOTIFY_CHANNEL;
use crate::{EventsError, EventsSettings};

/// How often the `outbox_backlog` gauge is refreshed.
const BACKLOG_INTERVAL: Duration = Duration::from_secs(5);
/// How often published rows older than the retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per prune statement, so pruning never holds long locks.
const PRUNE_BATCH: i64 = 10_000;

/// Publishes the outbox of one service's database. Build it with [`OutboxRelay::new`],
/// adjust it with the builder methods, then [`run`](OutboxRelay::run) or
/// [`spawn`](OutboxRelay::spawn) it.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    settings: EventsSettings,
    batch_size: i64,
    poll_interval: Duration,
    delivery_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    retention: Duration,
}

#[derive(Debug)]
struct Row {
    id: i64,
    topic: String,
    key: String,
    envelope: Vec<u8>,
}

/// What one publishing round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RoundReport {
    /// Rows claimed by this round.
    claimed: usize,
    /// Rows acknowledged by the broker and marked published.
    published: usize,
    /// Rows whose publishing failed (their attempts and last_error are updated).
    failed: usize,
    /// Of those, rows the producer could not deliver within the delivery timeout.
    timed_out: usize,
}

impl OutboxRelay {
    /// A relay over the outbox in `pool`'s database, publishing to `settings`' brokers.
    /// Defaults: batches of 100, a 500 ms poll when no notification arrives,
    /// 30 s delivery timeout, retries after 100 ms doubling up to 30 s, published
    /// rows kept 1 hour.
    pub fn new(pool: PgPool, settings: &EventsSettings) -> Self {
        Self {
            pool,
            settings: settings.clone(),
            batch_size: 100,
            poll_interval: Duration::from_millis(500),
            delivery_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            retention: Duration::from_secs(3600),
        }
    }

    /// Rows claimed per round.
    pub fn batch_size(mut self, rows: u16) -> Self {
        self.batch_size = i64::from(rows.max(1));
        self
    }

    /// How often to look for rows when no `NOTIFY` arrives (the fallback).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long the producer tries to deliver a record before the row counts as failed.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// Delay before the first retry of a failed row, doubled per attempt up to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// How long published rows stay in the outbox (for inspection) before deletion.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Runs [`run`](Self::run) on a task; the task ends after `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(err) = self.run(shutdown).await {
                tracing::error!(error = %err, "outbox relay stopped");
            }
        })
    }

    /// Publishes until `shutdown` is cancelled; a round in flight is finished
    /// (its acknowledged rows marked) before returning.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EventsError> {
        let mut producer = producer(&self.settings, self.delivery_timeout)?;
        let mut listener = self.listen().await;
        let mut backlog = BacklogGauge::new(&self.settings.client_id);
        let mut last_prune: Option<Instant> = None;
        tracing::info!(service = %self.settings.client_id, "outbox relay started");
        while !shutdown.is_cancelled() {
            let round = self.publish_round(&producer).await;
            let more = match round {
                Ok(report) => {
                    if report.claimed > 0 {
                        tracing::debug!(
                            claimed = report.claimed,
                            published = report.published,
                            failed = report.failed,
                            "outbox relay round"
                        );
                    }
                    if report.failed > 0
                        && let Some((code, reason)) = producer.client().fatal_error()
                    {
                        tracing::warn!(?code, %reason, "producer failed fatally; creating a new one");
                        producer = self::producer(&self.settings, self.delivery_timeout)?;
                    } else if report.timed_out > 0 && report.published == 0 {
                        // Nothing delivered in time. With the brokers away a new producer
                        // changes nothing (and costs little); but brokers that lost this
                        // producer's state (a rebuilt cluster; a restarted tansu with
                        // in-memory storage) answer its idempotent produce requests with
                        // UNKNOWN_PRODUCER_ID for ever, with no fatal error: only a new
                        // producer, with a new producer id, gets through.
                        tracing::warn!(
                            "nothing delivered within the delivery timeout; creating a new producer"
                        );
                        producer = self::producer(&self.settings, self.delivery_timeout)?;
                    }
                    // A full batch that made progress: more is probably waiting. (A full
                    // batch of blocked rows waits for the poll instead of spinning.)
                    report.claimed as i64 == self.batch_size && report.published > 0
                }
                Err(err) => {
                    tracing::warn!(error = %err, "outbox relay round failed");
                    false
                }
            };
            backlog.refresh_every(&self.pool, BACKLOG_INTERVAL).await;
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL) {
                last_prune = Some(Instant::now());
                if let Err(err) = self.prune().await {
                    tracing::warn!(error = %err, "cannot prune the outbox");
                }
            }
            if more {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                notified = wait_for_notification(&mut listener) => {
                    if !notified {
                        listener = None;
                    }
                }
            }
        }
        // Whatever is still queued in the producer was not marked; flush it anyway
        // so the broker gets it sooner (it is republished later regardless).
        let _ = producer.flush(Timeout::After(Duration::from_secs(5)));
        tracing::info!(service = %self.settings.client_id, "outbox relay stopped");
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let result = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match result {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::warn!(error = %err, "cannot LISTEN for outbox writes; polling only");
                None
            }
        }
    }

    /// Claims one batch, publishes what may be published, records the outcome.
    async fn publish_round(&self, producer: &FutureProducer) -> Result<RoundReport, EventsError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, topic, key, envelope FROM outbox \
             WHERE published_at IS NULL AND next_attempt_at <= now() \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(RoundReport::default());
        }
        let claimed = rows.len();
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|(id, topic, key, envelope)| Row {
                id,
                topic,
                key,
                envelope,
            })
            .collect();

        // Per key, the first unpublished row this round did not claim: rows of
        // that key after it must wait, or they would overtake it.
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let keys: HashSet<(&str, &str)> = rows
            .iter()
            .map(|r| (r.topic.as_str(), r.key.as_str()))
            .collect();
        let (topics, key_names): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
        let max_id = ids.iter().copied().max().unwrap_or_default();
        let blockers: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT o.topic, o.key, min(o.id) FROM outbox o \
             JOIN unnest($1::text[], $2::text[]) AS k(topic, key) \
               ON o.topic = k.topic AND o.key = k.key \
             WHERE o.published_at IS NULL AND o.id < $3 AND NOT (o.id = ANY($4)) \
             GROUP BY o.topic, o.key",
        )
        .bind(&topics)
        .bind(&key_names)
        .bind(max_id)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let blockers: HashMap<(String, String), i64> = blockers
            .into_iter()
            .map(|(topic, key, id)| ((topic, key), id))
            .collect();

        // One sequence per key, in outbox order; keys are published concurrently.
        let mut sequences: Vec<Vec<&Row>> = Vec::new();
        let mut sequence_of: HashMap<(&str, &str), usize> = HashMap::new();
        for row in &rows {
            let blocked = blockers
                .get(&(row.topic.clone(), row.key.clone()))
                .is_some_and(|first| *first < row.id);
            if blocked {
                continue;
            }
            let index = *sequence_of
                .entry((row.topic.as_str(), row.key.as_str()))
                .or_insert_with(|| {
                    sequences.push(Vec::new());
                    sequences.len() - 1
                });
            sequences[index].push(row);
        }
        let outcomes = futures::future::join_all(
            sequences
                .iter()
                .map(|sequence| self.publish_sequence(producer, sequence)),
        )
        .await;

        let mut report = RoundReport {
            claimed,
            ..RoundReport::default()
        };
        let mut published: Vec<i64> = Vec::new();
        for (sequence_published, failure) in outcomes {
            for row in &sequence_published {
                metrics::counter!("outbox_published_total",
                    "service" => self.settings.client_id.clone(), "topic" => row.topic.clone())
                .increment(1);
            }
            published.extend(sequence_published.iter().map(|row| row.id));
            if let Some((row, error, timed_out)) = failure {
                report.failed += 1;
                report.timed_out += usize::from(timed_out);
                metrics::counter!("outbox_publish_failures_total",
                    "service" => self.settings.client_id.clone(), "topic" => row.topic.clone())
                .increment(1);
                tracing::warn!(outbox_id = row.id, topic = %row.topic, key = %row.key, %error,
                    "cannot publish event; will retry");
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = now() + make_interval(secs => \
                       least($3 * power(2, attempts), $4)) \
                     WHERE id = $1",
                )
                .bind(row.id)
                .bind(&error)
                .bind(self.backoff_initial.as_secs_f64())
                .bind(self.backoff_max.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            }
        }
        report.published = published.len();
        if !published.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Publishes a key's rows in order, each after the previous one was
    /// acknowledged; stops at the first failure. Returns the published rows and
    /// the failed one with its error and whether it was a delivery timeout.
    async fn publish_sequence<'r>(
        &self,
        producer: &FutureProducer,
        sequence: &[&'r Row],
    ) -> (Vec<&'r Row>, Option<(&'r Row, String, bool)>) {
        let mut published = Vec::with_capacity(sequence.len());
        for row in sequence {
            let headers = match EventEnvelope::decode(row.envelope.as_slice()) {
                Ok(envelope) => envelope_headers(&envelope),
                Err(err) => {
                    return (
                        published,
                        Some((row, format!("stored envelope: {err}"), false)),
                    );
                }
            };
            let record = FutureRecord::to(&row.topic)
                .key(&row.key)
                .payload(&row.envelope)
                .headers(headers);
            match producer
                .send(record, Timeout::After(self.delivery_timeout))
                .await
            {
                Ok(_) => published.push(*row),
                Err((err, _)) => {
                    let timed_out =
                        err.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
                    return (published, Some((row, err.to_string(), timed_out)));
                }
            }
        }
        (published, None)
    }

    async fn prune(&self) -> Result<(), sqlx::Error> {
        loop {
            let deleted = sqlx::query(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
                 WHERE published_at < now() - make_interval(secs => $1) LIMIT $2)",
            )
            .bind(self.retention.as_secs_f64())
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if deleted < PRUNE_BATCH as u64 {
                return Ok(());
            }
        }
    }
}

/// Waits for a NOTIFY; false when the listener is gone (then the relay polls).
async fn wait_for_notification(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(listener) => match listener.recv().await {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(error = %err, "outbox LISTEN connection lost; polling only");
                false
            }
        },
        None => std::future::pending().await,
    }
}

/// The `outbox_backlog` gauge per topic, set back to 0 for topics that drained.
struct BacklogGauge {
    service: String,
    topics: HashSet<String>,
    last: Option<Instant>,
}

impl BacklogGauge {
    fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            topics: HashSet::new(),
            last: None,
        }
    }

    async fn refresh_every(&mut self, pool: &PgPool, interval: Duration) {
        if self.last.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        self.last = Some(Instant::now());
        let counts = match pool.acquire().await {
            Ok(mut conn) => crate::outbox::backlog(&mut conn).await,
            Err(err) => Err(err),
        };
        match counts {
            Ok(counts) => {
                let mut seen = HashSet::new();
                for (topic, count) in counts {
                    metrics::gauge!("outbox_backlog", "service" => self.service.clone(), "topic" => topic.clone())
                        .set(count as f64);
                    seen.insert(topic);
                }
                for topic in self.topics.difference(&seen) {
                    metrics::gauge!("outbox_backlog", "service" => self.service.clone(), "topic" => topic.clone())
                        .set(0.0);
                }
                self.topics.extend(seen);
            }
            Err(err) => tracing::warn!(error = %err, "cannot count the outbox backlog"),
        }
    }
}
