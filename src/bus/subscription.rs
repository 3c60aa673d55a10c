//! A subscription: one Kafka consumer-group member whose offsets move only when its client
//! acknowledges deliveries. Offsets are stored (`enable.auto.offset.store=false`) up to the first
//! unacknowledged delivery of each partition, and committed by librdkafka's auto-commit, on
//! rebalance and once more when the subscription ends. A client that goes away before
//! acknowledging therefore gets the same events again, from this hub or another one.
//!
//! Each subscription is one task owned by the hub's task tracker; it ends when the client
//! disconnects or the hub shuts down. It stops reading while the client holds as many
//! unacknowledged deliveries as it asked for; a client that stays silent longer than
//! `max.poll.interval.ms` loses its partitions to the rest of the group, which then redelivers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::KafkaConfig;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::LagLabels;

/// Where a group with no committed offset starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// One record handed to the subscriber.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key: the dossier code, or what the event type names instead.
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    /// Which holding of its partition it was read in ([`Assignment::holds`]); 0 when read
    /// outside a group.
    pub generation: u64,
}

impl Received {
    /// A consumed record, copied out of librdkafka's buffer.
    pub(super) fn from_message<M: Message>(message: &M) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_owned),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: super::envelope::header_map(message.headers()),
            generation: 0,
        }
    }

    /// The event type its envelope names (none for a record the hub did not write).
    pub fn event_type(&self) -> Option<&str> {
        self.headers.get(super::envelope::TYPE).map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("cannot create the Kafka consumer: {0}")]
    Client(KafkaError),
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
    #[error("the subscription has ended")]
    Ended,
}

/// The partitions a subscription holds now, with each one's lag (records behind the end of the
/// partition, as librdkafka last reported; -1 until it has) and generation: a partition
/// revoked and assigned again gets a new one, so a record read before the revocation is told
/// apart from the same record read again after it.
#[derive(Debug, Default)]
pub struct Assignment {
    inner: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// partition → (lag, generation)
    partitions: BTreeMap<i32, (i64, u64)>,
    generations: u64,
}

impl Assignment {
    /// (partition, lag) of each partition held, in order.
    pub fn snapshot(&self) -> Vec<(i32, i64)> {
        self.lock()
            .partitions
            .iter()
            .map(|(p, (lag, _))| (*p, *lag))
            .collect()
    }

    /// True while this member holds `partition` as it did when it read a record of
    /// `generation`.
    pub fn holds(&self, partition: i32, generation: u64) -> bool {
        self.lock()
            .partitions
            .get(&partition)
            .is_some_and(|(_, held)| *held == generation)
    }

    /// The generation of `partition`'s holding now (0 when not held).
    fn generation(&self, partition: i32) -> u64 {
        self.lock()
            .partitions
            .get(&partition)
            .map_or(0, |(_, generation)| *generation)
    }

    fn set_lag(&self, partition: i32, lag: i64) {
        if let Some(held) = self.lock().partitions.get_mut(&partition) {
            held.0 = lag;
        }
    }

    fn revoke(&self, partitions: &[i32]) {
        let mut held = self.lock();
        for partition in partitions {
            held.partitions.remove(partition);
        }
    }

    fn assign(&self, partitions: impl Iterator<Item = i32>) {
        let mut held = self.lock();
        for partition in partitions {
            if !held.partitions.contains_key(&partition) {
                held.generations += 1;
                let generation = held.generations;
                held.partitions.insert(partition, (-1, generation));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct AckRequest {
    positions: Vec<(i32, i64)>,
    reply: oneshot::Sender<u32>,
}

/// The handle through which a client acknowledges deliveries.
#[derive(Clone)]
pub struct Subscription {
    acks: mpsc::Sender<AckRequest>,
    /// What this member of the group holds now.
    pub assignment: Arc<Assignment>,
}

/// Everything a subscription needs beside the Kafka settings.
pub struct SubscriptionOptions {
    pub topic: String,
    /// The event types to deliver; other types on the topic are skipped.
    pub event_types: BTreeSet<String>,
    pub group: String,
    pub start: StartFrom,
    pub max_unacknowledged: usize,
    /// Payload and header bytes the unacknowledged deliveries may hold together; the stream
    /// pauses above it (one delivery always passes, however large).
    pub max_unacknowledged_bytes: usize,
}

impl Subscription {
    /// Joins `group` on `topic` and starts the subscription's task. Deliveries arrive on the
    /// returned receiver; dropping it ends the subscription.
    pub fn open(
        config: &KafkaConfig,
        options: SubscriptionOptions,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(Self, mpsc::Receiver<Received>), SubscriptionError> {
        let assignment = Arc::new(Assignment::default());
        let context = SubscriptionContext {
            group: options.group.clone(),
            metrics: metrics.clone(),
            revoked: Arc::default(),
            assignment: assignment.clone(),
        };
        let revoked = context.revoked.clone();
        let start = match options.start {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let consumer: StreamConsumer<SubscriptionContext> = super::client_config(config)
            .set("group.id", &options.group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", start)
            .set("statistics.interval.ms", "5000")
            .set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string())
            .create_with_context(context)
            .map_err(SubscriptionError::Client)?;
        consumer
            .subscribe(&[&options.topic])
            .map_err(|source| SubscriptionError::Subscribe {
                topic: options.topic.clone(),
                source,
            })?;
        let capacity = options.max_unacknowledged.max(1);
        let (deliveries_tx, deliveries_rx) = mpsc::channel(capacity);
        let (acks_tx, acks_rx) = mpsc::channel(64);
        let worker = Worker {
            consumer,
            topic: options.topic,
            event_types: options.event_types,
            group: options.group,
            max_unacknowledged: capacity,
            max_unacknowledged_bytes: options.max_unacknowledged_bytes,
            tracks: HashMap::new(),
            partitions_seen: BTreeSet::new(),
            revoked,
            metrics,
        };
        tracker.spawn(worker.run(deliveries_tx, acks_rx, shutdown));
        Ok((
            Self {
                acks: acks_tx,
                assignment,
            },
            deliveries_rx,
        ))
    }

    /// True once the subscription's task has ended.
    pub fn is_ended(&self) -> bool {
        self.acks.is_closed()
    }

    /// Acknowledges deliveries by (partition, offset); returns how many were waiting for it.
    pub async fn acknowledge(&self, positions: Vec<(i32, i64)>) -> Result<u32, SubscriptionError> {
        let (reply, answer) = oneshot::channel();
        self.acks
            .send(AckRequest { positions, reply })
            .await
            .map_err(|_| SubscriptionError::Ended)?;
        answer.await.map_err(|_| SubscriptionError::Ended)
    }
}

/// Delivered and unacknowledged offsets of one partition, with their payload sizes.
#[derive(Default)]
struct Track {
    unacknowledged: BTreeMap<i64, usize>,
    /// Sum of the sizes above.
    bytes: usize,
    /// One past the highest offset delivered.
    next: i64,
}

impl Track {
    /// The offset to commit: the first unacknowledged delivery, or past everything delivered.
    fn commit_point(&self) -> i64 {
        self.unacknowledged
            .first_key_value()
            .map_or(self.next, |(offset, _)| *offset)
    }

    fn deliver(&mut self, offset: i64, bytes: usize) {
        if let Some(previous) = self.unacknowledged.insert(offset, bytes) {
            self.bytes -= previous;
        }
        self.bytes += bytes;
        self.next = self.next.max(offset + 1);
    }

    /// True when `offset` was waiting for acknowledgement.
    fn acknowledge(&mut self, offset: i64) -> bool {
        match self.unacknowledged.remove(&offset) {
            Some(bytes) => {
                self.bytes -= bytes;
                true
            }
            None => false,
        }
    }
}

struct Worker {
    consumer: StreamConsumer<SubscriptionContext>,
    topic: String,
    /// Only records of these types are delivered.
    event_types: BTreeSet<String>,
    group: String,
    max_unacknowledged: usize,
    max_unacknowledged_bytes: usize,
    tracks: HashMap<i32, Track>,
    /// Partitions this member read, so their lag series can be removed when it ends.
    partitions_seen: BTreeSet<i32>,
    revoked: Arc<Mutex<Vec<i32>>>,
    metrics: Arc<Metrics>,
}

impl Worker {
    async fn run(
        mut self,
        deliveries: mpsc::Sender<Received>,
        mut acks: mpsc::Receiver<AckRequest>,
        shutdown: CancellationToken,
    ) {
        loop {
            self.forget_revoked();
            // Bounded in count and in bytes: a few huge events must not fill the hub's memory.
            let room = self.unacknowledged() < self.max_unacknowledged
                && self.unacknowledged_bytes() < self.max_unacknowledged_bytes;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = deliveries.closed() => break,
                Some(request) = acks.recv() => {
                    let count = self.acknowledge(&request.positions);
                    // The client may have stopped waiting; the acknowledgement still counts.
                    let _ = request.reply.send(count);
                }
                message = self.consumer.recv(), if room => match message {
                    Ok(message) => {
                        let mut received = Received::from_message(&message);
                        drop(message);
                        // librdkafka drops what it fetched for a revoked partition, so a record
                        // read now belongs to the partition's current holding.
                        received.generation = self
                            .consumer
                            .context()
                            .assignment
                            .generation(received.partition);
                        // A revocation seen while polling applies before this record is tracked,
                        // or it would be forgotten with the partition's older deliveries.
                        self.forget_revoked();
                        let (partition, offset) = (received.partition, received.offset);
                        self.partitions_seen.insert(partition);
                        let size = received.payload.len()
                            + received.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                        self.tracks.entry(partition).or_default().deliver(offset, size);
                        // Several event types share a topic: the others are not this
                        // subscriber's to see, and count as handled.
                        if !received.event_type().is_some_and(|t| self.event_types.contains(t)) {
                            self.acknowledge(&[(partition, offset)]);
                            continue;
                        }
                        // While waiting for room in the channel, acknowledgements are still
                        // served: a client may be waiting on one before it reads further.
                        let permit = loop {
                            tokio::select! {
                                biased;
                                () = shutdown.cancelled() => break None,
                                Some(request) = acks.recv() => {
                                    let count = self.acknowledge(&request.positions);
                                    let _ = request.reply.send(count);
                                }
                                permit = deliveries.reserve() => break permit.ok(),
                            }
                        };
                        let Some(permit) = permit else { break };
                        permit.send(received);
                    }
                    Err(error) => {
                        tracing::warn!(topic = %self.topic, %error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
        // Acknowledgements that arrived before the end still count.
        while let Ok(request) = acks.try_recv() {
            let count = self.acknowledge(&request.positions);
            let _ = request.reply.send(count);
        }
        self.close().await;
    }

    fn unacknowledged(&self) -> usize {
        self.tracks.values().map(|t| t.unacknowledged.len()).sum()
    }

    fn unacknowledged_bytes(&self) -> usize {
        self.tracks.values().map(|t| t.bytes).sum()
    }

    /// After a rebalance took partitions away, their deliveries belong to the new owner.
    fn forget_revoked(&mut self) {
        let revoked =
            std::mem::take(&mut *self.revoked.lock().unwrap_or_else(PoisonError::into_inner));
        for partition in revoked {
            self.tracks.remove(&partition);
        }
    }

    fn acknowledge(&mut self, positions: &[(i32, i64)]) -> u32 {
        let mut count = 0;
        let mut moved: HashMap<i32, i64> = HashMap::new();
        for &(partition, offset) in positions {
            let Some(track) = self.tracks.get_mut(&partition) else {
                continue;
            };
            if track.acknowledge(offset) {
                count += 1;
                moved.insert(partition, track.commit_point());
            }
        }
        if moved.is_empty() {
            return count;
        }
        let mut to_store = TopicPartitionList::with_capacity(moved.len());
        for (partition, offset) in moved {
            if let Err(error) =
                to_store.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(%error, partition, "cannot record the offset to store");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&to_store) {
            // Most often the partition was revoked meanwhile: its new owner redelivers.
            tracing::warn!(%error, topic = %self.topic, "storing acknowledged offsets failed");
        }
        count
    }

    /// Commits what was acknowledged and leaves the group, off the async runtime because
    /// closing a consumer blocks.
    async fn close(self) {
        let Worker {
            consumer,
            topic,
            group,
            partitions_seen,
            metrics,
            ..
        } = self;
        let closed = tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => tracing::warn!(%error, "final offset commit failed"),
            }
            drop(consumer);
        })
        .await;
        if let Err(error) = closed {
            tracing::error!(%error, %topic, "closing the consumer panicked");
        }
        for partition in partitions_seen {
            metrics.consumer_lag.remove(&LagLabels {
                group: group.clone(),
                topic: topic.clone(),
                partition: partition.to_string(),
            });
        }
        tracing::debug!(%topic, "subscription closed");
    }
}

struct SubscriptionContext {
    group: String,
    metrics: Arc<Metrics>,
    revoked: Arc<Mutex<Vec<i32>>>,
    assignment: Arc<Assignment>,
}

impl ClientContext for SubscriptionContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, p) in stats.partitions {
                // librdkafka reports -1 for partitions this member does not consume.
                if partition >= 0 && p.consumer_lag >= 0 {
                    self.assignment.set_lag(partition, p.consumer_lag);
                    self.metrics
                        .consumer_lag
                        .get_or_create(&LagLabels {
                            group: self.group.clone(),
                            topic: topic.clone(),
                            partition: partition.to_string(),
                        })
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for SubscriptionContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            self.assignment.revoke(&partitions);
            self.revoked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(partitions);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.assignment
                .assign(list.elements().iter().map(|e| e.partition()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Assignment, Track};

    #[test]
    fn a_partition_assigned_again_is_a_new_holding() {
        let assignment = Assignment::default();
        assignment.assign([0, 1].into_iter());
        let first = assignment.generation(0);
        assert!(assignment.holds(0, first));
        assignment.revoke(&[0]);
        assert!(!assignment.holds(0, first), "revoked");
        assignment.assign([0].into_iter());
        assert!(
            !assignment.holds(0, first),
            "a record read before the revocation is not this holding's"
        );
        assert!(assignment.holds(0, assignment.generation(0)));
        assert!(
            assignment.holds(1, assignment.generation(1)),
            "untouched partitions keep theirs"
        );
    }

    #[test]
    fn commits_up_to_the_first_unacknowledged_delivery() {
        let mut track = Track::default();
        for offset in 10..15 {
            track.deliver(offset, 100);
        }
        assert_eq!((track.commit_point(), track.bytes), (10, 500));
        assert!(track.acknowledge(11));
        assert!(track.acknowledge(12));
        assert_eq!(
            track.commit_point(),
            10,
            "an earlier delivery is still open"
        );
        assert!(track.acknowledge(10));
        assert!(!track.acknowledge(10), "an acknowledgement counts once");
        assert_eq!(track.commit_point(), 13);
        assert!(track.acknowledge(13));
        assert!(track.acknowledge(14));
        assert_eq!((track.commit_point(), track.bytes), (15, 0));
    }
}
