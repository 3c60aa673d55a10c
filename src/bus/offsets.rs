//! A consumer group's committed offsets, read and set from outside the group: what operators
//! need to see how far a connector has read and to move it (`connectors offsets`). Setting is
//! only safe while the group has no members; the caller checks that.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::KafkaConfig;

/// Broker calls give up after this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition of a group's topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The next offset the group reads; `None` when it never committed one.
    pub committed: Option<i64>,
    /// The oldest offset still on the broker.
    pub low: i64,
    /// The offset the next record will get.
    pub high: i64,
}

impl PartitionOffsets {
    /// Records not yet read by the group (from `low` when it never committed).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

/// Where a reset moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    /// The first record at or after this time.
    Time(DateTime<Utc>),
    /// This offset, clamped to what the broker holds.
    Offset(i64),
}

#[derive(Debug, thiserror::Error)]
#[error("group {group} on {topic}: {source}")]
pub struct OffsetsError {
    group: String,
    topic: String,
    source: Box<KafkaError>,
}

struct Group<'a> {
    consumer: BaseConsumer,
    group: &'a str,
    topic: &'a str,
}

impl<'a> Group<'a> {
    fn open(config: &KafkaConfig, group: &'a str, topic: &'a str) -> Result<Self, OffsetsError> {
        let consumer = super::client_config(config)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|source| OffsetsError {
                group: group.to_owned(),
                topic: topic.to_owned(),
                source: Box::new(source),
            })?;
        Ok(Self {
            consumer,
            group,
            topic,
        })
    }

    fn error(&self, source: KafkaError) -> OffsetsError {
        OffsetsError {
            group: self.group.to_owned(),
            topic: self.topic.to_owned(),
            source: Box::new(source),
        }
    }

    fn partitions(&self) -> Result<Vec<i32>, OffsetsError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(self.topic), TIMEOUT)
            .map_err(|e| self.error(e))?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    fn read(&self) -> Result<Vec<PartitionOffsets>, OffsetsError> {
        let partitions = self.partitions()?;
        let mut list = TopicPartitionList::new();
        for partition in &partitions {
            list.add_partition(self.topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, TIMEOUT)
            .map_err(|e| self.error(e))?;
        partitions
            .iter()
            .map(|&partition| {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(self.topic, partition, TIMEOUT)
                    .map_err(|e| self.error(e))?;
                let committed =
                    committed
                        .find_partition(self.topic, partition)
                        .and_then(|p| match p.offset() {
                            Offset::Offset(offset) => Some(offset),
                            _ => None,
                        });
                Ok(PartitionOffsets {
                    partition,
                    committed,
                    low,
                    high,
                })
            })
            .collect()
    }
}

/// The committed offsets of `group` on every partition of `topic`.
pub async fn committed(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
) -> Result<Vec<PartitionOffsets>, OffsetsError> {
    let (config, group, topic) = (config.clone(), group.to_owned(), topic.to_owned());
    // librdkafka's calls block: off the async runtime.
    tokio::task::spawn_blocking(move || Group::open(&config, &group, &topic)?.read())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Commits `to` for `group` on every partition of `topic` (or only `partition`); the offsets
/// as they are afterwards.
pub async fn reset(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    to: ResetTo,
    partition: Option<i32>,
) -> Result<Vec<PartitionOffsets>, OffsetsError> {
    let (config, group, topic) = (config.clone(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let group = Group::open(&config, &group, &topic)?;
        let now = group.read()?;
        let chosen: Vec<&PartitionOffsets> = now
            .iter()
            .filter(|p| partition.is_none_or(|only| only == p.partition))
            .collect();
        let mut list = TopicPartitionList::new();
        let by_time = match to {
            ResetTo::Time(at) => {
                let mut query = TopicPartitionList::new();
                for p in &chosen {
                    query
                        .add_partition_offset(
                            &topic,
                            p.partition,
                            Offset::Offset(at.timestamp_millis()),
                        )
                        .map_err(|e| group.error(e))?;
                }
                Some(
                    group
                        .consumer
                        .offsets_for_times(query, TIMEOUT)
                        .map_err(|e| group.error(e))?,
                )
            }
            _ => None,
        };
        for p in &chosen {
            let offset = match to {
                ResetTo::Earliest => p.low,
                ResetTo::Latest => p.high,
                ResetTo::Offset(offset) => offset.clamp(p.low, p.high),
                // No record at or after the time: the end of the partition.
                ResetTo::Time(_) => by_time
                    .as_ref()
                    .and_then(|found| found.find_partition(&topic, p.partition))
                    .and_then(|found| match found.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    })
                    .unwrap_or(p.high),
            };
            list.add_partition_offset(&topic, p.partition, Offset::Offset(offset))
                .map_err(|e| group.error(e))?;
        }
        group
            .consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|e| group.error(e))?;
        group.read()
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
