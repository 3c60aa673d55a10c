//! Reading one record back by its position, as operators' replays of dead letters need: a
//! consumer without a group, assigned to the one partition at the one offset.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::Received;
use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read {topic}/{partition}/{offset}: {source}")]
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
        source: KafkaError,
    },
    #[error("{topic}/{partition}/{offset} is no longer on the broker (retention) or never was")]
    Missing {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// The record at `offset` of `topic`/`partition`, waiting at most `timeout`.
pub async fn fetch(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Received, FetchError> {
    let kafka = |source| FetchError::Kafka {
        topic: topic.to_owned(),
        partition,
        offset,
        source,
    };
    let missing = || FetchError::Missing {
        topic: topic.to_owned(),
        partition,
        offset,
    };
    let consumer: BaseConsumer = super::client_config(config)
        // librdkafka wants a group id even for an assigned consumer; nothing is committed.
        .set("group.id", "lienthong.fetch")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(kafka)?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(kafka)?;
    consumer.assign(&assignment).map_err(kafka)?;
    let found = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) if message.offset() == offset => {
                    return Ok(Some(Received::from_message(&message)));
                }
                // Past it (compacted away) or at the end: it is not there.
                Some(Ok(message)) if message.offset() > offset => return Ok(None),
                Some(Ok(_)) | None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
                Some(Err(error)) => return Err(error),
            }
        }
        Ok(None)
    })
    .await
    .map_err(|_| kafka(KafkaError::Canceled))?;
    found.map_err(kafka)?.ok_or_else(missing)
}
