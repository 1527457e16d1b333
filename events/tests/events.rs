#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The events layer against the real PostgreSQL and the real broker
//! (`TEST_KAFKA_BROKERS`, always set by `make test`): outbox and relay, inbox,
//! dead letters and their replay, topic creation.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use shopmesh_events::{
    self as events, CancellationToken, EnvelopeExt as _, Event, EventConsumer, EventEnvelope,
    EventHandler, EventsSettings, HandlerError, OutboxRelay, header, header_str,
};
use shopmesh_platform::tracing_context::CallContext;
use shopmesh_proto::shop::events::v1::UserRegistered;
use sqlx::{PgConnection, PgPool};

const DEADLINE: Duration = Duration::from_secs(20);

/// Settings with a client id of its own (so replay groups never collide).
fn settings() -> EventsSettings {
    EventsSettings::for_brokers(
        &shopmesh_testkit::kafka_brokers(),
        &format!("events-test-{}", uuid::Uuid::now_v7().simple()),
    )
}

/// A new topic (and its .dlq) for one test.
async fn new_topic(settings: &EventsSettings) -> String {
    let topic = format!("test.events.{}", uuid::Uuid::now_v7().simple());
    events::ensure_topics(settings, &[&topic]).await.unwrap();
    topic
}

/// A fresh database with the events tables and a table the test handler writes.
async fn fresh_pool() -> PgPool {
    let url = shopmesh_testkit::fresh_database_url();
    shopmesh_platform::db::ensure_database(&url).await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    events::migrate(&pool).await.unwrap();
    sqlx::query("CREATE TABLE applied (event_id text NOT NULL, mark text NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// What every Kafka test starts from: its own client id, topic (with .dlq),
/// database and consumer group; metrics recorded.
struct Fixture {
    settings: EventsSettings,
    topic: String,
    pool: PgPool,
    group: String,
}

async fn fixture() -> Fixture {
    shopmesh_platform::metrics::handle();
    let settings = settings();
    let topic = new_topic(&settings).await;
    Fixture {
        settings,
        topic,
        pool: fresh_pool().await,
        group: format!("group-{}", uuid::Uuid::now_v7().simple()),
    }
}

/// Waits until `sql` (a count) returns `expected`.
async fn wait_for_count(pool: &PgPool, what: &str, sql: &str, expected: i64) {
    eventually(what, || async { count(pool, sql).await == expected }).await;
}

async fn unpublished(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM outbox WHERE published_at IS NULL",
    )
    .await
}

/// An event of aggregate `key` carrying `mark` (in its email field), which the
/// tests follow through the relay, the broker and the handlers.
fn marked(key: &str, mark: &str) -> Event {
    let payload = UserRegistered {
        user_id: key.to_owned(),
        email: mark.to_owned(),
        ..Default::default()
    };
    Event::new(&payload, "user", key)
}

async fn enqueue_committed(pool: &PgPool, topic: &str, envelope: &EventEnvelope) {
    let mut tx = pool.begin().await.unwrap();
    events::enqueue(&mut tx, topic, envelope).await.unwrap();
    tx.commit().await.unwrap();
}

/// Polls `check` until it holds, failing the test after the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Reads `count` records of `topic` from the beginning of every partition.
async fn read_records(settings: &EventsSettings, topic: &str, count: usize) -> Vec<OwnedMessage> {
    read_records_with(settings, topic, count).await.0
}

/// [`read_records`], also returning the consumer, positioned after them.
async fn read_records_with(
    settings: &EventsSettings,
    topic: &str,
    count: usize,
) -> (Vec<OwnedMessage>, StreamConsumer) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set(
            "group.id",
            format!("reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..settings.topic_partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    while records.len() < count {
        let message = tokio::time::timeout(DEADLINE, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic}: only {} of {count} records", records.len()))
            .unwrap();
        records.push(message.detach());
    }
    (records, consumer)
}

fn envelope_of(record: &OwnedMessage) -> EventEnvelope {
    EventEnvelope::decode_record(record.payload().unwrap()).unwrap()
}

fn mark_of(record: &OwnedMessage) -> String {
    envelope_of(record)
        .payload_as::<UserRegistered>()
        .unwrap()
        .email
}

fn relay(pool: &PgPool, settings: &EventsSettings) -> OutboxRelay {
    OutboxRelay::new(pool.clone(), settings)
        .poll_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .delivery_timeout(Duration::from_secs(5))
}

/// Writes `applied` rows; fails (after writing, so the rollback is tested too)
/// while `failing` is set.
#[derive(Clone, Default)]
struct Recorder {
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl EventHandler for Recorder {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let payload: UserRegistered = envelope.payload_as()?;
        sqlx::query("INSERT INTO applied (event_id, mark) VALUES ($1, $2)")
            .bind(&envelope.event_id)
            .bind(&payload.email)
            .execute(&mut *tx)
            .await?;
        if self.failing.load(Ordering::SeqCst) {
            return Err(HandlerError::retryable(anyhow::anyhow!(
                "inventory is unavailable"
            )));
        }
        Ok(())
    }
}

fn consumer(
    pool: &PgPool,
    settings: &EventsSettings,
    group: &str,
    topic: &str,
    handler: Recorder,
) -> EventConsumer<Recorder> {
    EventConsumer::new(pool.clone(), settings, group, &[topic], handler)
        .max_attempts(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .lag_interval(Duration::from_millis(200))
}

/// Cancels and waits for background tasks: they must stop promptly.
async fn stop(token: CancellationToken, tasks: Vec<tokio::task::JoinHandle<()>>) {
    token.cancel();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("task did not stop after shutdown")
            .unwrap();
    }
}

async fn publish_raw(settings: &EventsSettings, topic: &str, key: &str, value: &[u8]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// Lines of the Prometheus rendering starting with `prefix` and containing every needle.
fn metrics_lines(prefix: &str, needles: &[&str]) -> Vec<String> {
    let handle = shopmesh_platform::metrics::handle();
    handle.run_upkeep();
    handle
        .render()
        .lines()
        .filter(|line| line.starts_with(prefix) && needles.iter().all(|n| line.contains(n)))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_committed_event_is_published_with_key_headers_and_payload_and_a_rolled_back_one_is_not()
{
    let Fixture {
        settings,
        topic,
        pool,
        ..
    } = fixture().await;

    let call = CallContext {
        request_id: "req-42".to_owned(),
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        tracestate: String::new(),
    };
    let first = call.clone().scope(async { marked("p-1", "first") }).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO applied (event_id, mark) VALUES ('state', 'change')")
        .execute(&mut *tx)
        .await
        .unwrap();
    events::enqueue(&mut tx, &topic, &first).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    events::enqueue(&mut tx, &topic, &marked("p-1", "rolled back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // Same key, so it would be published after a leaked rolled-back event.
    enqueue_committed(&pool, &topic, &marked("p-1", "sentinel")).await;

    let token = CancellationToken::new();
    let relay = relay(&pool, &settings).spawn(token.clone());
    let records = read_records(&settings, &topic, 2).await;
    let marks: Vec<String> = records.iter().map(mark_of).collect();
    assert_eq!(marks, ["first", "sentinel"]);

    let record = &records[0];
    assert_eq!(record.key(), Some(&b"p-1"[..]));
    let headers = record.headers();
    assert_eq!(
        header_str(headers, header::EVENT_TYPE),
        Some("shop.events.v1.UserRegistered")
    );
    assert_eq!(
        header_str(headers, header::EVENT_ID),
        Some(first.event_id.as_str())
    );
    assert_eq!(
        header_str(headers, header::TRACEPARENT),
        Some(call.traceparent.as_str())
    );
    assert_eq!(header_str(headers, header::REQUEST_ID), Some("req-42"));
    let envelope = envelope_of(record);
    assert_eq!(&envelope, first.envelope());
    assert_eq!(envelope.aggregate_type, "user");
    assert_eq!(
        envelope.payload.as_ref().unwrap().type_url,
        "type.googleapis.com/shop.events.v1.UserRegistered"
    );

    wait_for_count(
        &pool,
        "rows marked published",
        "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        0,
    )
    .await;
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 2);
    stop(token, vec![relay]).await;
}

#[tokio::test]
async fn with_the_broker_down_rows_wait_with_their_errors_then_are_published_in_key_order() {
    let Fixture {
        settings,
        topic,
        pool,
        ..
    } = fixture().await;
    for i in 0..3 {
        for key in ["k1", "k2"] {
            enqueue_committed(&pool, &topic, &marked(key, &format!("{key}-{i}"))).await;
        }
    }

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = EventsSettings {
        brokers: closed.local_addr().unwrap().to_string(),
        ..settings.clone()
    };
    drop(closed);
    let token = CancellationToken::new();
    let failing_relay = relay(&pool, &down)
        .delivery_timeout(Duration::from_millis(500))
        .spawn(token.clone());
    wait_for_count(
        &pool,
        "failed attempts recorded on both keys' first rows",
        "SELECT count(DISTINCT key) FROM outbox WHERE attempts > 0 AND last_error IS NOT NULL",
        2,
    )
    .await;
    let backlog = {
        let mut conn = pool.acquire().await.unwrap();
        events::backlog(&mut conn).await.unwrap()
    };
    assert_eq!(backlog, vec![(topic.clone(), 6)]);
    // Later rows of a key wait behind its failed first row.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM outbox WHERE attempts > 0").await,
        2
    );
    eventually("outbox_backlog gauge", || async {
        metrics_lines("outbox_backlog", &[&format!("topic=\"{topic}\"")])
            .iter()
            .any(|line| line.ends_with(" 6"))
    })
    .await;
    stop(token, vec![failing_relay]).await;
    assert_eq!(unpublished(&pool).await, 6);

    let token = CancellationToken::new();
    let relay = relay(&pool, &settings).spawn(token.clone());
    let records = read_records(&settings, &topic, 6).await;
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for record in &records {
        let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
        by_key.entry(key).or_default().push(mark_of(record));
    }
    assert_eq!(by_key["k1"], ["k1-0", "k1-1", "k1-2"]);
    assert_eq!(by_key["k2"], ["k2-0", "k2-1", "k2-2"]);
    wait_for_count(
        &pool,
        "backlog drained",
        "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        0,
    )
    .await;
    stop(token, vec![relay]).await;
}

#[tokio::test]
async fn a_redelivered_event_is_applied_once() {
    let Fixture {
        settings,
        topic,
        pool,
        group,
    } = fixture().await;

    let event = marked("p-9", "once");
    let sentinel = marked("p-9", "sentinel");
    for envelope in [&event, &event, &sentinel] {
        publish_raw(&settings, &topic, "p-9", &envelope.encode_to_vec()).await;
    }
    let token = CancellationToken::new();
    let recorder = Recorder::default();
    let task = consumer(&pool, &settings, &group, &topic, recorder.clone()).spawn(token.clone());
    wait_for_count(
        &pool,
        "sentinel applied",
        "SELECT count(*) FROM applied WHERE mark = 'sentinel'",
        1,
    )
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM applied WHERE mark = 'once'").await,
        1
    );
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 2);
    assert_eq!(count(&pool, "SELECT count(*) FROM inbox").await, 2);
    eventually(
        "kafka_consumer_lag at 0 on all three partitions",
        || async {
            let lines = metrics_lines("kafka_consumer_lag", &[&format!("group=\"{group}\"")]);
            lines.len() == 3 && lines.iter().all(|line| line.ends_with(" 0"))
        },
    )
    .await;
    stop(token, vec![task]).await;
}

#[tokio::test]
async fn a_failing_event_goes_to_the_dead_letter_topic_and_a_replay_applies_it_once() {
    let Fixture {
        settings,
        topic,
        pool,
        group,
    } = fixture().await;

    let event = marked("p-7", "late");
    publish_raw(&settings, &topic, "p-7", &event.encode_to_vec()).await;
    let recorder = Recorder::default();
    recorder.failing.store(true, Ordering::SeqCst);
    let token = CancellationToken::new();
    let task = consumer(&pool, &settings, &group, &topic, recorder.clone()).spawn(token.clone());

    let dead = read_records(&settings, &events::dlq_topic(&topic), 1).await;
    let dead = &dead[0];
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 3);
    assert_eq!(dead.key(), Some(&b"p-7"[..]));
    assert_eq!(&envelope_of(dead), event.envelope());
    let headers = dead.headers();
    assert!(
        header_str(headers, header::DLQ_ERROR)
            .is_some_and(|e| e.contains("inventory is unavailable"))
    );
    assert_eq!(
        header_str(headers, header::DLQ_ORIGINAL_TOPIC),
        Some(topic.as_str())
    );
    assert_eq!(header_str(headers, header::DLQ_ATTEMPTS), Some("3"));
    assert_eq!(header_str(headers, header::DLQ_ORIGINAL_OFFSET), Some("0"));
    assert!(header_str(headers, header::DLQ_ORIGINAL_PARTITION).is_some());
    assert_eq!(header_str(headers, header::DLQ_GROUP), Some(group.as_str()));
    // The failed attempts left nothing behind.
    assert_eq!(count(&pool, "SELECT count(*) FROM applied").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM inbox").await, 0);

    recorder.failing.store(false, Ordering::SeqCst);
    let report = events::replay_dead_letters(&settings, &topic, Some(&group))
        .await
        .unwrap();
    assert_eq!(report.replayed, 1);
    wait_for_count(
        &pool,
        "replayed event applied",
        "SELECT count(*) FROM applied WHERE mark = 'late'",
        1,
    )
    .await;
    // The replayed record carries no dlq_* headers.
    let replayed = read_records(&settings, &topic, 2).await;
    assert!(
        replayed
            .iter()
            .all(|r| header_str(r.headers(), header::DLQ_ERROR).is_none())
    );
    // A second replay finds nothing new; the event stays applied once.
    let again = events::replay_dead_letters(&settings, &topic, None)
        .await
        .unwrap();
    assert_eq!(again.replayed, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM applied WHERE mark = 'late'").await,
        1
    );
    stop(token, vec![task]).await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_at_once_and_the_consumer_goes_on() {
    let Fixture {
        settings,
        topic,
        pool,
        group,
    } = fixture().await;

    publish_raw(&settings, &topic, "p-3", b"\xde\xad not an envelope").await;
    let next = marked("p-3", "next");
    publish_raw(&settings, &topic, "p-3", &next.encode_to_vec()).await;
    let recorder = Recorder::default();
    let token = CancellationToken::new();
    let task = consumer(&pool, &settings, &group, &topic, recorder.clone()).spawn(token.clone());

    wait_for_count(
        &pool,
        "the next message applied",
        "SELECT count(*) FROM applied WHERE mark = 'next'",
        1,
    )
    .await;
    let dead = read_records(&settings, &events::dlq_topic(&topic), 1).await;
    assert_eq!(dead[0].payload(), Some(&b"\xde\xad not an envelope"[..]));
    assert_eq!(
        header_str(dead[0].headers(), header::DLQ_ATTEMPTS),
        Some("0")
    );
    assert!(header_str(dead[0].headers(), header::DLQ_ERROR).is_some());
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
    stop(token, vec![task]).await;
}

#[tokio::test]
async fn two_relays_on_one_outbox_publish_every_event_once_in_key_order() {
    let Fixture {
        settings,
        topic,
        pool,
        ..
    } = fixture().await;
    const KEYS: usize = 10;
    const PER_KEY: usize = 15;
    let mut tx = pool.begin().await.unwrap();
    for i in 0..PER_KEY {
        for k in 0..KEYS {
            let envelope = marked(&format!("key-{k}"), &format!("{i:03}"));
            events::enqueue(&mut tx, &topic, &envelope).await.unwrap();
        }
    }
    tx.commit().await.unwrap();

    let token = CancellationToken::new();
    let relays = vec![
        relay(&pool, &settings).batch_size(7).spawn(token.clone()),
        relay(&pool, &settings).batch_size(7).spawn(token.clone()),
    ];
    let total = KEYS * PER_KEY;
    let (records, reader) = read_records_with(&settings, &topic, total).await;
    wait_for_count(
        &pool,
        "every row marked published",
        "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        0,
    )
    .await;
    stop(token, relays).await;

    // Exactly once: every row is published and acknowledged before it is
    // marked, so a duplicate would already be in the log after the records read.
    let extra = tokio::time::timeout(Duration::from_secs(1), reader.recv()).await;
    assert!(extra.is_err(), "a record was published twice");
    let ids: HashSet<String> = records.iter().map(|r| envelope_of(r).event_id).collect();
    assert_eq!(ids.len(), total);
    let mut by_key: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for record in &records {
        by_key
            .entry(record.key().unwrap().to_vec())
            .or_default()
            .push(mark_of(record));
    }
    for marks in by_key.values() {
        let mut sorted = marks.clone();
        sorted.sort();
        assert_eq!(marks, &sorted, "a key's events were reordered");
    }
}

#[tokio::test]
async fn ensure_topics_is_idempotent() {
    let settings = settings();
    let topic = format!("test.events.{}", uuid::Uuid::now_v7().simple());
    events::ensure_topics(&settings, &[&topic]).await.unwrap();
    events::ensure_topics(&settings, &[&topic]).await.unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
        .unwrap();
    for name in [topic.clone(), events::dlq_topic(&topic)] {
        let metadata = consumer
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .unwrap();
        let found = metadata.topics().iter().find(|t| t.name() == name).unwrap();
        assert!(found.error().is_none(), "{name}: {:?}", found.error());
        assert_eq!(found.partitions().len(), 3, "{name}");
    }
}

#[tokio::test]
async fn the_events_migrations_are_idempotent_and_tracked_apart_from_the_service() {
    let pool = fresh_pool().await;
    events::migrate(&pool).await.unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM _shopmesh_events_migrations").await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('_sqlx_migrations')"
        )
        .await,
        0
    );
}
