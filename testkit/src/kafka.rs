//! Events on the shared test broker: produce as an outbox relay would, wait
//! for a service's events, read a topic back, skip a group to the end.

use crate::env::kafka_brokers;

/// The events about `key` (the record key: the aggregate id) on `topic`, read
/// from the start of every partition, once at least `count` have arrived;
/// panics after 30 s naming what did arrive.
pub async fn wait_for_events(
    topic: &str,
    key: &str,
    count: usize,
) -> Vec<shopmesh_events::EventEnvelope> {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
    use shopmesh_events::EnvelopeExt as _;

    let brokers = kafka_brokers();
    let settings = shopmesh_events::EventsSettings::for_brokers(&brokers, "test");
    // Created here if the service has not yet (the same settings: idempotent).
    shopmesh_events::ensure_topics(&settings, &[topic])
        .await
        .unwrap_or_else(|err| panic!("creating {topic}: {err}"));
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set(
            "group.id",
            format!("test-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|err| panic!("a Kafka consumer for {topic}: {err}"));
    let mut assignment = TopicPartitionList::new();
    for partition in 0..settings.topic_partitions {
        let _ = assignment.add_partition_offset(topic, partition, Offset::Beginning);
    }
    let _ = consumer.assign(&assignment);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut found = Vec::new();
    while found.len() < count {
        let Ok(received) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            let types: Vec<&str> = found
                .iter()
                .map(|e: &shopmesh_events::EventEnvelope| e.event_type.as_str())
                .collect();
            panic!(
                "{topic}: {} of {count} events for {key} arrived: {types:?}",
                found.len()
            );
        };
        let Ok(message) = received else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        if message.key() == Some(key.as_bytes())
            && let Some(Ok(envelope)) = message
                .payload()
                .map(shopmesh_events::EventEnvelope::decode_record)
        {
            found.push(envelope);
        }
    }
    found
}

/// Produces `envelope` to `topic`, keyed by its aggregate id, as the outbox
/// relay would (the same event twice is a redelivery).
pub async fn produce_event(topic: &str, envelope: &shopmesh_events::EventEnvelope) {
    produce_event_on(&kafka_brokers(), topic, envelope).await;
}

/// [`produce_event`] to the broker at `brokers` (e.g. a [`crate::TestBroker`]).
pub async fn produce_event_on(
    brokers: &str,
    topic: &str,
    envelope: &shopmesh_events::EventEnvelope,
) {
    use prost::Message as _;
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap_or_else(|err| panic!("a Kafka producer: {err}"));
    producer
        .send(
            FutureRecord::to(topic)
                .key(&envelope.aggregate_id)
                .payload(&envelope.encode_to_vec()),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("producing to {topic}: {err}"));
}

/// Commits the end of every partition of `topics` (created if missing) for
/// consumer `group`, so a service started in that group consumes what is
/// produced from now on instead of every earlier test's events (a new group
/// reads from the earliest offset otherwise).
pub async fn skip_to_end(group: &str, topics: &[&str]) {
    skip_to_end_on(&kafka_brokers(), group, topics).await;
}

/// [`skip_to_end`] on the broker at `brokers` (e.g. a [`crate::TestBroker`]).
pub async fn skip_to_end_on(brokers: &str, group: &str, topics: &[&str]) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let brokers = brokers.to_owned();
    let settings = shopmesh_events::EventsSettings::for_brokers(&brokers, "test");
    shopmesh_events::ensure_topics(&settings, topics)
        .await
        .unwrap_or_else(|err| panic!("creating {topics:?}: {err}"));
    let group = group.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let committed = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|err| err.to_string())?;
        let mut ends = TopicPartitionList::new();
        for topic in &topics {
            for partition in 0..settings.topic_partitions {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition, std::time::Duration::from_secs(10))
                    .map_err(|err| format!("{topic}/{partition}: {err}"))?;
                ends.add_partition_offset(topic, partition, Offset::Offset(high))
                    .map_err(|err| err.to_string())?;
            }
        }
        consumer
            .commit(&ends, CommitMode::Sync)
            .map_err(|err| err.to_string())
    })
    .await;
    match committed {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("skipping to the end of the topics: {err}"),
        Err(err) => panic!("skipping to the end of the topics: {err}"),
    }
}

/// One record as read back from a topic.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Headers in record order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The key as text (`""` when absent or not UTF-8).
    pub fn key(&self) -> &str {
        self.key
            .as_deref()
            .and_then(|key| std::str::from_utf8(key).ok())
            .unwrap_or_default()
    }

    /// The first header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok())
    }

    /// The value as an event envelope, if it is one.
    pub fn envelope(&self) -> Option<shopmesh_events::EventEnvelope> {
        use shopmesh_events::EnvelopeExt as _;
        shopmesh_events::EventEnvelope::decode_record(self.value.as_deref()?).ok()
    }
}

/// Every record of `topic` on `brokers`: each partition read from its
/// beginning to its end as reported when called, then on until nothing more
/// comes for a second (tansu 0.6 reports as a partition's end the last record
/// batch's base offset + 1, before the batch's other records). In partition
/// then offset order, so a key's records come in the order they were appended.
/// Errors when the topic does not exist or the broker does not answer; reads
/// for at most 30 s.
pub async fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::{Headers as _, Message as _};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::{Duration, Instant};

    const TIMEOUT: Duration = Duration::from_secs(10);
    const QUIET: Duration = Duration::from_secs(1);
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Record>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set(
                "group.id",
                format!("test-reader-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(
            !partitions.is_empty(),
            "topic {topic} does not exist on {brokers}"
        );
        let mut assignment = TopicPartitionList::new();
        // Per partition, the offset it must at least be read to.
        let mut ends = std::collections::HashMap::new();
        for partition in partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, partition, TIMEOUT)?;
            assignment.add_partition_offset(&topic, partition, Offset::Offset(low))?;
            if low < high {
                ends.insert(partition, high);
            }
        }
        consumer.assign(&assignment)?;
        let mut records: std::collections::BTreeMap<(i32, i64), Record> = Default::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_seen = Instant::now();
        while !ends.is_empty() || last_seen.elapsed() < QUIET {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{topic}: partitions {:?} not read to their end within 30 s",
                ends.keys().collect::<Vec<_>>()
            );
            let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = polled?;
            last_seen = Instant::now();
            let partition = message.partition();
            if ends
                .get(&partition)
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&partition);
            }
            records.insert(
                (partition, message.offset()),
                Record {
                    partition,
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                },
            );
        }
        Ok(records.into_values().collect())
    })
    .await?
}
