//! The event service's behaviour, independent of gRPC: the publish path (validate, quarantine or
//! produce) and the subscribe path (consumer groups whose offsets move only on acknowledgement,
//! records decoded with the schema they were written with). The API layer only converts types.

mod envelope_check;
mod publish;
pub mod quarantine;
mod seal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use futures::stream::{BoxStream, StreamExt as _};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use envelope_check::{NewEvent, PublishInput, RawPayload};
pub use publish::{Accepted, PublishError, Rejected};
pub use quarantine::Quarantine;
pub use seal::{QuarantineKeys, SealError};

use crate::access::{
    Access, Caller, Denied, FieldSet, MAX_LEGAL_BASIS, SystemLimits, Withdrawn, is_legal_basis,
    is_purpose_code,
};
use crate::audit::{
    Channel, Crossing, EventRef, Handed, Ledger, LedgerError, Receipts, trace_id_of,
};
use crate::bus::envelope::TRACEPARENT;
use crate::bus::{
    Assignment, Envelope, Producer, Received, StartFrom, Subscription, SubscriptionError,
    SubscriptionOptions,
};
use crate::config::KafkaConfig;
use crate::domain::SystemId;
use crate::registry::Registry;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::EventLabels;

/// Unacknowledged deliveries a subscription may hold when the client does not say.
pub const DEFAULT_MAX_UNACKNOWLEDGED: usize = 256;
const MAX_UNACKNOWLEDGED_LIMIT: usize = 10_000;
/// Each subscription is a Kafka consumer with threads of its own: a system gets this many.
pub const MAX_SUBSCRIPTIONS_PER_SYSTEM: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("unknown event type {:?}; see schemas/topics.toml", truncated(.0))]
    UnknownEventType(String),
    #[error("event_types must name at least one event type")]
    NoEventType,
    #[error(
        "event types of different topics cannot share a subscription: {first} is on {topic}, \
         {other} on {other_topic}"
    )]
    TopicsDiffer {
        first: String,
        topic: String,
        other: String,
        other_topic: String,
    },
    #[error("consumer_group must be 1 to 100 characters of letters, digits, '.', '_' and '-'")]
    InvalidGroup,
    #[error("this system already runs {MAX_SUBSCRIPTIONS_PER_SYSTEM} subscriptions; end one first")]
    TooMany,
    #[error("no running subscription {0} of this system (it may have ended)")]
    UnknownSubscription(String),
    #[error(
        "purpose must be a purpose code of 2 to 63 characters a-z, 0-9 and '-' \
         (schemas/access/purposes.toml), e.g. civil-registration"
    )]
    InvalidPurpose,
    #[error(
        "legal_basis is required: the legal basis in 1 to {MAX_LEGAL_BASIS} characters on one \
         line, e.g. Decree 63/2024/ND-CP"
    )]
    InvalidLegalBasis,
    #[error(transparent)]
    Denied(Denied),
    #[error(transparent)]
    Bus(#[from] SubscriptionError),
    /// The receipt of a Tell Us Once event could not be written: acknowledge again later.
    #[error("the acknowledgement could not be recorded; send it again")]
    Receipt(#[source] crate::db::DbError),
}

/// Caller input quoted back in an error, cut to a sane length.
pub(crate) fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

/// A subscription request after the API layer parsed it.
pub struct SubscribeInput {
    /// One event type, or several of one topic: they are then read by one consumer group,
    /// which fetches the topic once instead of once per type.
    pub event_types: Vec<String>,
    pub group: String,
    pub start: StartFrom,
    /// 0 means the default.
    pub max_unacknowledged: usize,
    /// Why the subscriber processes the data: must be covered by one of its rights.
    pub purpose: String,
    pub legal_basis: String,
}

/// Who receives a subscription's events, why, and what of them it may see: [`Events::decode`]
/// applies the fields and records each delivery in the transfer ledger.
pub struct Recipient {
    pub system: SystemId,
    pub purpose: String,
    pub legal_basis: String,
    pub fields: Arc<FieldSet>,
}

/// A started subscription.
pub struct Opened {
    pub id: Uuid,
    pub deliveries: mpsc::Receiver<Received>,
    /// What the subscriber may see of each of its event types ([`Received::event_type`]).
    pub recipients: HashMap<String, Arc<Recipient>>,
    /// Answers why, if the subscriber's credential or right is withdrawn while it runs: the
    /// hub has then already stopped its consumer. Closed without an answer when the
    /// subscription ends otherwise.
    pub withdrawn: oneshot::Receiver<Withdrawn>,
    /// Cancelled when the subscription ends for any reason; cancel it (or drop a guard of it)
    /// when the client goes, to stop the consumer and the watch on its rights at once.
    pub ended: CancellationToken,
    /// The partitions this subscription holds now, with their lag.
    pub assignment: Arc<Assignment>,
}

impl Opened {
    /// What the subscriber may see of `event_type`, one of the types it subscribed to.
    pub fn recipient(&self, event_type: &str) -> Result<Arc<Recipient>, SubscribeError> {
        self.recipients
            .get(event_type)
            .cloned()
            .ok_or_else(|| SubscribeError::UnknownEventType(event_type.to_owned()))
    }
}

/// A subscription's deliveries, each tagged with `index`, then one `(index, None)` when it
/// ends: a reader merging several subscriptions sees which delivered and which ended.
pub fn tagged_until_end(
    deliveries: mpsc::Receiver<Received>,
    index: usize,
) -> BoxStream<'static, (usize, Option<Received>)> {
    ReceiverStream::new(deliveries)
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .map(move |item| (index, item))
        .boxed()
}

/// A record decoded for a subscriber.
pub struct DecodedEvent {
    pub received: Received,
    /// The envelope read from the record's headers, read once for every use; why not, for a
    /// record the hub did not write.
    pub envelope: Result<Envelope, String>,
    /// `None` when the record could not be decoded; `decode_error` says why.
    pub payload: Option<Value>,
    pub decode_error: Option<String>,
    /// The decode failed for a reason of the hub's own (the registry's database did not
    /// answer): trying again later may succeed.
    pub decode_transient: bool,
    /// Fields removed because the subscriber's purpose may not see them (dotted paths).
    pub withheld: Vec<String>,
}

impl DecodedEvent {
    fn failed(
        received: Received,
        envelope: Result<Envelope, String>,
        error: String,
        transient: bool,
    ) -> Self {
        Self {
            received,
            envelope,
            payload: None,
            decode_error: Some(error),
            decode_transient: transient,
            withheld: Vec::new(),
        }
    }
}

/// A running subscription, with what its acknowledgements need to find their receipts.
struct Running {
    owner: SystemId,
    /// One of its event types is told once: its acknowledgements are receipts.
    gives_receipts: bool,
    topic: String,
    subscription: Subscription,
}

pub struct Events {
    registry: Arc<Registry>,
    access: Arc<Access>,
    limits: Arc<SystemLimits>,
    subscription_buffer_bytes: usize,
    producer: Producer,
    quarantine: Quarantine,
    ledger: Ledger,
    receipts: Receipts,
    metrics: Arc<Metrics>,
    kafka: KafkaConfig,
    subscriptions: Mutex<HashMap<Uuid, Running>>,
    shutdown: CancellationToken,
    internal_shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// What [`Events`] is built from.
pub struct EventsParts {
    pub registry: Arc<Registry>,
    pub access: Arc<Access>,
    pub limits: Arc<SystemLimits>,
    pub subscription_buffer_bytes: usize,
    pub producer: Producer,
    pub quarantine: Quarantine,
    pub ledger: Ledger,
    /// For the event types every entitled agency is told once: who acknowledged them.
    pub receipts: Receipts,
    pub metrics: Arc<Metrics>,
    pub kafka: KafkaConfig,
    /// Ends remote callers' subscriptions.
    pub shutdown: CancellationToken,
    /// Ends the hub's own subscriptions (its connectors'): cancelled after the connector
    /// workers stopped, so what they finish in their grace period is still acknowledged.
    pub internal_shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// The Kafka group of `system`'s subscription `group` to `event_type`. One group per system,
/// name and event type: types sharing a topic keep their own offsets. A subscription to several
/// types of one topic is named after the topic instead ([`topic_consumer_group`]).
pub fn consumer_group(
    kafka: &KafkaConfig,
    system: &SystemId,
    event_type: &str,
    group: &str,
) -> String {
    format!(
        "{}lienthong.{system}.{event_type}.{group}",
        kafka.topic_prefix
    )
}

/// The Kafka group of `system`'s subscription `group` to several event types of `topic`: one
/// group per system, name and topic ("topic" is no family of event types, so the name cannot
/// be a single type's group).
pub fn topic_consumer_group(
    kafka: &KafkaConfig,
    system: &SystemId,
    topic: &str,
    group: &str,
) -> String {
    let prefix = &kafka.topic_prefix;
    let topic = topic.strip_prefix(prefix.as_str()).unwrap_or(topic);
    format!("{prefix}lienthong.{system}.topic.{topic}.{group}")
}

impl Events {
    pub fn new(parts: EventsParts) -> Self {
        Self {
            registry: parts.registry,
            access: parts.access,
            limits: parts.limits,
            subscription_buffer_bytes: parts.subscription_buffer_bytes,
            producer: parts.producer,
            quarantine: parts.quarantine,
            ledger: parts.ledger,
            receipts: parts.receipts,
            metrics: parts.metrics,
            kafka: parts.kafka,
            subscriptions: Mutex::new(HashMap::new()),
            shutdown: parts.shutdown,
            internal_shutdown: parts.internal_shutdown,
            tracker: parts.tracker,
        }
    }

    /// The topic `event_type` is published on; `None` for a type the registry does not know.
    pub fn topic_of(&self, event_type: &str) -> Option<&str> {
        self.registry.event(event_type).map(|s| s.topic.as_str())
    }

    /// The transfer ledger, for the crossings the hub's parts make beyond the bus (a
    /// connector's call to an external system).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Starts a subscription for `caller`, if its rights cover each event type with the
    /// purpose. The Kafka group is namespaced by the calling system, so one system can never
    /// consume (and commit) another system's group.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        input: SubscribeInput,
    ) -> Result<Opened, SubscribeError> {
        let mut schemas = Vec::with_capacity(input.event_types.len());
        for event_type in &input.event_types {
            let schema = self
                .registry
                .event(event_type)
                .ok_or_else(|| SubscribeError::UnknownEventType(event_type.clone()))?;
            schemas.push((event_type, schema));
        }
        let [(first, schema), others @ ..] = schemas.as_slice() else {
            return Err(SubscribeError::NoEventType);
        };
        if let Some((other, other_schema)) = others.iter().find(|(_, s)| s.topic != schema.topic) {
            return Err(SubscribeError::TopicsDiffer {
                first: (*first).clone(),
                topic: schema.topic.clone(),
                other: (*other).clone(),
                other_topic: other_schema.topic.clone(),
            });
        }
        let topic = schema.topic.clone();
        if !is_purpose_code(&input.purpose) {
            return Err(SubscribeError::InvalidPurpose);
        }
        let legal_basis = input.legal_basis.trim();
        if !is_legal_basis(legal_basis) {
            return Err(SubscribeError::InvalidLegalBasis);
        }
        let mut recipients = HashMap::with_capacity(input.event_types.len());
        for event_type in &input.event_types {
            let fields = self
                .access
                .authorize_subscription(caller, event_type, &input.purpose)
                .map_err(SubscribeError::Denied)?;
            let recipient = Recipient {
                system: caller.system.clone(),
                purpose: input.purpose.clone(),
                legal_basis: legal_basis.to_owned(),
                fields,
            };
            recipients.insert(event_type.clone(), Arc::new(recipient));
        }
        let valid_group = (1..=100).contains(&input.group.len())
            && input
                .group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_group {
            return Err(SubscribeError::InvalidGroup);
        }
        let max_unacknowledged = match input.max_unacknowledged {
            0 => DEFAULT_MAX_UNACKNOWLEDGED,
            n => n.min(MAX_UNACKNOWLEDGED_LIMIT),
        };
        let group = match others {
            [] => consumer_group(&self.kafka, &caller.system, first, &input.group),
            _ => topic_consumer_group(&self.kafka, &caller.system, &topic, &input.group),
        };
        let gives_receipts = input.event_types.iter().any(|t| self.receipts.keeps(t));
        // Counting and inserting under one lock: two concurrent calls cannot both take the last
        // slot. Opening a consumer does not block (librdkafka connects in the background).
        let id = Uuid::now_v7();
        let ended = if caller.is_internal() {
            self.internal_shutdown.child_token()
        } else {
            self.shutdown.child_token()
        };
        let (deliveries, assignment) = {
            let mut subscriptions = self
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            subscriptions.retain(|_, r| !r.subscription.is_ended());
            let running = subscriptions
                .values()
                .filter(|r| r.owner == caller.system)
                .count();
            if running >= MAX_SUBSCRIPTIONS_PER_SYSTEM {
                return Err(SubscribeError::TooMany);
            }
            let (subscription, deliveries) = Subscription::open(
                &self.kafka,
                SubscriptionOptions {
                    topic: topic.clone(),
                    event_types: input.event_types.iter().cloned().collect(),
                    group,
                    start: input.start,
                    max_unacknowledged,
                    max_unacknowledged_bytes: self.subscription_buffer_bytes,
                },
                self.metrics.clone(),
                ended.clone(),
                &self.tracker,
            )?;
            let assignment = subscription.assignment.clone();
            subscriptions.insert(
                id,
                Running {
                    owner: caller.system.clone(),
                    gives_receipts,
                    topic,
                    subscription,
                },
            );
            (deliveries, assignment)
        };
        let event_types = input.event_types.join(",");
        tracing::info!(subscription = %id, system = %caller.system, %event_types, purpose = %input.purpose, "subscription started");
        // Withdrawn when the right to any of its types goes.
        let withdrawals = input.event_types.iter().map(|event_type| {
            self.access
                .withdrawal(caller.clone(), event_type.clone(), input.purpose.clone())
                .boxed()
        });
        let withdrawal = futures::future::select_all(withdrawals);
        // A task of its own, not part of the client's stream: a client that stops reading
        // must still lose its consumer the moment its access goes.
        let metrics = self.metrics.clone();
        let (answer, withdrawn) = oneshot::channel();
        let stop = ended.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                (why, _, _) = withdrawal => {
                    metrics.subscriptions_withdrawn.inc();
                    tracing::info!(subscription = %id, ?why, "subscription ended: access withdrawn");
                    // The answer first: whoever sees the end then finds the reason.
                    let _ = answer.send(why);
                    stop.cancel();
                }
                () = stop.cancelled() => {}
            }
        });
        Ok(Opened {
            id,
            deliveries,
            recipients,
            withdrawn,
            ended,
            assignment,
        })
    }

    /// Acknowledges deliveries of one of `caller`'s subscriptions.
    pub async fn acknowledge(
        &self,
        caller: &Caller,
        subscription_id: &str,
        positions: Vec<(i32, i64)>,
    ) -> Result<u32, SubscribeError> {
        let unknown = || SubscribeError::UnknownSubscription(subscription_id.to_owned());
        let id = Uuid::parse_str(subscription_id).map_err(|_| unknown())?;
        let (subscription, told) = {
            let subscriptions = self
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match subscriptions.get(&id) {
                Some(r) if r.owner == caller.system => (
                    r.subscription.clone(),
                    r.gives_receipts.then(|| r.topic.clone()),
                ),
                _ => return Err(unknown()),
            }
        };
        // The receipt first: an acknowledgement it could not record is refused before the
        // offset moves, and the recipient sends it again.
        if let Some(topic) = told {
            self.receipts
                .acknowledged(caller.system.as_str(), &topic, &positions)
                .await
                .map_err(SubscribeError::Receipt)?;
        }
        subscription
            .acknowledge(positions)
            .await
            .map_err(|e| match e {
                SubscriptionError::Ended => unknown(),
                other => other.into(),
            })
    }

    /// Decodes a delivered record with its writer schema, keeps only the fields the
    /// recipient's purpose may see, and records the delivery in the transfer ledger (and, for a
    /// Tell Us Once event, its receipt) before it is handed over (a delivery either could not
    /// record is not handed over: it fails as a transient error, and comes again).
    pub async fn decode(
        &self,
        received: Received,
        event_type: &str,
        recipient: &Recipient,
    ) -> DecodedEvent {
        self.metrics
            .delivered
            .get_or_create(&EventLabels {
                event_type: event_type.to_owned(),
            })
            .inc();
        // The envelope was checked when the event was published; a record without one (not
        // written by the hub) is still recorded, from what the record itself says.
        let envelope = Envelope::from_headers(&received.headers).map_err(|e| e.to_string());
        let mut payload = match self.registry.decode(&received.payload).await {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(topic = %received.topic, partition = received.partition, offset = received.offset, %error, "record not decodable");
                let transient = matches!(error, crate::registry::DecodeError::Registry(_));
                return DecodedEvent::failed(received, envelope, error.to_string(), transient);
            }
        };
        let withheld = recipient.fields.apply(&mut payload);
        // The receipt before the ledger row: a receipt written for a delivery that then fails
        // counts one handing-over too many, while the ledger is evidence and must not.
        if let Err(error) = self
            .record_receipt(&received, envelope.as_ref().ok(), event_type, recipient)
            .await
        {
            tracing::error!(topic = %received.topic, offset = received.offset, %error, "receipt not recorded; not handed over");
            return DecodedEvent::failed(received, envelope, error.to_string(), true);
        }
        if let Err(error) = self
            .record_delivery(
                &received,
                envelope.as_ref().ok(),
                event_type,
                recipient,
                &payload,
            )
            .await
        {
            tracing::error!(topic = %received.topic, offset = received.offset, %error, "delivery not recorded; not handed over");
            return DecodedEvent::failed(received, envelope, error.to_string(), true);
        }
        DecodedEvent {
            received,
            envelope,
            payload: Some(payload),
            decode_error: None,
            decode_transient: false,
            withheld,
        }
    }

    /// A Tell Us Once event's receipt, when the event names its dossier.
    async fn record_receipt(
        &self,
        received: &Received,
        envelope: Option<&Envelope>,
        event_type: &str,
        recipient: &Recipient,
    ) -> Result<(), crate::db::DbError> {
        let Some((envelope, dossier_code)) = envelope
            .filter(|_| self.receipts.keeps(event_type))
            .and_then(|e| Some((e, e.correlation_id.as_ref()?)))
        else {
            return Ok(());
        };
        self.receipts
            .handed(Handed {
                event_id: envelope.event_id,
                recipient: recipient.system.as_str(),
                event_type,
                dossier_code: dossier_code.as_str(),
                topic: &received.topic,
                partition: received.partition,
                offset: received.offset,
            })
            .await
    }

    async fn record_delivery(
        &self,
        received: &Received,
        envelope: Option<&Envelope>,
        event_type: &str,
        recipient: &Recipient,
        payload: &Value,
    ) -> Result<(), LedgerError> {
        let schema = self.registry.event(event_type);
        self.ledger
            .record(Crossing {
                channel: Channel::Delivery,
                source: envelope.map_or("unknown", |e| e.producer_system.as_str()),
                target: recipient.system.as_str(),
                event: envelope.map(EventRef::of),
                purpose: &recipient.purpose,
                legal_basis: &recipient.legal_basis,
                dossier_code: envelope
                    .and_then(|e| e.correlation_id.as_ref())
                    .map(|c| c.as_str()),
                payload,
                concerning: None,
                classes: schema.map(|s| &s.classes),
                trace_id: trace_id_of(received.headers.get(TRACEPARENT).map(String::as_str)),
            })
            .await
    }
}
