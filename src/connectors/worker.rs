//! One connector's worker in this process: it subscribes to the connector's event types as the
//! connector's member system (so its rights and field minimisation apply), and for each event
//! maps it, calls the endpoint with retries, and publishes the reply, or dead-letters the
//! event and publishes the failure. An event is acknowledged (its offset may be committed) only
//! after all of that is durable, so a crash repeats a call but never skips one.
//!
//! Events of one key (one dossier) are handled one at a time, in order; a retried event holds
//! back only its own key's later events, not the other keys'. All keys share the window of
//! unacknowledged events (`max_in_flight`): a dossier retrying for long fills it only with
//! its own waiting events, so size the window above the events one dossier produces at once.
//! After a rebalance, queued events of partitions this process no longer holds, or holds again
//! since, are dropped unhandled: their partition's holder delivers them again, in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Pool;
use futures::stream::{FuturesUnordered, StreamExt as _};
use futures::{FutureExt as _, future::BoxFuture};
use rdkafka::message::{Header, OwnedHeaders};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::effect::{Answer, CallError, Effect};
use super::manifest::{Manifest, Output, SinkSpec, StartAt, Target};
use super::mapping::json_kind;
use super::resilience::backoff;
use super::state::{self, DeadLetter};
use super::stats::{Stats, WorkerState};
use crate::access::Caller;
use crate::audit::{Channel, Crossing, EventRef, trace_id_of};
use crate::bus::envelope::TRACEPARENT;
use crate::bus::{Envelope, FetchError, Producer, Received, StartFrom, fetch};
use crate::config::KafkaConfig;
use crate::domain::Clock;
use crate::events::{
    Events, NewEvent, PublishError, Recipient, SubscribeError, SubscribeInput, tagged_until_end,
};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::ConnectorLabels;

/// How long calls in progress may finish when the worker is stopped.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Attempts to publish an outcome when the broker or the database fails.
const PUBLISH_ATTEMPTS: u32 = 5;
/// Replays one process claims at a time: one, so that a slow replay does not hold claims on
/// others past their lapse.
const REPLAY_BATCH: i64 = 1;
/// How long reading a dead letter back may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot subscribe to {event_type}: {source}")]
    Subscribe {
        event_type: String,
        source: SubscribeError,
    },
    #[error("the subscription to {event_type} ended: {why}")]
    Ended { event_type: String, why: String },
    #[error("cannot publish the {role} of event {event_id}: {message}")]
    Publish {
        role: &'static str,
        event_id: Uuid,
        message: String,
    },
    #[error("cannot dead-letter event at {topic}/{partition}/{offset}: {message}")]
    DeadLetter {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    #[error("cannot decode an event for now: {0}")]
    Decode(String),
    /// The call was made but not recorded in the transfer ledger: the event comes again and
    /// the call is repeated with the same idempotency key, then recorded.
    #[error("the call for event {event_id} was not recorded: {source}")]
    Unrecorded {
        event_id: Uuid,
        source: crate::audit::LedgerError,
    },
    #[error("cannot acknowledge a handled event: {0}")]
    Acknowledge(SubscribeError),
    /// The worker is stopping: the event was not finished and will be delivered again.
    #[error("stopped before the event was finished")]
    Stopping,
}

/// Why an event is given up on.
struct Failure {
    class: String,
    message: String,
    attempts: u32,
    retryable: bool,
    status: Option<u16>,
    first_at: DateTime<Utc>,
}

impl Failure {
    fn permanent(class: &str, message: String, at: DateTime<Utc>) -> Self {
        Self {
            class: class.to_owned(),
            message,
            attempts: 0,
            retryable: false,
            status: None,
            first_at: at,
        }
    }
}

/// The class of an attempt whose answer says the work is not finished (`reply.pending`).
const PENDING: &str = "Pending";
/// The soonest a parked event is asked again, whatever its manifest says.
const MIN_PARKING: Duration = Duration::from_secs(1);
/// The class of an event whose call succeeded but whose reply the hub refused.
const REPLY_REFUSED: &str = "ReplyRefused";

/// Everything a worker needs; shared by its event tasks.
pub struct Worker {
    pub manifest: Arc<Manifest>,
    /// The manifest's http-sink part.
    pub spec: Arc<SinkSpec>,
    pub events: Arc<Events>,
    pub producer: Producer,
    pub pool: Pool,
    pub sink: Arc<Effect>,
    pub clock: Arc<dyn Clock>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub dlq_topic: String,
    pub kafka: KafkaConfig,
    /// This process's name, which claims replays.
    pub process: String,
    /// How often requested replays are looked for.
    pub refresh: Duration,
}

/// Whose turn an event is handling: a delivery (or an operator's replay of a dead letter),
/// or a parked event's, which carries its record's number and how long it has waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Delivery,
    Parked {
        id: i64,
        since: DateTime<Utc>,
        attempts: u32,
    },
}

/// What an answer the reply's `pending` program looks at means for its event.
enum Pending {
    /// Final: the reply is published.
    No,
    /// Not final: asked again in the lane, on the delivery backoff (or, at a parked event's
    /// turn, given up).
    InLane,
    /// Not final: parked until then.
    Until(DateTime<Utc>),
}

/// How an event was finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Delivered,
    /// Given up on: the dead letter's number.
    DeadLettered(i64),
    /// Not finished, and waiting outside its lane: the parked event's number and when it
    /// asks again.
    Parked(i64, DateTime<Utc>),
}

struct Source {
    event_type: String,
    assignment: Arc<crate::bus::Assignment>,
    subscription: String,
    recipient: Arc<Recipient>,
    withdrawn: tokio::sync::oneshot::Receiver<crate::access::Withdrawn>,
}

/// Clears the worker's partitions from its status when it stops.
struct ClearAssignments<'a>(&'a Stats);

impl Drop for ClearAssignments<'_> {
    fn drop(&mut self) {
        self.0.set_assignments(Vec::new());
    }
}

/// A finished event: its lane, its source, its position and how it went.
type Done = (String, usize, (i32, i64), Result<Handled, WorkerError>);

/// The Kafka key orders the work: one dossier's events one after another.
fn lane_key(received: &Received) -> String {
    received
        .key
        .clone()
        .unwrap_or_else(|| format!("{}/{}", received.partition, received.offset))
}

/// The idempotency key of one connector's call for one event: the same on every repeat,
/// different for two connectors calling about the same event.
pub fn idempotency_key(connector: &str, event_id: Uuid) -> String {
    key_of(connector, &event_id.to_string())
}

/// The idempotency key of one connector's calls about `what` (`http.idempotency_key`): a
/// UUID-shaped digest, so the endpoint sees neither the dossier code nor the connector.
fn key_of(connector: &str, what: &str) -> String {
    let digest = Sha256::digest(format!("{connector}\n{what}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The id of an event the connector publishes about `cause`: a UUIDv7 with the cause's time,
/// the same on every repeat, so consumers drop a reply published twice after a crash.
fn outcome_id(connector: &str, cause: Uuid, role: &str) -> Uuid {
    let millis = cause
        .get_timestamp()
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{connector}\n{cause}\n{role}"));
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// An answer as the reply's programs see it: `.response.status`, `.body` and `.received_at`
/// (Vietnam time, the moment the hub learned what it says).
fn response_json(answer: &Answer, now: DateTime<Utc>) -> Value {
    json!({
        "status": answer.status,
        "body": answer.body,
        "received_at": now
            .with_timezone(&crate::domain::vietnam())
            .to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

fn envelope_json(envelope: &Envelope) -> Value {
    json!({
        "event_id": envelope.event_id.to_string(),
        "event_type": envelope.event_type,
        "occurred_at": envelope.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "producer_system": envelope.producer_system.as_str(),
        "correlation_id": envelope.correlation_id.as_ref().map(|c| c.as_str()),
        "purpose": envelope.purpose,
    })
}

impl Worker {
    /// The event's path below an HTTP target's URL, when the manifest maps one.
    fn path(&self, input: &Value) -> Result<Option<Vec<String>>, String> {
        let Target::Http(http) = &self.spec.target else {
            return Ok(None);
        };
        let Some(mapping) = &http.path else {
            return Ok(None);
        };
        let value = mapping
            .apply(input)
            .map_err(|e| format!("path mapping: {e}"))?;
        let segments = value
            .as_array()
            .filter(|segments| !segments.is_empty())
            .ok_or("path mapping must give a non-empty array of path segments")?;
        segments
            .iter()
            .map(|segment| match segment {
                Value::String(text) if !text.is_empty() => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                _ => {
                    Err("path mapping: each segment must be non-empty text or a number".to_owned())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// What makes this event's request the same as another's (`http.idempotency_key`), if
    /// the manifest says.
    fn request_key(&self, input: &Value) -> Result<Option<String>, String> {
        let Target::Http(http) = &self.spec.target else {
            return Ok(None);
        };
        let Some(mapping) = &http.idempotency_key else {
            return Ok(None);
        };
        match mapping
            .apply(input)
            .map_err(|e| format!("idempotency_key mapping: {e}"))?
        {
            Value::String(text) if !text.is_empty() => Ok(Some(text)),
            Value::Number(number) => Ok(Some(number.to_string())),
            other => Err(format!(
                "idempotency_key mapping must give non-empty text or a number, not {}",
                json_kind(&other)
            )),
        }
    }

    fn caller(&self) -> Caller {
        Caller::internal(self.manifest.system.clone())
    }

    fn count(&self, outcome: &str) {
        self.metrics.connector_event(&self.manifest.name, outcome);
    }

    /// Runs until `stop` is cancelled (then `Ok`) or something the worker cannot handle
    /// happens (then the error; the runtime restarts it).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError> {
        let caller = self.caller();
        let mut sources = Vec::new();
        let mut streams = Vec::new();
        let mut guards = Vec::new();
        let mut assignments = Vec::new();
        for (index, event_type) in self.spec.event_types.iter().enumerate() {
            let opened = self
                .events
                .subscribe(
                    &caller,
                    SubscribeInput {
                        event_types: vec![event_type.clone()],
                        group: self.manifest.name.clone(),
                        start: match self.spec.start_at {
                            StartAt::Earliest => StartFrom::Earliest,
                            StartAt::Latest => StartFrom::Latest,
                        },
                        max_unacknowledged: self.spec.delivery.max_in_flight,
                        purpose: self.manifest.purpose.clone(),
                        legal_basis: self.manifest.legal_basis.clone(),
                    },
                )
                .await
                .map_err(|source| WorkerError::Subscribe {
                    event_type: event_type.clone(),
                    source,
                })?;
            // Leaving `run` by any path ends the subscriptions, committing what was acknowledged.
            guards.push(opened.ended.clone().drop_guard());
            let recipient =
                opened
                    .recipient(event_type)
                    .map_err(|source| WorkerError::Subscribe {
                        event_type: event_type.clone(),
                        source,
                    })?;
            // Each stream says when it ends (`None`): a subscription ended by a withdrawn
            // right must stop the worker, not leave it running on the other types.
            streams.push(tagged_until_end(opened.deliveries, index));
            assignments.push((event_type.clone(), opened.assignment.clone()));
            sources.push(Source {
                event_type: event_type.clone(),
                assignment: opened.assignment.clone(),
                subscription: opened.id.to_string(),
                recipient,
                withdrawn: opened.withdrawn,
            });
        }
        let mut incoming = futures::stream::select_all(streams);
        let recipients = sources
            .iter()
            .map(|s| (s.event_type.clone(), s.recipient.clone()))
            .collect();
        // Ends with the worker: its stop is cancelled whichever way `run` returns.
        let replays = stop.child_token();
        let _replays_end = replays.clone().drop_guard();
        let replaying = tokio::spawn(self.clone().replay_requested(recipients, replays.clone()));
        self.stats.set_assignments(assignments);
        // Whichever way `run` ends, its partitions are no longer this worker's.
        let _held = ClearAssignments(&self.stats);
        self.stats.set_state(WorkerState::Running);
        tracing::info!(connector = %self.manifest.name, "connector running");
        let mut lanes: HashMap<String, VecDeque<(usize, Received)>> = HashMap::new();
        let mut working: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some((key, index, position, outcome)) = working.next(), if !working.is_empty() => {
                    match outcome {
                        Ok(_) => {
                            self.events
                                .acknowledge(&caller, &sources[index].subscription, vec![position])
                                .await
                                .map_err(WorkerError::Acknowledge)?;
                        }
                        Err(WorkerError::Stopping) => {}
                        Err(error) => return Err(error),
                    }
                    // The dossier's next event, unless a rebalance gave its partition to another
                    // process: that one delivers it again, in order, from the committed offset.
                    let next = lanes.get_mut(&key).and_then(|waiting| {
                        while let Some((index, received)) = waiting.pop_front() {
                            if sources[index]
                                .assignment
                                .holds(received.partition, received.generation)
                            {
                                return Some((index, received));
                            }
                        }
                        None
                    });
                    match next {
                        Some((index, received)) => {
                            working.push(self.clone().start(&sources[index], index, key, received, &stop));
                        }
                        None => {
                            lanes.remove(&key);
                        }
                    }
                }
                next = incoming.next() => match next {
                    Some((index, Some(received))) => {
                        let key = lane_key(&received);
                        if let Some(waiting) = lanes.get_mut(&key) {
                            waiting.push_back((index, received));
                        } else {
                            lanes.insert(key.clone(), VecDeque::new());
                            working.push(self.clone().start(&sources[index], index, key, received, &stop));
                        }
                    }
                    ended => {
                        let index = ended.map_or(0, |(index, _)| index);
                        let source = &mut sources[index];
                        let why = match source.withdrawn.try_recv() {
                            Ok(why) => format!("{why:?}"),
                            Err(_) => "the hub is shutting down or the consumer stopped".to_owned(),
                        };
                        if stop.is_cancelled() {
                            break;
                        }
                        return Err(WorkerError::Ended { event_type: source.event_type.clone(), why });
                    }
                },
            }
        }
        replays.cancel();
        // Calls in progress get a moment to finish; those that do are acknowledged, the
        // others are delivered again (with the same idempotency key) after the restart.
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        while !working.is_empty() {
            tokio::select! {
                () = &mut grace => break,
                Some((_, index, position, outcome)) = working.next() => {
                    if outcome.is_ok() {
                        let _ = self
                            .events
                            .acknowledge(&caller, &sources[index].subscription, vec![position])
                            .await;
                    }
                }
            }
        }
        // What did not finish is delivered again after the restart; a replay that did not
        // finish is claimed again when its claim lapses.
        drop(working);
        replaying.abort();
        Ok(())
    }

    fn start(
        self: Arc<Self>,
        source: &Source,
        index: usize,
        key: String,
        received: Received,
        stop: &CancellationToken,
    ) -> BoxFuture<'static, Done> {
        let event_type = source.event_type.clone();
        let recipient = source.recipient.clone();
        let stop = stop.clone();
        async move {
            let position = (received.partition, received.offset);
            let outcome = self
                .handle(&event_type, &recipient, received, Turn::Delivery, &stop)
                .await;
            (key, index, position, outcome)
        }
        .boxed()
    }

    /// Maps, calls and publishes the reply for one event, or dead-letters it (or parks it).
    async fn handle(
        &self,
        event_type: &str,
        recipient: &Recipient,
        received: Received,
        turn: Turn,
        stop: &CancellationToken,
    ) -> Result<Handled, WorkerError> {
        let now = self.clock.now();
        let envelope = match Envelope::from_headers(&received.headers) {
            Ok(envelope) => envelope,
            Err(e) => {
                let failure = Failure::permanent("Envelope", e.to_string(), now);
                return self
                    .give_up(&received, event_type, None, None, failure)
                    .await;
            }
        };
        let decoded = self
            .events
            .decode(received.clone(), event_type, recipient)
            .await;
        let Some(payload) = decoded.payload else {
            let message = decoded.decode_error.unwrap_or_default();
            if decoded.decode_transient {
                // Not the event's fault: the worker restarts and the event comes again.
                return Err(WorkerError::Decode(message));
            }
            let failure = Failure::permanent("Decode", message, now);
            return self
                .give_up(&received, event_type, Some(&envelope), None, failure)
                .await;
        };
        let mut input = json!({"event": payload, "envelope": envelope_json(&envelope)});
        if !self.spec.vars.is_empty() {
            input["vars"] = Value::Object(self.spec.vars.clone());
        }
        // `None`: an event `source.when` leaves alone.
        let mapped = self.acts_on(&input).and_then(|acts| {
            if !acts {
                return Ok(None);
            }
            let body = self
                .spec
                .request
                .apply(&input)
                .map_err(|e| format!("request mapping: {e}"))?;
            let key = match self.request_key(&input)? {
                Some(what) => key_of(&self.manifest.name, &format!("key:{what}")),
                None => idempotency_key(&self.manifest.name, envelope.event_id),
            };
            Ok(Some((body, self.path(&input)?, key)))
        });
        let (body, path, key) = match mapped {
            Ok(Some(mapped)) => mapped,
            Ok(None) => {
                self.count("skipped");
                return Ok(Handled::Delivered);
            }
            Err(message) => {
                let failure = Failure::permanent("Mapping", message, now);
                return self
                    .give_up(
                        &received,
                        event_type,
                        Some(&envelope),
                        Some(&input),
                        failure,
                    )
                    .await;
            }
        };
        let mut delays = backoff(&self.spec.delivery);
        // A parked event's record keeps counting from its first question.
        let (mut attempts, mut first_failure) = match turn {
            Turn::Delivery => (0, None),
            Turn::Parked {
                since, attempts, ..
            } => (attempts, Some(since)),
        };
        let answer = loop {
            attempts += 1;
            let outcome = match self.sink.call(&body, &key, path.as_deref()).await {
                Ok(answer) => match self.pending(&input, &answer) {
                    Ok(Pending::No) => Ok(answer),
                    Ok(Pending::Until(until)) => {
                        let first_at = *first_failure.get_or_insert(self.clock.now());
                        let failure = Failure {
                            class: PENDING.to_owned(),
                            message: format!(
                                "the answer (HTTP {}) says the work is not finished yet; \
                                 parked until {}",
                                answer.status,
                                until.to_rfc3339_opts(SecondsFormat::Secs, true)
                            ),
                            attempts,
                            retryable: true,
                            status: Some(answer.status),
                            first_at,
                        };
                        return self
                            .park(&received, event_type, &envelope, failure, turn, until)
                            .await;
                    }
                    // A parked event's turn is one question: asking in a lane would hold up
                    // every other replay of the connector while it waits.
                    Ok(Pending::InLane) if turn != Turn::Delivery => Err(CallError {
                        class: PENDING.to_owned(),
                        message: format!(
                            "the answer (HTTP {}) still says the work is not finished, and \
                             reply.ask_again_at gives no time to wait until",
                            answer.status
                        ),
                        status: Some(answer.status),
                        retryable: false,
                    }),
                    Ok(Pending::InLane) => Err(CallError {
                        class: PENDING.to_owned(),
                        message: format!(
                            "the answer (HTTP {}) says the work is not finished yet",
                            answer.status
                        ),
                        status: Some(answer.status),
                        retryable: true,
                    }),
                    Err(message) => {
                        let failure = Failure::permanent("Mapping", message, self.clock.now());
                        return self
                            .give_up(
                                &received,
                                event_type,
                                Some(&envelope),
                                Some(&input),
                                Failure {
                                    attempts,
                                    ..failure
                                },
                            )
                            .await;
                    }
                },
                // A status the manifest says a later attempt may get past (the portal's 404
                // until another connector has synced the dossier).
                Err(error)
                    if error
                        .status
                        .is_some_and(|s| self.spec.delivery.retry_statuses.contains(&s)) =>
                {
                    Err(CallError {
                        retryable: true,
                        ..error
                    })
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(answer) => break answer,
                Err(error) => {
                    let at = self.clock.now();
                    let first_at = *first_failure.get_or_insert(at);
                    // A parked event's turn does not wait in the replay task for a system that
                    // fails: it is parked again, and park's floor (the longest backoff) says
                    // when it asks again.
                    if turn != Turn::Delivery && error.retryable {
                        self.stats.failed_attempt(at, &error.message);
                        self.count("failed_attempt");
                        let failure = Failure::from_call(error, attempts, first_at);
                        return self
                            .park(&received, event_type, &envelope, failure, turn, at)
                            .await;
                    }
                    if error.class == PENDING {
                        // Asked too early, not failed: the operator's error counters stay put.
                        if error.retryable {
                            tracing::info!(connector = %self.manifest.name, event_id = %envelope.event_id, attempts, "not finished yet; asking again later");
                        }
                    } else {
                        self.stats.failed_attempt(at, &error.message);
                        self.count("failed_attempt");
                        tracing::warn!(connector = %self.manifest.name, event_id = %envelope.event_id, attempts, class = %error.class, "call failed");
                    }
                    let delay = if error.retryable { delays.next() } else { None };
                    let Some(delay) = delay else {
                        let failure = Failure::from_call(error, attempts, first_at);
                        return self
                            .give_up(
                                &received,
                                event_type,
                                Some(&envelope),
                                Some(&input),
                                failure,
                            )
                            .await;
                    };
                    tokio::select! {
                        () = self.clock.sleep(delay) => {}
                        () = stop.cancelled() => return Err(WorkerError::Stopping),
                    }
                }
            }
        };
        self.events
            .ledger()
            .record(Crossing {
                channel: Channel::ConnectorCall,
                source: self.manifest.system.as_str(),
                target: &self.manifest.name,
                event: Some(EventRef::of(&envelope)),
                purpose: &self.manifest.purpose,
                legal_basis: &self.manifest.legal_basis,
                dossier_code: envelope.correlation_id.as_ref().map(|c| c.as_str()),
                payload: &body,
                concerning: Some(&input["event"]),
                classes: None,
                trace_id: trace_id_of(received.headers.get(TRACEPARENT).map(String::as_str)),
            })
            .await
            .map_err(|source| WorkerError::Unrecorded {
                event_id: envelope.event_id,
                source,
            })?;
        self.stats.delivered(self.clock.now(), answer.latency);
        self.count("delivered");
        self.metrics
            .connector_call_latency
            .get_or_create(&ConnectorLabels {
                connector: self.manifest.name.clone(),
            })
            .observe(answer.latency.as_secs_f64());
        if self.spec.reply.is_none() && self.spec.refusal.is_none() {
            return Ok(Handled::Delivered);
        }
        input["response"] = response_json(&answer, self.clock.now());
        let refused = match self.outcome_of(&input) {
            Ok(None) => return Ok(Handled::Delivered),
            Ok(Some((output, role))) => match self.reply_payload(output, role, &input) {
                // The answer announces nothing (a reply mapping that gives null).
                Ok((Value::Null, _)) => return Ok(Handled::Delivered),
                Ok((payload, key)) => match self
                    .publish_outcome(output, payload, &envelope, role, key.as_deref())
                    .await?
                {
                    Ok(()) => return Ok(Handled::Delivered),
                    Err(refused) => Failure::permanent(REPLY_REFUSED, refused, self.clock.now()),
                },
                Err(message) => Failure::permanent("Mapping", message, self.clock.now()),
            },
            Err(message) => Failure::permanent("Mapping", message, self.clock.now()),
        };
        // The call was made; what it answered cannot become an event. The operator sees why.
        self.give_up(
            &received,
            event_type,
            Some(&envelope),
            Some(&input),
            Failure {
                attempts,
                ..refused
            },
        )
        .await
    }

    /// False for an event the manifest's `source.when` leaves alone.
    fn acts_on(&self, input: &Value) -> Result<bool, String> {
        let Some(when) = &self.spec.when else {
            return Ok(true);
        };
        match when.apply(input) {
            Ok(Value::Bool(acts)) => Ok(acts),
            Ok(other) => Err(format!(
                "source.when must give true or false, not {}",
                json_kind(&other)
            )),
            Err(e) => Err(format!("source.when: {e}")),
        }
    }

    /// What an answer is published as: the refusal's event when its `when` says the answer is
    /// a no, else the reply's (`None`: the connector announces nothing).
    fn outcome_of(&self, input: &Value) -> Result<Option<(&Output, &'static str)>, String> {
        if let Some(refusal) = &self.spec.refusal {
            match refusal.when.apply(input) {
                Ok(Value::Bool(true)) => return Ok(Some((&refusal.output, "refusal"))),
                // A status read as an answer only for the refusal (a 404) that the refusal does
                // not take (another endpoint's 404: a wrong URL) is a failure, not a reply.
                Ok(Value::Bool(false)) => {
                    let status = input.pointer("/response/status").and_then(Value::as_u64);
                    if let Some(status) =
                        status.filter(|s| refusal.statuses.iter().any(|r| u64::from(*r) == *s))
                    {
                        return Err(format!(
                            "the endpoint answered HTTP {status}, which refusal.when does not \
                             take as its refusal"
                        ));
                    }
                }
                Ok(other) => {
                    return Err(format!(
                        "refusal.when must give true or false, not {}",
                        json_kind(&other)
                    ));
                }
                Err(e) => return Err(format!("refusal.when: {e}")),
            }
        }
        Ok(self.spec.reply.as_ref().map(|reply| (reply, "reply")))
    }

    /// What the reply's `pending` program says of an answer, and, when it is not final, what
    /// its `ask_again_at` program says of when to ask again.
    fn pending(&self, input: &Value, answer: &Answer) -> Result<Pending, String> {
        let Some(reply) = self.spec.reply.as_ref() else {
            return Ok(Pending::No);
        };
        // A refusal's status (a 404) is a final answer, whatever the reply's program says.
        if self
            .spec
            .refusal
            .as_ref()
            .is_some_and(|r| r.statuses.contains(&answer.status))
        {
            return Ok(Pending::No);
        }
        let Some(pending) = reply.pending.as_ref() else {
            return Ok(Pending::No);
        };
        let mut input = input.clone();
        input["response"] = response_json(answer, self.clock.now());
        match pending.apply(&input) {
            Ok(Value::Bool(false)) => return Ok(Pending::No),
            Ok(Value::Bool(true)) => {}
            Ok(other) => {
                return Err(format!(
                    "reply.pending must give true or false, not {}",
                    json_kind(&other)
                ));
            }
            Err(e) => return Err(format!("reply.pending: {e}")),
        }
        let Some(program) = reply.ask_again_at.as_ref() else {
            return Ok(Pending::InLane);
        };
        match program.apply(&input) {
            Ok(Value::Null) => Ok(Pending::InLane),
            Ok(Value::String(at)) => DateTime::parse_from_rfc3339(&at)
                .map(|at| Pending::Until(at.with_timezone(&Utc)))
                .map_err(|e| format!("reply.ask_again_at gave {at:?}, not an RFC 3339 time: {e}")),
            Ok(other) => Err(format!(
                "reply.ask_again_at must give a time or null, not {}",
                json_kind(&other)
            )),
            Err(e) => Err(format!("reply.ask_again_at: {e}")),
        }
    }

    /// The payload of the reply (or refusal, as `role` says) and, when it has a `key`
    /// program, its key.
    fn reply_payload(
        &self,
        reply: &Output,
        role: &str,
        input: &Value,
    ) -> Result<(Value, Option<String>), String> {
        let payload = reply
            .mapping
            .apply(input)
            .map_err(|e| format!("{role} mapping: {e}"))?;
        let Some(program) = reply.key.as_ref().filter(|_| !payload.is_null()) else {
            return Ok((payload, None));
        };
        let key = match program.apply(input) {
            Ok(Value::String(key)) if !key.is_empty() => key,
            Ok(Value::Number(key)) => key.to_string(),
            Ok(other) => {
                return Err(format!(
                    "{role}.key must give a non-empty string, not {}",
                    json_kind(&other)
                ));
            }
            Err(e) => return Err(format!("{role}.key: {e}")),
        };
        // A refusal's keys apart from the reply's, which were stored bare before refusals had
        // keys: one key (a transaction) must not give a refusal the id of a reply.
        Ok(match role {
            "reply" => (payload, Some(key)),
            _ => (payload, Some(format!("{role}:{key}"))),
        })
    }

    /// Publishes an event about `cause`; `Ok(Err(why))` when the hub refuses it (a mapping
    /// that makes an invalid event, a missing right), which no retry fixes. With a `key`, the
    /// event takes the id the first reply about that key was given.
    async fn publish_outcome(
        &self,
        output: &Output,
        payload: Value,
        cause: &Envelope,
        role: &'static str,
        key: Option<&str>,
    ) -> Result<Result<(), String>, WorkerError> {
        let mut event_id = outcome_id(&self.manifest.name, cause.event_id, role);
        if let Some(key) = key {
            event_id = state::outcome_id_for_key(&self.pool, &self.manifest.name, key, event_id)
                .await
                .map_err(|e| WorkerError::Publish {
                    role,
                    event_id: cause.event_id,
                    message: format!("cannot read the event id of reply key: {e}"),
                })?;
        }
        let event = NewEvent {
            event_type: output.event_type.clone(),
            event_id,
            occurred_at: self.clock.now().with_timezone(&crate::domain::vietnam()),
            correlation_id: cause.correlation_id.clone(),
            causation_id: Some(cause.event_id),
            purpose: self.manifest.purpose.clone(),
            legal_basis: self.manifest.legal_basis.clone(),
            payload,
        };
        let mut last = String::new();
        let mut attempt = 0;
        while attempt < PUBLISH_ATTEMPTS {
            match self
                .events
                .publish_event(&self.caller(), event.clone())
                .await
            {
                Ok(_) => return Ok(Ok(())),
                Err(PublishError::Rejected(rejected)) => {
                    return Ok(Err(format!(
                        "the {role} event was refused ({})",
                        rejected.summary()
                    )));
                }
                Err(PublishError::Denied(denied)) => {
                    return Ok(Err(format!("the {role} event was denied: {denied}")));
                }
                // Over the connector system's own rate: wait as told; that is no failure.
                Err(PublishError::Throttled(throttled)) => {
                    self.clock.sleep(throttled.retry_after).await;
                }
                Err(other) => {
                    attempt += 1;
                    last = other.to_string();
                    tracing::warn!(connector = %self.manifest.name, attempt, error = %last, "publishing an outcome failed");
                    self.clock
                        .sleep(Duration::from_millis(200 * u64::from(attempt)))
                        .await;
                }
            }
        }
        Err(WorkerError::Publish {
            role,
            event_id: cause.event_id,
            message: last,
        })
    }

    /// Keeps a pending event aside until `until` (never sooner than the longest backoff, so
    /// a time already past cannot make a loop), when its replay, requested for that time,
    /// handles it again; its lane and its in-flight slot are free meanwhile. The record is
    /// the event on its own topic, not a copy on the dead-letter topic (which holds failures
    /// only); a parked event asked again and still waiting keeps its one row.
    async fn park(
        &self,
        received: &Received,
        event_type: &str,
        envelope: &Envelope,
        failure: Failure,
        turn: Turn,
        until: DateTime<Utc>,
    ) -> Result<Handled, WorkerError> {
        let now = self.clock.now();
        let soonest = now
            + chrono::Duration::from_std(self.spec.delivery.max_backoff.max(MIN_PARKING))
                .unwrap_or_else(|_| chrono::Duration::minutes(1));
        let until = until.max(soonest);
        let error = |e: crate::db::DbError| WorkerError::DeadLetter {
            topic: received.topic.clone(),
            partition: received.partition,
            offset: received.offset,
            message: e.to_string(),
        };
        let attempts = i32::try_from(failure.attempts).unwrap_or(i32::MAX);
        let id = match turn {
            Turn::Parked { id, .. } => {
                state::park_again(
                    &self.pool,
                    id,
                    &self.process,
                    until,
                    (&failure.class, &failure.message),
                    attempts,
                    now,
                )
                .await
                .map_err(error)?;
                id
            }
            Turn::Delivery => {
                let source = (received.topic.clone(), received.partition, received.offset);
                state::add_dead_letter(
                    &self.pool,
                    &DeadLetter {
                        id: 0,
                        name: self.manifest.name.clone(),
                        event_id: Some(envelope.event_id),
                        event_type: event_type.to_owned(),
                        dlq: source.clone(),
                        source,
                        error_class: failure.class.clone(),
                        error_message: failure.message.clone(),
                        attempts,
                        first_failure_at: failure.first_at,
                        last_failure_at: now,
                        replayed_at: None,
                        replay_requested_at: None,
                        replay_outcome: None,
                        parked_until: Some(until),
                    },
                )
                .await
                .map_err(error)?
            }
        };
        self.count("parked");
        tracing::info!(connector = %self.manifest.name, event_id = %envelope.event_id, parked = id, %until, "not finished yet; parked until it is asked again");
        Ok(Handled::Parked(id, until))
    }

    /// Puts the event on the connector's dead-letter topic (the record as it was, with Kafka
    /// Connect's error headers and ours), records it for operators and publishes the failure
    /// event if the manifest has one.
    async fn give_up(
        &self,
        received: &Received,
        event_type: &str,
        envelope: Option<&Envelope>,
        input: Option<&Value>,
        failure: Failure,
    ) -> Result<Handled, WorkerError> {
        let last_at = self.clock.now();
        let dlq_error = |message: String| WorkerError::DeadLetter {
            topic: received.topic.clone(),
            partition: received.partition,
            offset: received.offset,
            message,
        };
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let extra = [
            ("__connect.errors.topic", received.topic.clone()),
            ("__connect.errors.partition", received.partition.to_string()),
            ("__connect.errors.offset", received.offset.to_string()),
            (
                "__connect.errors.connector.name",
                self.manifest.name.clone(),
            ),
            (
                "__connect.errors.exception.class.name",
                failure.class.clone(),
            ),
            (
                "__connect.errors.exception.message",
                failure.message.clone(),
            ),
            ("lienthong.errors.attempts", failure.attempts.to_string()),
            ("lienthong.errors.first_failure", time(failure.first_at)),
            ("lienthong.errors.last_failure", time(last_at)),
        ];
        let mut headers = OwnedHeaders::new_with_capacity(received.headers.len() + extra.len());
        for (key, value) in &received.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        for (key, value) in &extra {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let key = lane_key(received);
        let produced = self
            .producer
            .send(&self.dlq_topic, &key, &received.payload, headers)
            .await
            .map_err(|e| dlq_error(e.to_string()))?;
        let id = state::add_dead_letter(
            &self.pool,
            &DeadLetter {
                id: 0,
                name: self.manifest.name.clone(),
                event_id: envelope.map(|e| e.event_id),
                event_type: event_type.to_owned(),
                source: (received.topic.clone(), received.partition, received.offset),
                dlq: (self.dlq_topic.clone(), produced.partition, produced.offset),
                error_class: failure.class.clone(),
                error_message: failure.message.clone(),
                attempts: i32::try_from(failure.attempts).unwrap_or(i32::MAX),
                first_failure_at: failure.first_at,
                last_failure_at: last_at,
                replayed_at: None,
                replay_requested_at: None,
                replay_outcome: None,
                parked_until: None,
            },
        )
        .await
        .map_err(|e| dlq_error(e.to_string()))?;
        // An attempt that failed was counted when it failed; a refusal before any attempt
        // (mapping, decoding) is counted here.
        if failure.attempts == 0 {
            self.stats.failed_attempt(last_at, &failure.message);
        }
        self.stats.dead_lettered();
        self.count("dead_lettered");
        tracing::warn!(connector = %self.manifest.name, dead_letter = id, class = %failure.class, "event dead-lettered");
        // The call was made and did what it was asked; only its reply could not become an event.
        // Announcing the step as failed would be false: the dead letter tells the operator.
        if failure.class == REPLY_REFUSED {
            return Ok(Handled::DeadLettered(id));
        }
        let (Some(output), Some(envelope), Some(input)) = (&self.spec.failure, envelope, input)
        else {
            return Ok(Handled::DeadLettered(id));
        };
        let mut input = input.clone();
        input["error"] = json!({
            "class": failure.class,
            "message": failure.message,
            "attempts": failure.attempts,
            "retryable": failure.retryable,
            "status": failure.status,
            "failed_at": time(last_at),
        });
        match output.mapping.apply(&input) {
            Ok(payload) => {
                if let Err(refused) = self
                    .publish_outcome(output, payload, envelope, "failure", None)
                    .await?
                {
                    tracing::error!(connector = %self.manifest.name, dead_letter = id, %refused, "failure event not published");
                }
            }
            Err(e) => {
                tracing::error!(connector = %self.manifest.name, dead_letter = id, error = %e, "failure mapping failed");
            }
        }
        Ok(Handled::DeadLettered(id))
    }

    /// Replays the dead letters operators asked for, as they are claimed by this process.
    async fn replay_requested(
        self: Arc<Self>,
        recipients: HashMap<String, Arc<Recipient>>,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(self.refresh);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // Claimed and replayed one by one until none is left.
            while !stop.is_cancelled() {
                let claimed = match state::claim_replays(
                    &self.pool,
                    &self.manifest.name,
                    &self.process,
                    REPLAY_BATCH,
                )
                .await
                {
                    Ok(claimed) if claimed.is_empty() => break,
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(connector = %self.manifest.name, %error, "cannot look for replays");
                        break;
                    }
                };
                for claim in claimed {
                    let outcome = match self.replay(&claim, &recipients, &stop).await {
                        // Parked again: the record stays open, its next turn requested.
                        Ok(None) => continue,
                        Ok(Some(outcome)) => outcome,
                        // Unfinished: the claim lapses and a process takes the replay up again.
                        Err(WorkerError::Stopping) => return,
                        Err(error) => {
                            tracing::warn!(connector = %self.manifest.name, dead_letter = claim.id, %error, "replay failed");
                            continue;
                        }
                    };
                    tracing::info!(connector = %self.manifest.name, dead_letter = claim.id, %outcome, "dead letter replayed");
                    if let Err(error) =
                        state::replayed(&self.pool, claim.id, &self.process, &outcome).await
                    {
                        tracing::warn!(connector = %self.manifest.name, dead_letter = claim.id, %error, "cannot record the replay");
                    }
                }
            }
        }
    }

    /// Reads the dead letter (or parked event) back from its topic and handles it again, as
    /// first delivered; what came of it, or `None` for a parked event parked again.
    async fn replay(
        &self,
        claim: &state::Claimed,
        recipients: &HashMap<String, Arc<Recipient>>,
        stop: &CancellationToken,
    ) -> Result<Option<String>, WorkerError> {
        let Some(recipient) = recipients.get(&claim.event_type) else {
            return Ok(Some(format!(
                "not replayed: the connector no longer consumes {}",
                claim.event_type
            )));
        };
        let (topic, partition, offset) = &claim.dlq;
        let mut record = match fetch(&self.kafka, topic, *partition, *offset, FETCH_TIMEOUT).await {
            Ok(record) => record,
            Err(error @ FetchError::Missing { .. }) => {
                return Ok(Some(format!("not replayed: {error}")));
            }
            Err(error) => {
                return Err(WorkerError::DeadLetter {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    message: error.to_string(),
                });
            }
        };
        // The event as it first came: its own position, without the errors added to it.
        record.headers.retain(|key, _| {
            !key.starts_with("__connect.errors.") && !key.starts_with("lienthong.errors.")
        });
        (record.topic, record.partition, record.offset) = claim.source.clone();
        let turn = match claim.parked {
            Some((since, attempts)) => Turn::Parked {
                id: claim.id,
                since,
                attempts: u32::try_from(attempts).unwrap_or(0),
            },
            None => Turn::Delivery,
        };
        Ok(
            match self
                .handle(&claim.event_type, recipient, record, turn, stop)
                .await?
            {
                Handled::Delivered => Some("delivered".to_owned()),
                Handled::DeadLettered(id) => Some(format!("dead-lettered again as #{id}")),
                Handled::Parked(..) if turn != Turn::Delivery => None,
                Handled::Parked(id, until) => Some(format!(
                    "parked as #{id} until {}",
                    until.to_rfc3339_opts(SecondsFormat::Secs, true)
                )),
            },
        )
    }
}

impl Failure {
    fn from_call(error: CallError, attempts: u32, first_at: DateTime<Utc>) -> Self {
        Self {
            class: error.class,
            message: error.message,
            attempts,
            retryable: error.retryable,
            status: error.status,
            first_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derived_from_an_event_are_stable_and_distinct() {
        let cause = Uuid::now_v7();
        assert_eq!(idempotency_key("a", cause), idempotency_key("a", cause));
        assert_ne!(idempotency_key("a", cause), idempotency_key("b", cause));
        // A key from what events share is the same for both, and never an event's own.
        let shared = key_of("a", "key:G22.99.08-261120-0042");
        assert_eq!(shared, key_of("a", "key:G22.99.08-261120-0042"));
        assert_ne!(shared, idempotency_key("a", cause));
        assert!(Uuid::parse_str(&shared).is_ok(), "UUID-shaped: {shared}");
        let reply = outcome_id("a", cause, "reply");
        assert_eq!(reply, outcome_id("a", cause, "reply"));
        assert_ne!(reply, outcome_id("a", cause, "failure"));
        assert_eq!(reply.get_version_num(), 7);
        assert_eq!(
            reply.get_timestamp(),
            cause.get_timestamp().map(|t| {
                let (s, n) = t.to_unix();
                uuid::Timestamp::from_unix(uuid::NoContext, s, n / 1_000_000 * 1_000_000)
            })
        );
    }
}
