//! Polling sources (http-poll-source, postgres-outbox-source): read an external system from a
//! stored position and publish each new record as an event, in order.
//!
//! Every hub process runs every source, but only the one holding its lease in PostgreSQL reads
//! (the others stand by and take over when the lease lapses). Kafka's group assignment cannot
//! do this: there is no topic to read yet. Each record is published, then the position moved
//! past it, both fenced by the lease. A crash between the two repeats that one record with the
//! same event id (kept with the position), which consumers drop; nothing is skipped.

pub mod http_poll;
pub mod outbox;
pub mod position;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::http_poll::HttpPoll;
use self::outbox::Outbox;
use self::position::{Lease, Position};
use super::effect::CallError;
use super::manifest::{Manifest, Origin, SourceSpec};
use super::stats::{Stats, WorkerState};
use crate::access::Caller;
use crate::db::DbError;
use crate::domain::{Clock, DossierCode};
use crate::events::{Events, NewEvent, PublishError};
use crate::telemetry::Metrics;

/// How long a process leads a source without renewing; another takes over after that.
pub const LEASE: Duration = Duration::from_secs(15);
/// A standby process tries to take the lease this often; a leader renews it as often.
const LEASE_CHECK: Duration = Duration::from_secs(5);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A record read from the origin, and the position just after it.
#[derive(Debug)]
pub struct Record {
    pub value: Value,
    pub after: Position,
}

/// What one read gave.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Record>,
    /// Where the position goes once every record is published, when the page says (an API's
    /// next cursor); an empty page may move it too.
    pub end: Option<Position>,
    /// More records are waiting: read again at once.
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Config(String),
    #[error("reading the source's position: {0}")]
    Db(#[from] DbError),
    #[error("reading the origin ({}): {}", .0.class, .0.message)]
    Origin(CallError),
    #[error("the record after position {at}: {message}")]
    Mapping { at: String, message: String },
    #[error("publishing: {0}")]
    Publish(String),
}

/// Where records come from.
enum Reader {
    Http(HttpPoll),
    Outbox(Outbox),
}

impl Reader {
    fn new(origin: &Origin) -> Result<Self, String> {
        match origin {
            Origin::Http(target) => HttpPoll::new(target).map(Reader::Http),
            Origin::Outbox(table) => Outbox::new(table).map(Reader::Outbox),
        }
    }

    async fn fetch(&self, at: &Position, batch: u32) -> Result<Page, CallError> {
        match self {
            Reader::Http(poll) => poll.fetch(at, batch).await,
            Reader::Outbox(outbox) => outbox.fetch(at, batch).await,
        }
    }
}

/// How a leadership ended.
enum Led {
    Stopped,
    Lost,
}

/// Renews `lease` every [`LEASE_CHECK`]; returns when another process holds it.
async fn keep(lease: &Lease<'_>, clock: &dyn Clock) -> Result<(), SourceError> {
    loop {
        clock.sleep(LEASE_CHECK).await;
        if !lease.renew().await? {
            return Ok(());
        }
    }
}

/// `cursor 42` or `cursor abc +3`, for status and errors.
pub fn describe(at: &Position) -> String {
    let cursor = at.cursor.as_deref().unwrap_or("(start)");
    match at.skip {
        0 => format!("cursor {cursor}"),
        skip => format!("cursor {cursor} +{skip}"),
    }
}

/// One process's worker of a polling source.
pub struct SourceWorker {
    pub manifest: Arc<Manifest>,
    pub spec: Arc<SourceSpec>,
    pub events: Arc<Events>,
    pub pool: Pool,
    pub clock: Arc<dyn Clock>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub process: String,
}

impl SourceWorker {
    fn count(&self, outcome: &str) {
        self.metrics.connector_event(&self.manifest.name, outcome);
    }

    /// Stands by until this process holds the lease, then reads until `stop`, an error, or
    /// the lease is lost (then stands by again). The lease is given back on the way out.
    pub async fn run(&self, stop: CancellationToken) -> Result<(), SourceError> {
        let reader = Reader::new(&self.spec.origin).map_err(SourceError::Config)?;
        // Unique to this run: a worker replaced on reload while still finishing a publish must
        // not pass the fence as its successor in the same process.
        let holder = format!("{}/{}", self.process, Uuid::now_v7());
        let lease = Lease {
            pool: &self.pool,
            name: &self.manifest.name,
            process: &holder,
            length: LEASE,
        };
        loop {
            self.stats.set_state(WorkerState::Standby);
            self.stats.set_reading(Some("standby".to_owned()));
            let at = loop {
                if let Some(at) = lease.acquire().await? {
                    break at;
                }
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = self.clock.sleep(LEASE_CHECK) => {}
                }
            };
            tracing::info!(connector = %self.manifest.name, position = %describe(&at), "this process reads the source now");
            self.stats.set_state(WorkerState::Running);
            // The lease is renewed on its own while leading, so a slow answer, a slow publish
            // or a long backoff never lets it lapse; when a renewal fails, leading stops.
            let led = tokio::select! {
                led = self.lead(&reader, &lease, at, &stop) => led,
                kept = keep(&lease, &*self.clock) => kept.map(|()| Led::Lost),
            };
            if let Err(error) = lease.release().await {
                tracing::warn!(connector = %self.manifest.name, %error, "cannot give the source's lease back; it lapses by itself");
            }
            match led? {
                Led::Stopped => return Ok(()),
                Led::Lost => {
                    tracing::warn!(connector = %self.manifest.name, "another process took the source over; this one stands by");
                }
            }
        }
    }

    async fn lead(
        &self,
        reader: &Reader,
        lease: &Lease<'_>,
        mut at: Position,
        stop: &CancellationToken,
    ) -> Result<Led, SourceError> {
        let mut retry_delay = FIRST_RETRY_DELAY;
        loop {
            if stop.is_cancelled() {
                return Ok(Led::Stopped);
            }
            self.stats.set_reading(Some(describe(&at)));
            let page = match reader.fetch(&at, self.spec.batch).await {
                Ok(page) => {
                    retry_delay = FIRST_RETRY_DELAY;
                    page
                }
                Err(error) if error.retryable => {
                    self.stats.failed_attempt(
                        self.clock.now(),
                        &format!("{}: {}", error.class, error.message),
                    );
                    self.count("read_failed");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(Led::Stopped),
                        () = self.clock.sleep(retry_delay) => {}
                    }
                    retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
                    continue;
                }
                Err(error) => return Err(SourceError::Origin(error)),
            };
            for record in page.records {
                if stop.is_cancelled() {
                    return Ok(Led::Stopped);
                }
                if !self.publish(lease, &at, &record).await? {
                    return Ok(Led::Lost);
                }
                at = record.after;
                self.stats.set_reading(Some(describe(&at)));
            }
            if let Some(end) = page.end.filter(|end| *end != at) {
                if !lease.advance(&end, 0).await? {
                    return Ok(Led::Lost);
                }
                at = end;
                self.stats.set_reading(Some(describe(&at)));
            }
            if !page.more {
                tokio::select! {
                    () = stop.cancelled() => return Ok(Led::Stopped),
                    () = self.clock.sleep(self.spec.interval) => {}
                }
            }
        }
    }

    /// Publishes one record and moves the position past it; false when the lease was lost.
    async fn publish(
        &self,
        lease: &Lease<'_>,
        at: &Position,
        record: &Record,
    ) -> Result<bool, SourceError> {
        // The record is known by its position, which a repeat after a crash shares even when
        // the origin changed a column of it meanwhile.
        let digest = Sha256::digest(format!("{:?}\n{}", record.after.cursor, record.after.skip));
        let Some(event_id) = lease.pending(&digest, Uuid::now_v7()).await? else {
            return Ok(false);
        };
        let event = self.event(at, event_id, &record.value)?;
        let started = Instant::now();
        loop {
            match self
                .events
                .publish_event(
                    &Caller::internal(self.manifest.system.clone()),
                    event.clone(),
                )
                .await
            {
                Ok(_) => {
                    self.stats.delivered(self.clock.now(), started.elapsed());
                    self.count("published");
                    break;
                }
                // Over the connector system's own rate: wait as told; that is no failure.
                Err(PublishError::Throttled(throttled)) => {
                    self.clock.sleep(throttled.retry_after).await;
                }
                // Refused by the schema or the rules: the quarantine keeps it for operators,
                // and the records after it go on.
                Err(PublishError::Rejected(rejected)) => {
                    let message = format!(
                        "the record after {} was refused and quarantined ({})",
                        describe(at),
                        rejected.summary()
                    );
                    tracing::warn!(connector = %self.manifest.name, %event_id, %message, "source record refused");
                    self.stats.failed_attempt(self.clock.now(), &message);
                    self.stats.dead_lettered();
                    self.count("refused");
                    break;
                }
                Err(other) => return Err(SourceError::Publish(other.to_string())),
            }
        }
        Ok(lease.advance(&record.after, 1).await?)
    }

    /// The event a record becomes.
    fn event(
        &self,
        at: &Position,
        event_id: Uuid,
        record: &Value,
    ) -> Result<NewEvent, SourceError> {
        let mapping_error = |message: String| SourceError::Mapping {
            at: describe(at),
            message,
        };
        let read_at = self.clock.now().with_timezone(&crate::domain::vietnam());
        let input = json!({"record": record, "read_at": read_at.to_rfc3339()});
        let payload = self
            .spec
            .payload
            .apply(&input)
            .map_err(|e| mapping_error(format!("publish.payload: {e}")))?;
        let correlation_id = match &self.spec.correlation {
            None => None,
            Some(mapping) => {
                let code = mapping
                    .apply(record)
                    .map_err(|e| mapping_error(format!("publish.correlation: {e}")))?;
                let code = code.as_str().and_then(|c| DossierCode::parse(c).ok());
                Some(code.ok_or_else(|| {
                    mapping_error("publish.correlation gave no valid dossier code".to_owned())
                })?)
            }
        };
        Ok(NewEvent {
            event_type: self.spec.event_type.clone(),
            event_id,
            occurred_at: read_at,
            correlation_id,
            causation_id: None,
            purpose: self.manifest.purpose.clone(),
            legal_basis: self.manifest.legal_basis.clone(),
            payload,
        })
    }
}
