//! Replaying a dead-letter topic: every message in `<topic>.dlq` not replayed
//! yet goes back to its original topic, without the dlq_* headers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;

use crate::kafka::{self, copy_headers, dlq_topic, header, header_str};
use crate::{EventsError, EventsSettings};

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Messages published again to their original topic.
    pub replayed: u64,
    /// Messages left alone (dead-lettered by another consumer group than asked for).
    pub skipped: u64,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer group a replay of `settings.client_id` commits its progress in.
pub fn replay_group(settings: &EventsSettings) -> String {
    format!("{}-dlq-replay", settings.client_id)
}

/// Republishes every message of `<topic>.dlq` that this service has not
/// replayed before (progress is committed in the group `<service>-dlq-replay`)
/// to its original topic, with its key, value and headers minus the dlq_* ones.
/// With `only_group`, only messages dead-lettered by that consumer group are
/// replayed (the others are skipped, and not offered again). Stops at the end
/// of the dead-letter topic as it was when the replay started.
///
/// Consumers apply a replayed event like any other: once, thanks to their inbox.
pub async fn replay_dead_letters(
    settings: &EventsSettings,
    topic: &str,
    only_group: Option<&str>,
) -> Result<ReplayReport, EventsError> {
    let dlq = dlq_topic(topic);
    let group = replay_group(settings);
    let consumer: Arc<BaseConsumer> = Arc::new(
        settings
            .client_config()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?,
    );
    // Where to start and where to stop, per partition (blocking calls).
    let (assignment, ends) = {
        let consumer = consumer.clone();
        let dlq = dlq.clone();
        tokio::task::spawn_blocking(move || plan(&consumer, &dlq))
            .await
            .map_err(|err| EventsError::Replay(err.to_string()))??
    };
    let mut report = ReplayReport::default();
    if ends.is_empty() {
        return Ok(report);
    }
    consumer.assign(&assignment)?;
    let producer = kafka::producer(settings, Duration::from_secs(30))?;
    let mut remaining = ends.clone();
    while !remaining.is_empty() {
        let polled = {
            let consumer = consumer.clone();
            tokio::task::spawn_blocking(move || {
                consumer
                    .poll(Timeout::After(TIMEOUT))
                    .map(|m| m.map(|m| m.detach()))
            })
            .await
            .map_err(|err| EventsError::Replay(err.to_string()))?
        };
        let message = match polled {
            None => {
                return Err(EventsError::Replay(format!(
                    "{dlq}: no message within {TIMEOUT:?} before its end"
                )));
            }
            Some(message) => message?,
        };
        let partition = message.partition();
        let Some(end) = ends.get(&partition).copied() else {
            continue;
        };
        if message.offset() >= end {
            remaining.remove(&partition);
            continue;
        }
        let failed_group = header_str(message.headers(), header::DLQ_GROUP);
        if only_group.is_some_and(|wanted| failed_group != Some(wanted)) {
            report.skipped += 1;
        } else {
            let original = header_str(message.headers(), header::DLQ_ORIGINAL_TOPIC)
                .unwrap_or(topic)
                .to_owned();
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&original)
                .headers(copy_headers(message.headers(), header::DLQ_PREFIX));
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            producer
                .send(record, Timeout::After(Duration::from_secs(30)))
                .await
                .map_err(|(err, _)| err)?;
            report.replayed += 1;
        }
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&dlq, partition, Offset::Offset(message.offset() + 1))?;
        consumer.commit(&offsets, CommitMode::Sync)?;
        if message.offset() + 1 >= end {
            remaining.remove(&partition);
        }
    }
    tracing::info!(%dlq, replayed = report.replayed, skipped = report.skipped, "dead letters replayed");
    Ok(report)
}

/// The assignment (each partition at the group's committed offset, or its
/// beginning) and, per partition with something left, the offset to stop at.
fn plan(
    consumer: &BaseConsumer,
    dlq: &str,
) -> Result<(TopicPartitionList, HashMap<i32, i64>), EventsError> {
    let metadata = consumer.fetch_metadata(Some(dlq), TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == dlq)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(EventsError::Replay(format!("topic {dlq} does not exist")));
    }
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(dlq, *partition);
    }
    let committed = consumer.committed_offsets(wanted, TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(dlq, partition, TIMEOUT)?;
        let start = match committed.find_partition(dlq, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => offset.max(low),
            _ => low,
        };
        if start < high {
            assignment.add_partition_offset(dlq, partition, Offset::Offset(start))?;
            ends.insert(partition, high);
        }
    }
    Ok((assignment, ends))
}
