//! Takes the procedures' events in from Kafka and moves each dossier's procedure: one
//! PostgreSQL transaction per event, under the dossier's advisory lock, that records the event
//! (by its id, so a repeat changes nothing), applies it to the instance and queues the events the
//! change announces in the outbox. Only then is the event acknowledged, so a crash repeats an
//! event and never skips one.
//!
//! Several hub processes run the engine. Kafka's group assignment gives each of them some
//! partitions; the dossier code is the key. Events are taken in concurrently (at most
//! `max_transactions` at once, so the engine leaves the pool's other connections to the rest of
//! the hub), and the advisory lock makes two events of one dossier take turns, whichever
//! process or subscription they came through. Nothing in a definition depends on the order a
//! dossier's events arrive in: an event of a dossier not yet opened (a reply overtaking the
//! submission) waits in the inbox and is applied when the submission comes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::stream::{FuturesUnordered, StreamExt as _};
use futures::{FutureExt as _, future::BoxFuture};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::definition::{Definition, DocumentDef, SUBMISSION};
use super::instance::{self, Context, Instance, State, StepState};
use super::store::{self, Taken};
use super::{LEGAL_BASIS, PURPOSE};
use crate::access::Caller;
use crate::bus::{Envelope, Received, StartFrom};
use crate::db::DbError;
use crate::domain::{Clock, ReferenceData};
use crate::events::{Events, Recipient, SubscribeError, SubscribeInput, tagged_until_end};
use crate::telemetry::Metrics;

/// The consumer groups' name (namespaced by the engine's system and each topic it reads).
const GROUP: &str = "procedures";
/// Delays between attempts at a transaction PostgreSQL refused.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// What a deadline the hub noticed is recorded as in the timeline (not an event type).
pub const DEADLINE: &str = "deadline";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot subscribe to {event_type}: {source}")]
    Subscribe {
        event_type: String,
        source: SubscribeError,
    },
    #[error("the subscription to {topic} ended")]
    Ended { topic: String },
    #[error("cannot acknowledge a handled event: {0}")]
    Acknowledge(SubscribeError),
    #[error("cannot decode an event for now: {0}")]
    Decode(String),
    /// The engine is stopping: the event was not finished and will be delivered again.
    #[error("stopped before the event was finished")]
    Stopping,
}

/// Everything the engine's tasks share.
pub struct Engine {
    pub definitions: &'static [&'static Definition],
    pub events: Arc<Events>,
    pub pool: Pool,
    pub reference: Arc<ReferenceData>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub caller: Caller,
    /// Unacknowledged events each subscription may hold.
    pub max_in_flight: usize,
    /// Where the engine's consumer groups start the first time.
    pub start: super::StartAt,
    /// Transactions in progress at once (each holds a connection of the pool).
    pub transactions: Semaphore,
    /// Told whenever the outbox has something new.
    pub outbox: Arc<Notify>,
}

/// The subscription to one topic.
struct Source {
    topic: String,
    /// The procedure group that takes each event type in, and what the engine may see of it.
    takers: HashMap<&'static str, (&'static Definition, Arc<Recipient>)>,
    subscription: String,
}

/// A finished event: its source and position, and how it went.
type Done = (usize, (i32, i64), Result<(), EngineError>);

impl Engine {
    /// Runs until `stop` (then `Ok`) or until a subscription fails (then the error; the caller
    /// starts it again).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), EngineError> {
        // One subscription per topic: a consumer group reads each topic once, whichever of
        // its event types the procedures take in (a group per event type read it once per type).
        let mut topics: BTreeMap<String, Vec<(&'static str, &'static Definition)>> =
            BTreeMap::new();
        for &definition in self.definitions {
            for event_type in definition.event_types() {
                let topic =
                    self.events
                        .topic_of(event_type)
                        .ok_or_else(|| EngineError::Subscribe {
                            event_type: event_type.to_owned(),
                            source: SubscribeError::UnknownEventType(event_type.to_owned()),
                        })?;
                topics
                    .entry(topic.to_owned())
                    .or_default()
                    .push((event_type, definition));
            }
        }
        let mut sources = Vec::new();
        let mut streams = Vec::new();
        let mut guards = Vec::new();
        for (topic, types) in topics {
            let opened = self
                .events
                .subscribe(
                    &self.caller,
                    SubscribeInput {
                        event_types: types.iter().map(|(t, _)| (*t).to_owned()).collect(),
                        group: GROUP.to_owned(),
                        start: match self.start {
                            super::StartAt::Earliest => StartFrom::Earliest,
                            super::StartAt::Latest => StartFrom::Latest,
                        },
                        max_unacknowledged: self.max_in_flight,
                        purpose: PURPOSE.to_owned(),
                        legal_basis: LEGAL_BASIS.to_owned(),
                    },
                )
                .await
                .map_err(|source| EngineError::Subscribe {
                    event_type: format!("the event types of {topic}"),
                    source,
                })?;
            guards.push(opened.ended.clone().drop_guard());
            let index = sources.len();
            streams.push(tagged_until_end(opened.deliveries, index));
            let mut recipients = opened.recipients;
            sources.push(Source {
                topic,
                // Each event type is one definition's (see `definition::tests`).
                takers: types
                    .into_iter()
                    .filter_map(|(t, definition)| Some((t, (definition, recipients.remove(t)?))))
                    .collect(),
                subscription: opened.id.to_string(),
            });
        }
        tracing::info!(system = %self.caller.system, "procedure engine running");
        let mut incoming = futures::stream::select_all(streams);
        let mut working: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some((index, position, outcome)) = working.next(), if !working.is_empty() => {
                    match outcome {
                        Ok(()) => {
                            self.events
                                .acknowledge(&self.caller, &sources[index].subscription, vec![position])
                                .await
                                .map_err(EngineError::Acknowledge)?;
                        }
                        Err(EngineError::Stopping) => {}
                        Err(error) => return Err(error),
                    }
                }
                next = incoming.next() => match next {
                    Some((index, Some(received))) => {
                        let source = &sources[index];
                        // The subscription delivers only the types it was opened for, each
                        // with its taker; anything else is not the engine's, and handled.
                        let Some((&event_type, (definition, recipient))) = received
                            .event_type()
                            .and_then(|t| source.takers.get_key_value(t))
                        else {
                            self.events
                                .acknowledge(&self.caller, &source.subscription, vec![(received.partition, received.offset)])
                                .await
                                .map_err(EngineError::Acknowledge)?;
                            continue;
                        };
                        let engine = self.clone();
                        let (definition, recipient) = (*definition, recipient.clone());
                        let stop = stop.clone();
                        // Every log line of the event's handling (its retries included) says
                        // which event it is about.
                        let span = tracing::info_span!(
                            "procedure_event",
                            %event_type,
                            partition = received.partition,
                            offset = received.offset,
                        );
                        working.push(async move {
                            let position = (received.partition, received.offset);
                            let outcome = engine.take(definition, event_type, &recipient, received, &stop).await;
                            (index, position, outcome)
                        }.instrument(span).boxed());
                    }
                    ended => {
                        if stop.is_cancelled() {
                            break;
                        }
                        let index = ended.map_or(0, |(index, _)| index);
                        return Err(EngineError::Ended { topic: sources[index].topic.clone() });
                    }
                },
            }
        }
        // Events in progress finish their transaction or are delivered again after the restart.
        while let Some((index, position, outcome)) = working.next().await {
            if outcome.is_ok() {
                let _ = self
                    .events
                    .acknowledge(&self.caller, &sources[index].subscription, vec![position])
                    .await;
            }
        }
        Ok(())
    }

    /// Takes one delivered event in, retrying its transaction until PostgreSQL takes it.
    async fn take(
        &self,
        definition: &'static Definition,
        event_type: &str,
        recipient: &Recipient,
        received: Received,
        stop: &CancellationToken,
    ) -> Result<(), EngineError> {
        let envelope = match Envelope::from_headers(&received.headers) {
            Ok(envelope) => envelope,
            Err(error) => {
                // The hub wrote these headers when it validated the event: nothing to act on.
                tracing::error!(topic = %received.topic, partition = received.partition, offset = received.offset, %error, "an event without a readable envelope; skipped");
                return Ok(());
            }
        };
        let decoded = self.events.decode(received, event_type, recipient).await;
        let Some(payload) = decoded.payload else {
            let message = decoded.decode_error.unwrap_or_default();
            if decoded.decode_transient {
                return Err(EngineError::Decode(message));
            }
            tracing::error!(event_id = %envelope.event_id, %event_type, error = %message, "an undecodable event; skipped");
            return Ok(());
        };
        let dossier = payload
            .get("dossier_code")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                envelope
                    .correlation_id
                    .as_ref()
                    .map(|c| c.as_str().to_owned())
            });
        // A document issued before its dossier comes by its own number.
        let document = definition.document(event_type).and_then(|document| {
            let number = payload.pointer(document.number).and_then(Value::as_str)?;
            Some((document, number.to_owned()))
        });
        let (dossier, document) = match (dossier, document) {
            (Some(dossier), _) => (dossier, None),
            (None, Some((document, number))) => (
                store::document_key(document.event_type, &number),
                Some((document, number)),
            ),
            (None, None) => {
                tracing::warn!(event_id = %envelope.event_id, %event_type, "an event with no dossier; skipped");
                return Ok(());
            }
        };
        let mut delay = FIRST_RETRY;
        loop {
            let outcome = {
                let Ok(_permit) = self.transactions.acquire().await else {
                    return Err(EngineError::Stopping);
                };
                match &document {
                    Some((document, number)) => {
                        self.transact_document(definition, document, &envelope, number, &payload)
                            .await
                    }
                    None => {
                        self.transact(definition, event_type, &envelope, &dossier, &payload)
                            .await
                    }
                }
            };
            match outcome {
                Ok(finished) => {
                    self.outbox.notify_one();
                    self.count(definition, &finished);
                    return Ok(());
                }
                Err(DbError::Corrupt(problem)) => {
                    // Rows changed by hand: trying again cannot help. The event is set aside in
                    // the dossier's timeline, with the reason, and acknowledged.
                    tracing::error!(%dossier, %event_type, %problem, "a procedure's rows hold what the engine never writes; the event is set aside");
                    let effect = format!("set aside: {problem}");
                    match self
                        .set_aside(&envelope, &dossier, event_type, &effect)
                        .await
                    {
                        Ok(()) => return Ok(()),
                        Err(error) => {
                            tracing::warn!(%dossier, %error, "cannot set the event aside; trying again")
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%dossier, %error, %event_type, "cannot record a procedure's event; trying again");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return Err(EngineError::Stopping),
                () = self.clock.sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    /// Records an event the engine cannot apply in the dossier's timeline, so it is not
    /// taken in again.
    async fn set_aside(
        &self,
        envelope: &Envelope,
        dossier: &str,
        event_type: &str,
        effect: &str,
    ) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let taken = Taken {
            event_id: envelope.event_id,
            dossier_code: dossier,
            event_type,
            producer: envelope.producer_system.as_str(),
            occurred_at: envelope.occurred_at,
            taken_at: self.clock.now(),
            effect,
            payload: None,
        };
        store::record(&tx, &taken).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One event's transaction; what it finished (for the on-time metrics).
    async fn transact(
        &self,
        definition: &Definition,
        event_type: &str,
        envelope: &Envelope,
        dossier: &str,
        payload: &Value,
    ) -> Result<Finished, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        store::lock(&tx, dossier).await?;
        let now = self.clock.now();
        let ctx = Context {
            now,
            calendar: self.reference.calendar(),
            fees: self.reference.fees(),
            event: Some(envelope.event_id),
        };
        let existing = store::load(&tx, dossier).await?;
        let before = existing.clone();
        let mut early = Vec::new();
        let (effect, instance, outgoing) = match existing {
            Some(instance) if event_type == definition.intake => (
                "a repeated submission; the dossier is already open".to_owned(),
                Some(instance),
                Vec::new(),
            ),
            None if event_type == definition.intake => {
                match instance::open(definition, payload, &ctx) {
                    Ok((instance, outgoing)) => {
                        early = store::early(&tx, dossier).await?;
                        early.extend(named_documents(&tx, definition, &instance, dossier).await?);
                        ("opened".to_owned(), Some(instance), outgoing)
                    }
                    Err(error) => (format!("not opened: {error}"), None, Vec::new()),
                }
            }
            Some(mut instance) => {
                let (effect, outgoing) = instance.apply(definition, event_type, payload, &ctx);
                (effect.describe(), Some(instance), outgoing)
            }
            None => (store::EARLY.to_owned(), None, Vec::new()),
        };
        let taken = Taken {
            event_id: envelope.event_id,
            dossier_code: dossier,
            event_type,
            producer: envelope.producer_system.as_str(),
            occurred_at: envelope.occurred_at,
            taken_at: now,
            effect: &effect,
            payload: (effect == store::EARLY).then_some(payload),
        };
        if !store::record(&tx, &taken).await? {
            // Taken in before: the transaction changes nothing.
            return Ok(Finished::default());
        }
        let Some(mut instance) = instance else {
            tx.commit().await?;
            return Ok(Finished::default());
        };
        store::enqueue(&tx, dossier, Some(envelope.event_id), &outgoing, now).await?;
        for (event_id, early_type, early_payload) in early {
            let ctx = Context {
                event: Some(event_id),
                ..ctx
            };
            let (effect, outgoing) = instance.apply(definition, &early_type, &early_payload, &ctx);
            store::enqueue(&tx, dossier, Some(event_id), &outgoing, now).await?;
            store::joined(&tx, event_id, dossier, &effect.describe()).await?;
        }
        store::save(&tx, &instance, now).await?;
        tx.commit().await?;
        Ok(Finished::between(before.as_ref(), &instance))
    }

    /// A document that came by its own number: joined to the dossier that named it (and is
    /// its owner), else kept until a submission names it.
    async fn transact_document(
        &self,
        definition: &Definition,
        document: &DocumentDef,
        envelope: &Envelope,
        number: &str,
        payload: &Value,
    ) -> Result<Finished, DbError> {
        let key = store::document_key(document.event_type, number);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // An intake naming the number takes this lock too, after its dossier's, and records
        // the name in the same transaction: whichever takes the number's lock first, the other
        // sees what it did (a document kept, or a dossier named). The reversed order cannot
        // deadlock: only dossiers whose intake has committed (and let its locks go) are named.
        store::lock(&tx, &key).await?;
        let now = self.clock.now();
        let ctx = Context {
            now,
            calendar: self.reference.calendar(),
            fees: self.reference.fees(),
            event: Some(envelope.event_id),
        };
        // The dossier whose submission says it is theirs; else the one dossier naming the number
        // that cannot tell (its submission forgotten since it ended); else none: with several
        // that cannot tell, the document waits rather than join the wrong one.
        let mut owner = None;
        let mut cannot_tell = Vec::new();
        for dossier in store::naming(&tx, document.event_type, number).await? {
            store::lock(&tx, &dossier).await?;
            let Some(instance) = store::load(&tx, &dossier).await? else {
                continue;
            };
            match instance.owns(document, payload) {
                Some(true) => {
                    owner = Some((dossier, instance));
                    break;
                }
                Some(false) => {}
                None => cannot_tell.push((dossier, instance)),
            }
        }
        if owner.is_none() && cannot_tell.len() == 1 {
            owner = cannot_tell.pop();
        }
        let joined = owner.map(|(dossier, mut instance)| {
            let (effect, _) = instance.apply(definition, document.event_type, payload, &ctx);
            (dossier, effect.describe(), instance)
        });
        let (dossier_code, effect, kept) = match &joined {
            Some((dossier, effect, _)) => (dossier.as_str(), effect.clone(), None),
            None => (key.as_str(), store::EARLY.to_owned(), Some(payload)),
        };
        let taken = Taken {
            event_id: envelope.event_id,
            dossier_code,
            event_type: document.event_type,
            producer: envelope.producer_system.as_str(),
            occurred_at: envelope.occurred_at,
            taken_at: now,
            effect: &effect,
            payload: kept,
        };
        if store::record(&tx, &taken).await? {
            // What the document told counts in the dossier's pre-fill.
            if let Some((_, _, instance)) = &joined {
                store::save(&tx, instance, now).await?;
            }
            tx.commit().await?;
        }
        Ok(Finished::default())
    }

    /// Forgets what waited longer than `retention` for a dossier to name it.
    pub async fn forget_waiting(&self, retention: chrono::Duration) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        store::forget_waiting(&client, self.clock.now() - retention).await
    }

    /// Forgets what it published longer than `retention` ago (the broker's topics keep it no
    /// longer either); how many events.
    pub async fn forget_published(&self, retention: chrono::Duration) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        store::forget_published(&client, self.clock.now() - retention).await
    }

    fn count(&self, definition: &Definition, finished: &Finished) {
        for (step, on_time) in &finished.steps {
            let outcome = if *on_time { "on_time" } else { "late" };
            self.metrics.procedure_step(definition.group, step, outcome);
        }
        if let Some(on_time) = finished.dossier {
            let outcome = if on_time { "on_time" } else { "late" };
            self.metrics
                .procedure_step(definition.group, "DOSSIER", outcome);
        }
    }

    /// Marks the steps now past their due time, each once, in the dossiers' timelines; how
    /// many it marked.
    pub async fn mark_overdue(&self) -> Result<usize, DbError> {
        let now = self.clock.now();
        let mut marked = 0;
        for dossier in store::with_steps_due(&self.pool, now, 500).await? {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            store::lock(&tx, &dossier).await?;
            let Some(mut instance) = store::load(&tx, &dossier).await? else {
                continue;
            };
            let announced = instance.mark_overdue(now);
            for event in &announced {
                let step = event.payload["step"].as_str().unwrap_or_default();
                let due = event.payload["due_at"].as_str().unwrap_or_default();
                let effect = format!("{step} overdue: due {due}");
                let entry = Taken {
                    event_id: uuid::Uuid::now_v7(),
                    dossier_code: &dossier,
                    event_type: DEADLINE,
                    producer: "hub",
                    occurred_at: now.with_timezone(&crate::domain::vietnam()),
                    taken_at: now,
                    effect: &effect,
                    payload: None,
                };
                store::record(&tx, &entry).await?;
                self.metrics
                    .procedure_step(&instance.group, step, "overdue");
                tracing::warn!(dossier = %dossier, %step, "procedure step overdue");
            }
            store::enqueue(&tx, &dossier, None, &announced, now).await?;
            store::save(&tx, &instance, now).await?;
            tx.commit().await?;
            marked += announced.len();
        }
        if marked > 0 {
            self.outbox.notify_one();
        }
        Ok(marked)
    }
}

/// The documents a just-opened dossier's submission names: each recorded as named, and those
/// that came before it and are its own, to be joined now.
async fn named_documents(
    tx: &deadpool_postgres::Transaction<'_>,
    definition: &Definition,
    instance: &Instance,
    dossier: &str,
) -> Result<Vec<(uuid::Uuid, String, Value)>, DbError> {
    let mut documents = Vec::new();
    for document in definition.documents {
        let Some(number) = instance
            .inputs
            .pointer(&format!("/{SUBMISSION}/{}", document.named_by))
            .and_then(Value::as_str)
        else {
            continue;
        };
        store::name_document(tx, document.event_type, number, dossier).await?;
        let key = store::document_key(document.event_type, number);
        store::lock(tx, &key).await?;
        documents.extend(
            store::early(tx, &key)
                .await?
                .into_iter()
                .filter(|(_, _, payload)| instance.owns(document, payload) != Some(false)),
        );
    }
    Ok(documents)
}

/// What one transaction finished: steps (on time or not) and the dossier itself.
#[derive(Debug, Default)]
struct Finished {
    steps: Vec<(String, bool)>,
    dossier: Option<bool>,
}

impl Finished {
    fn between(before: Option<&Instance>, after: &Instance) -> Self {
        let was_done = |name: &str| {
            before.is_some_and(|b| {
                b.steps
                    .iter()
                    .any(|s| s.name == name && s.state == StepState::Done)
            })
        };
        let on_time =
            |finished: Option<DateTime<Utc>>, due: Option<DateTime<Utc>>| match (finished, due) {
                (Some(finished), Some(due)) => finished <= due,
                _ => true,
            };
        let steps = after
            .steps
            .iter()
            .filter(|s| s.state == StepState::Done && !was_done(&s.name))
            .map(|s| (s.name.clone(), on_time(s.finished_at, s.due_at)))
            .collect();
        let completed_now =
            after.state == State::Completed && before.is_none_or(|b| b.state != State::Completed);
        Self {
            steps,
            dossier: completed_now.then(|| on_time(after.completed_at, after.due_at)),
        }
    }
}
