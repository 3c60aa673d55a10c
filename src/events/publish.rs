//! The publish path: check rights, the envelope and the payload in one pass (every violation,
//! not the first), quarantine what is refused, encode the rest as Avro in Confluent's wire format
//! and produce it with the envelope as headers, keyed by the dossier code or the field its type
//! names. This is the one place where every event enters the bus, so later lineage records hook
//! in here.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use futures::FutureExt as _;
use futures::stream::{FuturesOrdered, FuturesUnordered, Stream, StreamExt as _};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;
use uuid::Uuid;

use super::Events;
use super::envelope_check::{
    CheckedEnvelope, NewEvent, PublishInput, RawPayload, check_envelope, check_new_event,
};
use super::quarantine::{QuarantineEntry, QuarantineError};
use crate::access::{Caller, Denied, Direction, Throttled};
use crate::audit::{Channel, Crossing, EventRef, LedgerError, Transfer, trace_id_of};
use crate::bus::envelope::TRACEPARENT;
use crate::bus::{Envelope, InFlight, ProduceError, trace};
use crate::registry::{DecodeError, EventSchema, Violation, normalised};
use crate::telemetry::metrics::{EventLabels, RejectionLabels};

/// A published event: where the broker stored it and under which schema.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub event_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub schema_subject: String,
    pub schema_version: i32,
    pub schema_id: u32,
    /// Rules the event broke that only warn: it was accepted, and they travel with it.
    pub warnings: Vec<Violation>,
}

/// A refused event: every violation, and where it was kept.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub violations: Vec<Violation>,
    pub quarantine_id: i64,
}

impl Rejected {
    /// The first violations in one line, for a connector's status and dead letters (rule
    /// messages never quote values).
    pub fn summary(&self) -> String {
        let said: Vec<String> = self
            .violations
            .iter()
            .take(5)
            .map(|v| format!("{} {}: {}", v.pointer, v.rule, v.message))
            .collect();
        format!("quarantine #{}: {}", self.quarantine_id, said.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the event breaks {} rule(s)", .0.violations.len())]
    Rejected(Rejected),
    /// The broker did not take the event; retrying with `event_id` lets consumers deduplicate.
    #[error("event {event_id}: {source}")]
    Produce {
        event_id: Uuid,
        source: ProduceError,
    },
    #[error("cannot quarantine the refused event: {0}")]
    Quarantine(QuarantineError),
    /// The caller has no right to publish this type for this purpose: nothing was kept.
    #[error(transparent)]
    Denied(Denied),
    /// The caller's system publishes faster than its limit: nothing was kept; retry later.
    #[error(transparent)]
    Throttled(Throttled),
    /// The broker took the event but its transfer could not be recorded: retrying with
    /// `event_id` records it (consumers deduplicate the second copy).
    #[error("event {event_id}: {source}")]
    Unrecorded { event_id: Uuid, source: LedgerError },
    /// Not queued, so as not to overtake an earlier event that could not be
    /// ([`Events::publish_events_in_order`]), or because the hub was stopping: the reason.
    #[error("not queued: {0}")]
    NotQueued(String),
    /// The payload's Avro schema could not be looked up (the registry's database did not
    /// answer): nothing was kept; retry.
    #[error("cannot read the payload's schema now: {0}")]
    Unread(DecodeError),
}

/// Why an event was refused, for metrics and the quarantine.
fn reason(schema: Option<&EventSchema>, violations: &[Violation]) -> &'static str {
    if schema.is_none() {
        "unknown_event_type"
    } else if violations.iter().any(|v| v.rule == "avro") {
        "avro"
    } else if violations.iter().any(|v| v.pointer.starts_with("/payload")) {
        "schema"
    } else {
        "envelope"
    }
}

/// The record key of an accepted event: the dossier code, or the payload field its type names
/// (a required string, so present once the payload is valid).
fn record_key(schema: &EventSchema, checked: &CheckedEnvelope, payload: &Value) -> Option<String> {
    match &schema.key {
        None => checked
            .correlation_id
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        Some(field) => payload[field.as_str()].as_str().map(str::to_owned),
    }
}

/// What the checks read of an event, whichever way it came in.
struct Draft<'a> {
    event_type: &'a str,
    purpose: &'a str,
    legal_basis: &'a str,
    payload: &'a Value,
    /// The payload as sent when not as a JSON value (`payload` is then unused): read only once
    /// the caller's right to publish is known.
    raw: Option<&'a RawPayload>,
}

/// A valid event, encoded and ready to produce.
struct Prepared {
    schema: Arc<EventSchema>,
    envelope: Envelope,
    /// The Kafka key: the dossier code, or the field the event type names.
    key: String,
    bytes: Vec<u8>,
    warnings: Vec<Violation>,
    /// Recorded in the ledger once the broker has the event.
    transfer: Transfer,
    /// The caller's trace, carried in the record's headers.
    trace_context: HashMap<String, String>,
}

/// An event in the producer's queue.
struct Pending {
    schema: Arc<EventSchema>,
    event_id: Uuid,
    in_flight: InFlight,
    warnings: Vec<Violation>,
    transfer: Transfer,
}

/// The target system of a publish: the hub itself.
const HUB: &str = "hub";

/// Events a publishing stream may have queued to the producer and not yet acknowledged.
const BATCH_IN_FLIGHT: usize = 4096;
/// Outcomes waiting for the caller to take them.
const RESULTS_BUFFER: usize = 1024;
/// Events of one publishing stream being checked and encoded at once, on any worker thread:
/// enough to keep every core busy while some wait for the quarantine's database.
const PREPARING: usize = 64;

/// The outcome of a check run as a task of its own. A panic goes on unwinding in the caller,
/// as it would have had the check run there; a task cancelled (the runtime stopping) queues
/// nothing.
fn checked(
    joined: Result<Result<Prepared, PublishError>, tokio::task::JoinError>,
) -> Result<Prepared, PublishError> {
    match joined {
        Ok(prepared) => prepared,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(PublishError::NotQueued(
            "the hub stopped before the event was checked".to_owned(),
        )),
    }
}

impl Events {
    /// Validates, then produces `input` and waits for the broker; or quarantines it.
    pub async fn publish(
        &self,
        caller: &Caller,
        input: PublishInput,
    ) -> Result<Accepted, PublishError> {
        let prepared = self.prepare(caller, &input).await?;
        let pending = self.enqueue(caller, prepared).await?;
        self.finish(pending).await
    }

    /// Publishes a stream of events and collects every outcome, in the order sent.
    pub async fn publish_batch<S>(
        self: &Arc<Self>,
        caller: &Caller,
        inputs: S,
    ) -> Vec<Result<Accepted, PublishError>>
    where
        S: Stream<Item = PublishInput>,
    {
        let (sender, mut receiver) = mpsc::channel(RESULTS_BUFFER);
        let mut outcomes = Vec::new();
        let collect = async {
            while let Some(outcome) = receiver.recv().await {
                outcomes.push(outcome);
            }
        };
        futures::join!(self.publish_each(caller, inputs, sender), collect);
        outcomes.sort_unstable_by_key(|(index, _)| *index);
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    }

    /// Publishes a stream of events in order and reports each outcome on `results` as soon as
    /// it is known, with the event's position: a refusal at once, an acceptance when the
    /// broker acknowledged it. Events are checked and encoded on the runtime's worker threads,
    /// several at a time (so a stream uses every core), then queued to the producer in the
    /// order they came, without waiting for earlier acknowledgements (so one dossier's events
    /// keep their order and a stream is fast), at most [`BATCH_IN_FLIGHT`] at a time. Checked
    /// side by side, events take the caller's rate budget and their `recorded_at` in the order
    /// their checks run, which may differ slightly from the order sent. When `results` is
    /// closed (the client went) no further event is read; those already read still reach the
    /// broker.
    pub async fn publish_each<S>(
        self: &Arc<Self>,
        caller: &Caller,
        inputs: S,
        results: mpsc::Sender<(usize, Result<Accepted, PublishError>)>,
    ) where
        S: Stream<Item = PublishInput>,
    {
        let mut inputs = std::pin::pin!(inputs);
        let mut preparing = FuturesOrdered::new();
        let mut waiting = FuturesUnordered::new();
        let mut next_index = 0;
        let mut reading = true;
        loop {
            tokio::select! {
                Some((index, outcome)) = waiting.next(), if !waiting.is_empty() => {
                    if results.send((index, outcome)).await.is_err() {
                        reading = false;
                    }
                }
                Some((index, prepared)) = preparing.next(), if !preparing.is_empty() => {
                    let queued = match prepared {
                        Ok(prepared) => self.enqueue(caller, prepared).await,
                        Err(e) => Err(e),
                    };
                    match queued {
                        Ok(pending) => {
                            waiting.push(async move { (index, self.finish(pending).await) });
                        }
                        Err(refused) => {
                            if results.send((index, Err(refused))).await.is_err() {
                                reading = false;
                            }
                        }
                    }
                }
                input = inputs.next(), if reading
                    && preparing.len() < PREPARING
                    && waiting.len() + preparing.len() < BATCH_IN_FLIGHT =>
                {
                    let Some(input) = input else {
                        reading = false;
                        continue;
                    };
                    let index = next_index;
                    next_index += 1;
                    let events = self.clone();
                    let caller = caller.clone();
                    // In the call's span: the record's traceparent header is read from it. A call
                    // that goes away (the client, its deadline) stops the checks it started.
                    let check = AbortOnDropHandle::new(tokio::spawn(
                        async move { events.prepare(&caller, &input).await }.in_current_span(),
                    ));
                    preparing.push_back(check.map(move |joined| (index, checked(joined))));
                }
                else => break,
            }
        }
    }

    /// Runs [`Self::publish_each`] as a task of the hub's (it outlives the call that started
    /// it only until its inputs end or its results are no longer read) and hands back the
    /// outcomes as they come.
    pub fn spawn_publish_each<S>(
        self: &Arc<Self>,
        caller: Caller,
        inputs: S,
        span: tracing::Span,
    ) -> mpsc::Receiver<(usize, Result<Accepted, PublishError>)>
    where
        S: Stream<Item = PublishInput> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(RESULTS_BUFFER);
        let events = self.clone();
        // At shutdown the stream stops being read (what is queued still reaches the broker), so
        // a client that keeps it open cannot hold the hub up.
        let inputs = inputs.take_until(self.shutdown.clone().cancelled_owned());
        self.tracker.spawn(
            async move { events.publish_each(&caller, inputs, sender).await }.instrument(span),
        );
        receiver
    }

    /// Publishes an event the hub's own parts (connectors, procedures) make, through the same
    /// checks as a caller's request (rights, schema, rules, quarantine), without turning its
    /// typed envelope into text and back.
    pub async fn publish_event(
        &self,
        caller: &Caller,
        event: NewEvent,
    ) -> Result<Accepted, PublishError> {
        let prepared = self.prepare_event(caller, &event).await?;
        let pending = self.enqueue(caller, prepared).await?;
        self.finish(pending).await
    }

    /// Publishes events of the hub's own parts in order, each queued to the producer without
    /// waiting for the broker to acknowledge the one before: one round trip for all of them
    /// rather than one each. The outcomes, in order. One dossier's events share a key, so on
    /// each topic a partition, where the idempotent producer keeps the order they were queued
    /// in; across topics (a status change and a command) nothing orders them, as before. An
    /// event the broker fails (a timeout) after a later one on another topic was taken is sent
    /// again after it. After the first event that cannot be queued for now (a refusal by the
    /// checks is not one), none later is queued: their outcome says so, and they are tried
    /// again after it.
    pub async fn publish_events_in_order(
        &self,
        caller: &Caller,
        events: Vec<NewEvent>,
    ) -> Vec<Result<Accepted, PublishError>> {
        let mut queued = Vec::with_capacity(events.len());
        let mut stopped: Option<String> = None;
        for event in &events {
            if let Some(reason) = &stopped {
                queued.push(Err(PublishError::NotQueued(reason.clone())));
                continue;
            }
            let pending = match self.prepare_event(caller, event).await {
                Ok(prepared) => self.enqueue(caller, prepared).await,
                Err(refused) => Err(refused),
            };
            if let Err(error) = &pending
                && !matches!(error, PublishError::Rejected(_))
            {
                stopped = Some(format!(
                    "an earlier event of the same order was not: {error}"
                ));
            }
            queued.push(pending);
        }
        futures::future::join_all(queued.into_iter().map(async |pending| match pending {
            Ok(pending) => self.finish(pending).await,
            Err(error) => Err(error),
        }))
        .await
    }

    /// The checks of an event of the hub's own parts, without turning its typed envelope into
    /// text and back.
    async fn prepare_event(
        &self,
        caller: &Caller,
        event: &NewEvent,
    ) -> Result<Prepared, PublishError> {
        let draft = Draft {
            event_type: &event.event_type,
            purpose: &event.purpose,
            legal_basis: &event.legal_basis,
            payload: &event.payload,
            raw: None,
        };
        self.prepare_draft(
            caller,
            draft,
            |violations| check_new_event(event, violations),
            || PublishInput::from(event),
        )
        .await
    }

    /// Checks everything about `input`; a refused event is quarantined here.
    async fn prepare(
        &self,
        caller: &Caller,
        input: &PublishInput,
    ) -> Result<Prepared, PublishError> {
        let draft = Draft {
            event_type: &input.event_type,
            purpose: &input.purpose,
            legal_basis: &input.legal_basis,
            payload: &input.payload,
            raw: input.raw_payload.as_ref(),
        };
        self.prepare_draft(
            caller,
            draft,
            |violations| check_envelope(input, violations),
            || input.clone(),
        )
        .await
    }

    /// A payload sent as JSON text or Avro bytes, as a JSON value; a violation naming the field
    /// when it cannot be read so. Text is parsed here rather than as a `Struct` by the API, which
    /// is what makes it the cheaper form.
    async fn read(
        &self,
        event_type: &str,
        raw: &RawPayload,
    ) -> Result<Result<Value, Violation>, PublishError> {
        let refused = |message: String| {
            let rule = match raw {
                RawPayload::Json(_) => "json",
                RawPayload::Avro(_) => "avro",
                RawPayload::Ambiguous => "payload.one_form",
            };
            Ok(Err(Violation::new(raw.pointer(), rule, message)))
        };
        match raw {
            RawPayload::Json(text) => match serde_json::from_str::<Value>(text) {
                Ok(value) if value.is_object() => Ok(Ok(value)),
                Ok(_) => refused("must be one JSON object".to_owned()),
                Err(error) => refused(format!("is not JSON: {error}")),
            },
            RawPayload::Ambiguous => refused(
                "is given in more than one form: send one of payload, payload_json and payload_avro"
                    .to_owned(),
            ),
            // An unknown event type is refused for that alone.
            RawPayload::Avro(bytes) => match self.registry.event(event_type) {
                None => Ok(Ok(Value::Null)),
                Some(schema) => match self.registry.decode_for(schema, bytes).await {
                    Ok(value) => Ok(Ok(value)),
                    Err(error @ DecodeError::Registry(_)) => Err(PublishError::Unread(error)),
                    // apache-avro's reasons may quote the bytes read: not repeated.
                    Err(DecodeError::Avro { id, .. }) => refused(format!(
                        "cannot be read as a record of schema {id} for this event type"
                    )),
                    Err(error) => refused(format!("cannot be read for this event type: {error}")),
                },
            },
        }
    }

    /// The checks both ways in share: `check` reads the envelope, `original` gives what was
    /// sent, for the quarantine, only when the event is refused.
    async fn prepare_draft(
        &self,
        caller: &Caller,
        draft: Draft<'_>,
        check: impl FnOnce(&mut Vec<Violation>) -> Option<CheckedEnvelope>,
        original: impl FnOnce() -> PublishInput,
    ) -> Result<Prepared, PublishError> {
        self.limits
            .event(&caller.system)
            .map_err(PublishError::Throttled)?;
        let schema = self.registry.event(draft.event_type).cloned();
        self.authorize(caller, &draft, schema.is_some())?;
        let mut violations = Vec::new();
        if schema.is_none() {
            violations.push(Violation::new(
                "/event_type",
                "envelope.event_type",
                // The caller's text is not repeated: this message is kept in the quarantine's
                // clear columns.
                "unknown event type; the event types are listed in schemas/topics.toml",
            ));
        }
        let (read, unread) = match draft.raw {
            None => (None, false),
            Some(raw) => match self.read(draft.event_type, raw).await? {
                Ok(payload) => (Some(payload), false),
                Err(violation) => {
                    violations.push(violation);
                    (None, true)
                }
            },
        };
        let envelope = check(&mut violations);
        // Rules judge the normalised payload, and the event carries it; the quarantine keeps
        // what was sent.
        let payload = normalised(read.as_ref().unwrap_or(draft.payload));
        if let Some(schema) = &schema {
            // Codes are checked as valid on the event's own date in Viet Nam (today if unknown).
            let occurred = envelope
                .as_ref()
                .map_or_else(|| Utc::now().fixed_offset(), |e| e.occurred_at);
            let event_date = occurred
                .with_timezone(&crate::domain::vietnam())
                .date_naive();
            if !unread {
                violations.extend(schema.validate(&payload, event_date));
            }
            let no_dossier = envelope
                .as_ref()
                .is_some_and(|e| e.correlation_id.is_none());
            if schema.key.is_none() && no_dossier {
                violations.push(Violation::new(
                    "/correlation_id",
                    "envelope.correlation_id",
                    "is required for this event type: the dossier code, which keys its records",
                ));
            }
        }
        // Warnings alone do not stop an event: they travel with it.
        let acceptable = !violations.iter().any(Violation::is_error);
        let encoded = match (&schema, envelope, acceptable) {
            (Some(schema), Some(envelope), true) => match schema.encode(&payload) {
                Ok(bytes) => Some((schema.clone(), envelope, bytes)),
                Err(violation) => {
                    violations.push(violation);
                    None
                }
            },
            _ => None,
        };
        let record_key = match (&encoded, &schema) {
            (Some((_, checked, _)), Some(schema)) => record_key(schema, checked, &payload),
            _ => None,
        };
        let (Some((schema, checked, bytes)), Some(key)) = (encoded, record_key) else {
            return Err(self
                .reject(caller, &original(), schema.as_deref(), violations)
                .await);
        };
        let envelope = Envelope {
            event_id: checked.event_id,
            event_type: schema.event_type.clone(),
            schema_subject: schema.subject.clone(),
            schema_version: schema.version,
            occurred_at: checked.occurred_at,
            recorded_at: Utc::now(),
            producer_system: caller.system.clone(),
            correlation_id: checked.correlation_id,
            causation_id: checked.causation_id,
            purpose: draft.purpose.to_owned(),
            legal_basis: draft.legal_basis.trim().to_owned(),
            // Pointers, rule codes and messages: never a value (see `registry::rules`).
            warnings: (!violations.is_empty())
                .then(|| serde_json::to_string(&violations).ok())
                .flatten(),
        };
        let trace_context: HashMap<String, String> = trace::current_context_headers();
        let transfer = self.ledger.describe(Crossing {
            channel: Channel::Publish,
            source: caller.system.as_str(),
            target: HUB,
            event: Some(EventRef::of(&envelope)),
            purpose: &envelope.purpose,
            legal_basis: &envelope.legal_basis,
            dossier_code: envelope.correlation_id.as_ref().map(|c| c.as_str()),
            payload: &payload,
            concerning: None,
            classes: Some(&schema.classes),
            trace_id: trace_id_of(trace_context.get(TRACEPARENT).map(String::as_str)),
        });
        Ok(Prepared {
            schema,
            envelope,
            key,
            bytes,
            warnings: violations,
            transfer,
            trace_context,
        })
    }

    /// Refuses a caller without a right to publish `input`'s type for its purpose (or whose
    /// credential was withdrawn since the call began), before anything of the payload is read
    /// or kept. A caller that holds some right on the type but sent no purpose is let through,
    /// so validation names the missing field; so is one with an unknown type that may publish
    /// something (a typo, reported and quarantined for it to find). A caller that may publish
    /// nothing is refused outright: the quarantine keeps no data from it.
    fn authorize(
        &self,
        caller: &Caller,
        input: &Draft<'_>,
        known_type: bool,
    ) -> Result<(), PublishError> {
        let let_validation_answer = if known_type {
            input.purpose.is_empty()
                && self
                    .access
                    .has_any_right(caller, Direction::Publish, input.event_type)
        } else {
            self.access.publishes_anything(caller)
        };
        if let_validation_answer {
            return Ok(());
        }
        self.access
            .authorize(caller, Direction::Publish, input.event_type, input.purpose)
            .map_err(PublishError::Denied)
    }

    async fn enqueue(&self, caller: &Caller, prepared: Prepared) -> Result<Pending, PublishError> {
        let Prepared {
            schema,
            envelope,
            key,
            bytes,
            warnings,
            transfer,
            trace_context,
        } = prepared;
        let in_flight = self
            .producer
            .enqueue(
                &schema.topic,
                &key,
                &bytes,
                envelope.to_headers(&trace_context),
            )
            .await
            .map_err(|source| PublishError::Produce {
                event_id: envelope.event_id,
                source,
            })?;
        tracing::debug!(event_id = %envelope.event_id, system = %caller.system, "event queued");
        Ok(Pending {
            schema,
            event_id: envelope.event_id,
            in_flight,
            warnings,
            transfer,
        })
    }

    async fn finish(&self, pending: Pending) -> Result<Accepted, PublishError> {
        let Pending {
            schema,
            event_id,
            in_flight,
            warnings,
            transfer,
        } = pending;
        // The event reaches the broker whether or not its caller still waits (a client that
        // hung up, a call cut off at shutdown), so its row must be written either way: a task
        // of the hub's does both, and the caller waits for it.
        let ledger = self.ledger.clone();
        let produced = self
            .tracker
            .spawn(async move {
                let produced = in_flight
                    .acknowledged()
                    .await
                    .map_err(|source| PublishError::Produce { event_id, source })?;
                ledger
                    .write(transfer)
                    .await
                    .map_err(|source| PublishError::Unrecorded { event_id, source })?;
                Ok(produced)
            })
            .await
            .map_err(|_| PublishError::Unrecorded {
                event_id,
                source: LedgerError::Stopped,
            })??;
        self.metrics
            .produce_latency
            .observe(produced.latency.as_secs_f64());
        self.metrics
            .published
            .get_or_create(&EventLabels {
                event_type: schema.event_type.clone(),
            })
            .inc();
        for warning in &warnings {
            self.metrics
                .warned
                .get_or_create(&RejectionLabels {
                    event_type: schema.event_type.clone(),
                    reason: warning.rule.clone(),
                })
                .inc();
        }
        // Debug, not info: a line per event is the publish path's cost at thousands a second,
        // and the ledger, the metrics and the trace already say it.
        tracing::debug!(
            %event_id,
            event_type = %schema.event_type,
            partition = produced.partition,
            offset = produced.offset,
            "event published"
        );
        Ok(Accepted {
            event_id,
            topic: schema.topic.clone(),
            partition: produced.partition,
            offset: produced.offset,
            schema_subject: schema.subject.clone(),
            schema_version: schema.version,
            schema_id: schema.schema_id,
            warnings,
        })
    }

    async fn reject(
        &self,
        caller: &Caller,
        input: &PublishInput,
        schema: Option<&EventSchema>,
        violations: Vec<Violation>,
    ) -> PublishError {
        let reason = reason(schema, &violations);
        self.metrics
            .rejected
            .get_or_create(&RejectionLabels {
                event_type: schema
                    .map_or("unknown", |s| s.event_type.as_str())
                    .to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
        let kept = self
            .quarantine
            .keep(QuarantineEntry {
                system: &caller.system,
                event_type: &input.event_type,
                event_id: &input.event_id,
                correlation_id: &input.correlation_id,
                reason,
                violations: &violations,
                request: &input.to_json(),
            })
            .await;
        match kept {
            Ok(quarantine_id) => {
                tracing::info!(
                    quarantine_id,
                    reason,
                    system = %caller.system,
                    violations = violations.len(),
                    "event refused and quarantined"
                );
                PublishError::Rejected(Rejected {
                    violations,
                    quarantine_id,
                })
            }
            Err(e) => PublishError::Quarantine(e),
        }
    }
}
