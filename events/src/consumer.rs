//! Consuming events in a named consumer group: each event is applied in one
//! database transaction together with its inbox row, so a redelivered event
//! changes nothing; failures are retried with backoff, then dead-lettered.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use shopmesh_proto::shop::events::v1::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::envelope::EnvelopeExt as _;
use crate::kafka::{self, copy_headers, dlq_topic, header};
use crate::{EventsError, EventsSettings};
use shopmesh_platform::backoff::Backoff;
use shopmesh_platform::tracing_context::CallContext;

/// How a consumer group applies an event.
///
/// `handle` runs inside the transaction that also records the event in the
/// inbox: write the effect through `tx` and return `Ok`, and both commit
/// together. Return an error and both roll back; the event is retried, and after
/// the last attempt dead-lettered. Ignore event types you do not care about by
/// returning `Ok(())` (the event is still recorded as seen).
///
/// Effects outside the database (an email, a call to a provider) must not be
/// made here: record the intent in `tx` (e.g. a row in an `outgoing_emails`
/// table) and act on it after commit from a separate worker, so a retry or a
/// redelivery does not repeat it.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A handler's failure. Any error converts into a retryable one with `?`;
/// [`HandlerError::permanent`] marks one that no retry can fix (straight to the DLQ).
#[derive(Debug)]
pub struct HandlerError {
    error: anyhow::Error,
    permanent: bool,
}

impl HandlerError {
    /// A failure that may pass (a conflict, a timeout): retried with backoff.
    pub fn retryable(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            permanent: false,
        }
    }

    /// A failure that will never pass (an event this consumer cannot accept):
    /// dead-lettered at once.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            permanent: true,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl<E: Into<anyhow::Error>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retryable(error)
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// A consumer group over one or more topics, applying events with a handler.
pub struct EventConsumer<H> {
    pool: PgPool,
    settings: EventsSettings,
    group: String,
    topics: Vec<String>,
    handler: Arc<H>,
    max_attempts: u32,
    backoff: Backoff,
    lag_interval: Duration,
    inbox_retention: Duration,
}

enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
    /// Shutdown came during retries: the offset is not committed.
    Interrupted,
}

enum Failure {
    Handler(HandlerError),
    /// The database (begin, inbox, commit): retried without counting an attempt.
    Database(sqlx::Error),
}

impl<H: EventHandler> EventConsumer<H> {
    /// A consumer in `group` (e.g. `svc-order`) of `topics`. Defaults:
    /// `settings.max_attempts` attempts, retries after 200 ms doubling up to 10 s,
    /// lag refreshed every 10 s, inbox rows kept 14 days.
    pub fn new(
        pool: PgPool,
        settings: &EventsSettings,
        group: &str,
        topics: &[&str],
        handler: H,
    ) -> Self {
        Self {
            pool,
            settings: settings.clone(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            handler: Arc::new(handler),
            max_attempts: settings.max_attempts.max(1),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            lag_interval: Duration::from_secs(10),
            inbox_retention: Duration::from_secs(14 * 24 * 3600),
        }
    }

    /// Handler attempts before a message goes to `<topic>.dlq`.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Delay before the first retry, doubled per attempt up to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max.max(initial));
        self
    }

    /// How often `kafka_consumer_lag` is refreshed.
    pub fn lag_interval(mut self, interval: Duration) -> Self {
        self.lag_interval = interval;
        self
    }

    /// How long inbox rows are kept; redeliveries older than this are applied again.
    /// Keep it well above the topics' retention.
    pub fn inbox_retention(mut self, retention: Duration) -> Self {
        self.inbox_retention = retention;
        self
    }

    /// Runs [`run`](Self::run) on a task.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let group = self.group.clone();
            if let Err(err) = self.run(shutdown).await {
                tracing::error!(%group, error = %err, "event consumer stopped");
            }
        })
    }

    /// Consumes until `shutdown` is cancelled. The message in flight is
    /// finished (applied and committed) first; retries still pending are
    /// abandoned without committing, so the message is delivered again.
    ///
    /// A group that stalls — this member holds no partition while a partition
    /// of its topics has work waiting and nobody commits for
    /// [`STALL_AFTER`] — is left and joined again with a new consumer: the
    /// leave makes the broker form the group afresh. (A Kafka-protocol broker
    /// can leave a member that restarted after a crash with no partition and
    /// no rebalance to follow: tansu 0.6 does, docs/events.md.)
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EventsError> {
        let producer = kafka::producer(&self.settings, Duration::from_secs(30))?;
        loop {
            let stalled = CancellationToken::new();
            self.consume(&producer, &shutdown, &stalled).await?;
            if shutdown.is_cancelled() || !stalled.is_cancelled() {
                return Ok(());
            }
            metrics::counter!("kafka_consumer_rejoins_total", "group" => self.group.clone())
                .increment(1);
            tracing::error!(group = %self.group, topics = ?self.topics,
                "consumer group stalled: no partition here and nobody consuming; leaving and joining again");
        }
    }

    /// One consumer's life: subscribe, consume until `shutdown` or `stalled`,
    /// close (which leaves the group).
    async fn consume(
        &self,
        producer: &FutureProducer,
        shutdown: &CancellationToken,
        stalled: &CancellationToken,
    ) -> Result<(), EventsError> {
        let consumer = Arc::new(kafka::consumer(&self.settings, &self.group)?);
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let maintenance = tokio::spawn(maintain(
            consumer.clone(),
            self.pool.clone(),
            self.group.clone(),
            self.topics.clone(),
            self.lag_interval,
            self.inbox_retention,
            shutdown.clone(),
            stalled.clone(),
        ));
        tracing::info!(group = %self.group, topics = ?self.topics, "event consumer started");
        let mut last_commit: Option<TopicPartitionList> = None;
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = stalled.cancelled() => break,
                received = consumer.recv() => received.map(|m| m.detach()),
            };
            let message = match received {
                Ok(message) => message,
                Err(err) => {
                    tracing::warn!(group = %self.group, error = %err, "kafka consumer error");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let outcome = self.process(producer, &message, shutdown).await;
            let result = match outcome {
                Outcome::Interrupted => break,
                Outcome::Applied => "applied",
                Outcome::Duplicate => "duplicate",
                Outcome::DeadLettered => "dead_lettered",
            };
            metrics::counter!("events_consumed_total",
                "group" => self.group.clone(), "topic" => message.topic().to_owned(), "result" => result)
            .increment(1);
            let mut offsets = TopicPartitionList::new();
            offsets.add_partition_offset(
                message.topic(),
                message.partition(),
                Offset::Offset(message.offset() + 1),
            )?;
            // Async: commits stay ordered; one lost in a crash only means a
            // redelivery, which the inbox absorbs.
            if let Err(err) = consumer.commit(&offsets, CommitMode::Async) {
                tracing::warn!(group = %self.group, error = %err, "offset commit failed");
            }
            last_commit = Some(offsets);
        }
        // The last commit again, synchronously, so it is not lost with the process.
        if let Some(offsets) = last_commit
            && let Err(err) = consumer.commit(&offsets, CommitMode::Sync)
        {
            tracing::warn!(group = %self.group, error = %err, "final offset commit failed");
        }
        maintenance.abort();
        // Its clone of the consumer is gone once it has ended; dropping the
        // last one closes the consumer, which leaves the group.
        let _ = maintenance.await;
        drop(consumer);
        tracing::info!(group = %self.group, "event consumer stopped");
        Ok(())
    }

    async fn process(
        &self,
        producer: &FutureProducer,
        message: &OwnedMessage,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let envelope = match EventEnvelope::decode_record(message.payload().unwrap_or_default()) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(group = %self.group, topic = message.topic(),
                    partition = message.partition(), offset = message.offset(), error = %err,
                    "not an event envelope; dead-lettering it");
                return self
                    .dead_letter(producer, message, &err.to_string(), 0, shutdown)
                    .await;
            }
        };
        let mut attempt: u32 = 0;
        let mut database_failures: u32 = 0;
        loop {
            let failure = match self.apply_once(message.topic(), &envelope).await {
                Ok(true) => {
                    self.record_delivery(message.topic(), &envelope);
                    return Outcome::Applied;
                }
                Ok(false) => return Outcome::Duplicate,
                Err(failure) => failure,
            };
            let delay = match failure {
                Failure::Handler(err) => {
                    attempt += 1;
                    metrics::counter!("event_handler_failures_total",
                        "group" => self.group.clone(), "topic" => message.topic().to_owned())
                    .increment(1);
                    tracing::warn!(group = %self.group, event_id = %envelope.event_id,
                        event_type = %envelope.event_type, attempt, error = %err, "event handler failed");
                    if err.is_permanent() || attempt >= self.max_attempts {
                        return self
                            .dead_letter(producer, message, &err.to_string(), attempt, shutdown)
                            .await;
                    }
                    self.backoff.jittered(attempt)
                }
                Failure::Database(err) => {
                    database_failures += 1;
                    tracing::warn!(group = %self.group, error = %err, "database unavailable for the inbox; retrying");
                    self.backoff.jittered(database_failures)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Interrupted,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// `event_delivery_duration_seconds`: from when the producer recorded the
    /// event (`occurred_at`, set inside its outbox transaction) to when this
    /// group's effect committed — relay, broker and consumer together, retries
    /// included. Clock skew between hosts shows up here; negative is clamped.
    fn record_delivery(&self, topic: &str, envelope: &EventEnvelope) {
        let Some(occurred) = envelope
            .occurred_at
            .and_then(|t| SystemTime::try_from(t).ok())
        else {
            return;
        };
        let seconds = SystemTime::now()
            .duration_since(occurred)
            .unwrap_or_default()
            .as_secs_f64();
        metrics::histogram!("event_delivery_duration_seconds",
            "group" => self.group.clone(), "topic" => topic.to_owned())
        .record(seconds);
    }

    /// One attempt: inbox row first, then the handler, one commit. `Ok(false)`
    /// when this group has already applied the event.
    async fn apply_once(&self, topic: &str, envelope: &EventEnvelope) -> Result<bool, Failure> {
        let event_id = envelope
            .event_uuid()
            .map_err(|err| Failure::Handler(HandlerError::permanent(err)))?;
        let mut tx = self.pool.begin().await.map_err(Failure::Database)?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.group)
        .bind(event_id)
        .bind(topic)
        .execute(&mut *tx)
        .await
        .map_err(Failure::Database)?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        let context = CallContext {
            request_id: envelope.request_id.clone(),
            traceparent: envelope.traceparent.clone(),
            tracestate: envelope.tracestate.clone(),
        };
        let span = tracing::info_span!("event",
            group = %self.group, topic, event_type = %envelope.event_type,
            event_id = %envelope.event_id, request_id = %envelope.request_id);
        if !envelope.traceparent.is_empty() {
            let mut headers = http::HeaderMap::new();
            if let Ok(value) = envelope.traceparent.parse() {
                headers.insert("traceparent", value);
            }
            shopmesh_platform::tracing_context::attach_remote_parent(&span, &headers);
        }
        context
            .scope(self.handler.handle(&mut tx, envelope))
            .instrument(span)
            .await
            .map_err(Failure::Handler)?;
        tx.commit().await.map_err(Failure::Database)?;
        Ok(true)
    }

    /// Publishes the message unchanged to `<topic>.dlq` with the dlq_* headers;
    /// retries until the broker has it (or shutdown, leaving it uncommitted).
    async fn dead_letter(
        &self,
        producer: &FutureProducer,
        message: &OwnedMessage,
        error: &str,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let dlq = dlq_topic(message.topic());
        let (partition, offset, attempts) = (
            message.partition().to_string(),
            message.offset().to_string(),
            attempts.to_string(),
        );
        let mut failures = 0;
        loop {
            let headers = [
                (header::DLQ_ERROR, error),
                (header::DLQ_ORIGINAL_TOPIC, message.topic()),
                (header::DLQ_ORIGINAL_PARTITION, partition.as_str()),
                (header::DLQ_ORIGINAL_OFFSET, offset.as_str()),
                (header::DLQ_ATTEMPTS, attempts.as_str()),
                (header::DLQ_GROUP, self.group.as_str()),
            ]
            .into_iter()
            .fold(
                copy_headers(message.headers(), header::DLQ_PREFIX),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value),
                    })
                },
            );
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&dlq).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match producer
                .send(record, Timeout::After(Duration::from_secs(30)))
                .await
            {
                Ok(_) => {
                    tracing::error!(group = %self.group, topic = message.topic(), %dlq,
                        partition = message.partition(), offset = message.offset(), %error,
                        "message dead-lettered");
                    return Outcome::DeadLettered;
                }
                Err((err, _)) => {
                    failures += 1;
                    tracing::warn!(%dlq, error = %err, "cannot publish to the dead-letter topic; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Interrupted,
                () = tokio::time::sleep(self.backoff.jittered(failures)) => {}
            }
        }
    }
}

/// How long this member may hold no partition while the group's work waits
/// and nobody commits before it leaves and joins again: twice the session
/// timeout, so a member that died without leaving has been dropped by then.
pub const STALL_AFTER: Duration = Duration::from_secs(20);

/// Periodically: the lag gauge, the stall watch, and pruning of old inbox rows.
#[allow(clippy::too_many_arguments)]
async fn maintain(
    consumer: Arc<StreamConsumer>,
    pool: PgPool,
    group: String,
    topics: Vec<String>,
    lag_interval: Duration,
    inbox_retention: Duration,
    shutdown: CancellationToken,
    stalled: CancellationToken,
) {
    let mut tick = tokio::time::interval(lag_interval.min(STALL_AFTER / 2));
    let mut last_lag: Option<std::time::Instant> = None;
    let mut last_prune: Option<std::time::Instant> = None;
    let mut watch = StallWatch::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let measure_lag = last_lag.is_none_or(|at| at.elapsed() >= lag_interval);
        let (consumer_now, group_now, topics_now) =
            (consumer.clone(), group.clone(), topics.clone());
        let looked = tokio::task::spawn_blocking(move || {
            if measure_lag && let Err(err) = consumer_lag(&consumer_now, &group_now) {
                tracing::debug!(group = %group_now, error = %err, "cannot measure consumer lag");
            }
            waiting_work(&consumer_now, &topics_now)
        })
        .await;
        if measure_lag {
            last_lag = Some(std::time::Instant::now());
        }
        match looked {
            Ok(Ok(waiting)) => {
                if watch.observe(std::time::Instant::now(), waiting) {
                    stalled.cancel();
                    return;
                }
            }
            Ok(Err(err)) => tracing::debug!(%group, error = %err, "cannot look for waiting work"),
            Err(_) => {}
        }
        if last_prune.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
            last_prune = Some(std::time::Instant::now());
            let pruned = sqlx::query(
                "DELETE FROM inbox WHERE consumer_group = $1 \
                 AND processed_at < now() - make_interval(secs => $2)",
            )
            .bind(&group)
            .bind(inbox_retention.as_secs_f64())
            .execute(&pool)
            .await;
            if let Err(err) = pruned {
                tracing::warn!(%group, error = %err, "cannot prune the inbox");
            }
        }
    }
}

/// Partitions with records waiting beyond the group's committed offset:
/// (topic, partition, committed offset).
type WaitingWork = Vec<(String, i32, i64)>;

/// The group's committed offset of each partition of `topics` that has
/// records beyond it, when this member holds no partition (`None` when it
/// holds some: then it is doing the work itself).
fn waiting_work(
    consumer: &StreamConsumer,
    topics: &[String],
) -> Result<Option<WaitingWork>, rdkafka::error::KafkaError> {
    if consumer.assignment()?.count() > 0 {
        return Ok(None);
    }
    let timeout = Timeout::After(Duration::from_secs(5));
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                partitions.add_partition(found.name(), partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut waiting = Vec::new();
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        let at = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        if at < high {
            waiting.push((topic.to_owned(), partition, at));
        }
    }
    Ok(Some(waiting))
}

/// Decides when a group has stalled: this member held no partition, and the
/// same work waited at the same committed offsets, for [`STALL_AFTER`].
#[derive(Debug, Default)]
struct StallWatch {
    since: Option<(std::time::Instant, WaitingWork)>,
}

impl StallWatch {
    /// Takes one look ([`waiting_work`]); true when the group has stalled.
    fn observe(&mut self, now: std::time::Instant, waiting: Option<WaitingWork>) -> bool {
        match waiting {
            Some(waiting) if !waiting.is_empty() => match &self.since {
                Some((since, seen)) if *seen == waiting => {
                    now.duration_since(*since) >= STALL_AFTER
                }
                _ => {
                    self.since = Some((now, waiting));
                    false
                }
            },
            // Partitions here, or nothing waiting: not stalled.
            _ => {
                self.since = None;
                false
            }
        }
    }
}

/// Sets `kafka_consumer_lag` for each assigned partition: high watermark minus
/// the position (or the committed offset before anything was consumed).
fn consumer_lag(consumer: &StreamConsumer, group: &str) -> Result<(), rdkafka::error::KafkaError> {
    let timeout = Timeout::After(Duration::from_secs(5));
    let positions = consumer.position()?;
    if positions.count() == 0 {
        return Ok(());
    }
    let committed = consumer.committed_offsets(positions.clone(), timeout)?;
    for element in positions.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        let position = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => match committed
                .find_partition(topic, partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => low,
            },
        };
        metrics::gauge!("kafka_consumer_lag",
            "topic" => topic.to_owned(), "group" => group.to_owned(), "partition" => partition.to_string())
        .set((high - position).max(0) as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_stalls_when_the_same_work_waits_with_no_partition_here() {
        let start = std::time::Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let waiting = |offset: i64| {
            Some(vec![(
                shopmesh_proto::topics::PAYMENT_EVENTS.to_owned(),
                0,
                offset,
            )])
        };
        let mut watch = StallWatch::default();
        assert!(!watch.observe(at(0), waiting(7)));
        assert!(!watch.observe(at(10), waiting(7)));
        assert!(
            watch.observe(at(20), waiting(7)),
            "20 s at the same offsets"
        );

        // Somebody else commits: the group is working, only not here.
        let mut watch = StallWatch::default();
        assert!(!watch.observe(at(0), waiting(7)));
        assert!(!watch.observe(at(10), waiting(9)));
        assert!(!watch.observe(at(20), waiting(9)));
        assert!(watch.observe(at(30), waiting(9)));

        // A partition here, or nothing waiting, starts the watch afresh.
        for interruption in [None, Some(Vec::new())] {
            let mut watch = StallWatch::default();
            assert!(!watch.observe(at(0), waiting(7)));
            assert!(!watch.observe(at(10), interruption));
            assert!(!watch.observe(at(20), waiting(7)));
            assert!(!watch.observe(at(30), waiting(7)));
        }
    }

    #[test]
    fn any_error_is_a_retryable_handler_error() {
        fn failing() -> Result<(), HandlerError> {
            Err(std::io::Error::other("boom"))?
        }
        let err = failing().unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.to_string(), "boom");
        assert!(HandlerError::permanent(anyhow::anyhow!("no")).is_permanent());
    }
}
