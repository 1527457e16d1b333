//! The Kafka clients this module uses: an idempotent producer, consumers that
//! commit by hand, and topic creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use shopmesh_proto::shop::events::v1::EventEnvelope;

use crate::{EventsError, EventsSettings};

/// Record headers copied from the envelope (events.proto), so a consumer can
/// route or trace without decoding the value.
pub mod header {
    pub const EVENT_TYPE: &str = "event_type";
    pub const EVENT_ID: &str = "event_id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    pub const REQUEST_ID: &str = "x-request-id";

    /// Added when a message is dead-lettered: the last error.
    pub const DLQ_ERROR: &str = "dlq_error";
    pub const DLQ_ORIGINAL_TOPIC: &str = "dlq_original_topic";
    pub const DLQ_ORIGINAL_PARTITION: &str = "dlq_original_partition";
    pub const DLQ_ORIGINAL_OFFSET: &str = "dlq_original_offset";
    /// Handler attempts made (0: the value was not an envelope).
    pub const DLQ_ATTEMPTS: &str = "dlq_attempts";
    /// The consumer group that gave up on it.
    pub const DLQ_GROUP: &str = "dlq_group";
    /// Prefix of the headers above, stripped again on replay.
    pub const DLQ_PREFIX: &str = "dlq_";
}

/// Suffix of the dead-letter topic of every topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// `<topic>.dlq`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// An idempotent producer (`enable.idempotence`, hence `acks=all`, ordered
/// retries without duplicates) that gives up on a message after `delivery_timeout`.
pub(crate) fn producer(
    settings: &EventsSettings,
    delivery_timeout: Duration,
) -> Result<FutureProducer, KafkaError> {
    settings
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().max(1).to_string(),
        )
        .create()
}

/// A consumer in `group` that commits offsets itself, after processing, and
/// starts a new group at the beginning of the topic (no event is skipped).
pub(crate) fn consumer(
    settings: &EventsSettings,
    group: &str,
) -> Result<StreamConsumer, KafkaError> {
    settings
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // A broker answers a fetch as soon as data arrives (Kafka) or only at
        // this deadline (some Kafka-protocol brokers, tansu among them): 100 ms
        // instead of librdkafka's 500 bounds the wait either way, for ten
        // small idle fetches a second per broker.
        .set("fetch.wait.max.ms", "100")
        // A member that died without leaving (SIGKILL, a lost node) is
        // dropped after 10 s instead of Kafka's 45, so its partitions move to
        // the survivors quickly; a rebalance that waits for members to rejoin
        // gives up after 60 s instead of 5 min. A handler never holds a
        // message that long without polling (retries back off at most 10 s
        // and a stalled database makes it leave the group, not block it).
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000")
        .set("max.poll.interval.ms", "60000")
        .create()
}

/// The record headers of an envelope (empty values left out).
pub(crate) fn envelope_headers(envelope: &EventEnvelope) -> OwnedHeaders {
    [
        (header::EVENT_TYPE, envelope.event_type.as_str()),
        (header::EVENT_ID, envelope.event_id.as_str()),
        (header::TRACEPARENT, envelope.traceparent.as_str()),
        (header::TRACESTATE, envelope.tracestate.as_str()),
        (header::REQUEST_ID, envelope.request_id.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .fold(OwnedHeaders::new(), |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    })
}

/// A copy of `headers` without those whose name starts with `dropped_prefix`.
pub(crate) fn copy_headers(headers: Option<&impl Headers>, dropped_prefix: &str) -> OwnedHeaders {
    let mut copy = OwnedHeaders::new();
    if let Some(headers) = headers {
        for header in headers.iter() {
            if !header.key.starts_with(dropped_prefix) {
                copy = copy.insert(header);
            }
        }
    }
    copy
}

/// A header's value as text, if present.
pub fn header_str<'a>(headers: Option<&'a impl Headers>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Creates each topic and its `<topic>.dlq` unless they exist, with the
/// partitions and replication of `settings`. Idempotent; replicas racing to
/// create a topic all succeed.
pub async fn ensure_topics(settings: &EventsSettings, topics: &[&str]) -> Result<(), EventsError> {
    let names: Vec<String> = topics
        .iter()
        .flat_map(|topic| [(*topic).to_owned(), dlq_topic(topic)])
        .collect();
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.topic_partitions,
                TopicReplication::Fixed(settings.topic_replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(EventsError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
