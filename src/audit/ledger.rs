//! The transfer ledger: one row each time data crosses a boundary of the hub (an event
//! published to it, an event delivered to a subscriber or a connector, a connector's call to
//! an external system), naming source and target, the event and its schema version, the fields
//! that actually crossed (after redaction), purpose and legal basis, the dossier, and a
//! pseudonymous reference per citizen concerned. Each row is also an entry of the audit log.
//!
//! The publish path must not wait on PostgreSQL once per event: rows go to one writer task
//! that appends whatever has queued in one transaction (group commit), and each caller waits
//! only for the commit that holds its row. A publish is acknowledged after its row is durable;
//! a delivery is recorded before it is handed over.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::keys::SubjectKeys;
use crate::bus::Envelope;
use crate::db::DbError;
use crate::domain::PersonalId;

/// Rows one transaction appends at most.
const BATCH: usize = 512;
/// Rows waiting for the writer; callers wait when it is full.
const QUEUE: usize = 8192;

/// How data crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// A member system (or the hub's own part) published an event to the hub.
    Publish,
    /// The hub delivered an event to a subscriber or a connector.
    Delivery,
    /// A connector sent data to an external system.
    ConnectorCall,
}

impl Channel {
    /// As the audit log's bodies and the ledger's rows name it.
    fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Delivery => "delivery",
            Self::ConnectorCall => "connector-call",
        }
    }
}

/// The event a transfer carried.
#[derive(Debug, Clone, Serialize)]
pub struct EventRef {
    pub event_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub event_type: String,
    pub schema_subject: String,
    pub schema_version: i32,
}

impl EventRef {
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            event_id: envelope.event_id,
            // The envelope's check made it a UUID.
            causation_id: envelope
                .causation_id
                .as_deref()
                .and_then(|c| Uuid::parse_str(c).ok()),
            event_type: envelope.event_type.clone(),
            schema_subject: envelope.schema_subject.clone(),
            schema_version: envelope.schema_version,
        }
    }
}

/// A crossing, as the part that saw it describes it.
pub struct Crossing<'a> {
    pub channel: Channel,
    pub source: &'a str,
    pub target: &'a str,
    pub event: Option<EventRef>,
    pub purpose: &'a str,
    pub legal_basis: &'a str,
    pub dossier_code: Option<&'a str>,
    /// What crossed, after any redaction.
    pub payload: &'a Value,
    /// Where else the citizens concerned are named, when not all of them are in what crossed
    /// (a connector's call may carry a personal ID in its URL path: the event it was made for
    /// names them all).
    pub concerning: Option<&'a Value>,
    /// The classification of each field of the event type (dotted path), where known.
    pub classes: Option<&'a HashMap<String, String>>,
    pub trace_id: Option<String>,
}

/// One ledger row, as the audit log stores it: a crossing described, ready to record.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    channel: Channel,
    source_system: String,
    target_system: String,
    event_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    event_type: Option<String>,
    schema_subject: Option<String>,
    schema_version: Option<i32>,
    fields: Vec<String>,
    classification: &'static str,
    purpose: String,
    legal_basis: String,
    dossier_code: Option<String>,
    subject_refs: Vec<String>,
    trace_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The batch holding the row was not committed (the writer logged why).
    #[error("the transfer ledger could not write to PostgreSQL")]
    Unwritten,
    #[error("the transfer ledger is not running (the hub is stopping)")]
    Stopped,
}

/// The dotted paths of every value in `payload` that is not null (an array counts as one
/// field), sorted. Every event published is described so: one path buffer for the walk, and a
/// sort at the end, rather than a string formatted and a set node allocated per member.
pub fn fields_of(payload: &Value) -> Vec<String> {
    fn walk(value: &Value, path: &mut String, out: &mut Vec<String>) {
        match value {
            Value::Null => {}
            Value::Object(members) => {
                for (key, member) in members {
                    let parent = path.len();
                    if parent > 0 {
                        path.push('.');
                    }
                    path.push_str(key);
                    walk(member, path, out);
                    path.truncate(parent);
                }
            }
            _ if !path.is_empty() => out.push(path.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(payload, &mut String::new(), &mut out);
    // Keys with a dot could make two paths alike.
    out.sort_unstable();
    out.dedup();
    out
}

/// Every personal ID in `payload`: the text of each member the catalogue's convention names as
/// one ([`PersonalId::is_field_name`]), at any depth.
pub fn personal_ids_in(payload: &Value) -> BTreeSet<&str> {
    fn walk<'a>(value: &'a Value, out: &mut BTreeSet<&'a str>) {
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    match member {
                        Value::String(id) if PersonalId::is_field_name(key) => {
                            out.insert(id.as_str());
                        }
                        other => walk(other, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(payload, &mut out);
    out
}

/// The highest classification among `fields`: those the schema classifies, and at least
/// `basic` when a citizen is concerned.
fn classification(
    fields: &[String],
    classes: Option<&HashMap<String, String>>,
    concerns_someone: bool,
) -> &'static str {
    let rank = |class: &str| match class {
        "sensitive" => 2,
        "basic" => 1,
        _ => 0,
    };
    let schema_rank = classes.map_or(0, |classes| {
        fields
            .iter()
            .filter_map(|f| classes.get(f))
            .map(|c| rank(c))
            .max()
            .unwrap_or(0)
    });
    match schema_rank.max(usize::from(concerns_someone)) {
        2 => "sensitive",
        1 => "basic",
        _ => "public",
    }
}

/// The trace id of a W3C `traceparent` header value (none when unset: all zeros).
pub fn trace_id_of(traceparent: Option<&str>) -> Option<String> {
    traceparent
        .and_then(|t| t.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().any(|b| b != b'0'))
        .map(str::to_owned)
}

struct Job {
    transfer: Transfer,
    /// True once the row is committed.
    done: oneshot::Sender<bool>,
}

/// The handle every part records transfers through; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    subjects: Arc<SubjectKeys>,
    jobs: mpsc::Sender<Job>,
}

impl Ledger {
    /// Starts the writer. Cancel `stop` once nothing records any more (after the hub's other
    /// tasks ended): the writer appends what is queued, then ends.
    pub fn start(
        pool: Pool,
        subjects: Arc<SubjectKeys>,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write(pool, queue, stop));
        (Self { subjects, jobs }, writer)
    }

    /// Describes `crossing` without recording it yet (what crossed is read now, and may be
    /// gone when the crossing is confirmed).
    pub fn describe(&self, crossing: Crossing<'_>) -> Transfer {
        let fields = fields_of(crossing.payload);
        let mut ids = personal_ids_in(crossing.payload);
        ids.extend(crossing.concerning.map(personal_ids_in).unwrap_or_default());
        let subject_refs: Vec<String> = ids
            .into_iter()
            .map(|id| self.subjects.reference(id))
            .collect();
        let (event_id, causation_id, event_type, schema_subject, schema_version) =
            match crossing.event {
                Some(e) => (
                    Some(e.event_id),
                    e.causation_id,
                    Some(e.event_type),
                    Some(e.schema_subject),
                    Some(e.schema_version),
                ),
                None => (None, None, None, None, None),
            };
        Transfer {
            channel: crossing.channel,
            source_system: crossing.source.to_owned(),
            target_system: crossing.target.to_owned(),
            event_id,
            causation_id,
            event_type,
            schema_subject,
            schema_version,
            classification: classification(&fields, crossing.classes, !subject_refs.is_empty()),
            fields,
            purpose: crossing.purpose.to_owned(),
            legal_basis: crossing.legal_basis.to_owned(),
            dossier_code: crossing.dossier_code.map(str::to_owned),
            subject_refs,
            trace_id: crossing.trace_id,
        }
    }

    /// Records `crossing` and waits until its row is committed.
    pub async fn record(&self, crossing: Crossing<'_>) -> Result<(), LedgerError> {
        self.write(self.describe(crossing)).await
    }

    /// Records a described crossing and waits until its row is committed.
    pub async fn write(&self, transfer: Transfer) -> Result<(), LedgerError> {
        let (done, committed) = oneshot::channel();
        let job = Job { transfer, done };
        self.jobs
            .send(job)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        match committed.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(LedgerError::Unwritten),
            Err(_) => Err(LedgerError::Stopped),
        }
    }
}

/// The writer: one transaction per batch of what has queued.
async fn write(pool: Pool, mut queue: mpsc::Receiver<Job>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let received = tokio::select! {
            n = queue.recv_many(&mut batch, BATCH) => n,
            () = stop.cancelled() => {
                // Handles may still send while the hub drains: take what is there, then end.
                queue.close();
                queue.recv_many(&mut batch, BATCH).await
            }
        };
        if received == 0 {
            return;
        }
        let written = match append(&pool, &batch).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, rows = batch.len(), "transfer ledger rows not written");
                false
            }
        };
        for job in batch.drain(..) {
            // A caller that went away no longer waits for its answer.
            let _ = job.done.send(written);
        }
    }
}

/// The advisory lock every append to the audit log takes (see V20): positions follow commits.
const APPEND_LOCK: i64 = 7_361_029_482_213;

/// An entry of the audit log as the ledger writes it: the transfer, and its place.
#[derive(Serialize)]
struct Entry<'a> {
    kind: &'static str,
    position: i64,
    previous: &'a str,
    recorded_at: &'a str,
    #[serde(flatten)]
    transfer: &'a Transfer,
}

/// Appends `batch` to the audit log and the ledger in one transaction, each table by one
/// binary `COPY`: under the log's lock, the bodies are numbered and chained here (hashing in
/// Rust, not row by row in PL/pgSQL), and the ledger's rows go as typed columns, their lists
/// as real arrays. Having PostgreSQL parse each body as JSON, and later each list, was most of
/// the insert's cost; `COPY` also spares the planning of a statement over arrays.
async fn append(pool: &Pool, batch: &[Job]) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
        .await?;
    let last = tx
        .query_opt(
            "SELECT position, digest FROM audit_log ORDER BY position DESC LIMIT 1",
            &[],
        )
        .await?;
    let (first, mut previous) = match last {
        Some(row) => (
            row.get::<_, i64>(0) + 1,
            hex::encode(row.get::<_, Vec<u8>>(1)),
        ),
        None => (0, String::new()),
    };
    // Microseconds, as PostgreSQL keeps them, so the row and the body say the same instant.
    let now = Utc::now();
    let now = now - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos() % 1000));
    let recorded_at = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();

    let log = tx
        .copy_in("COPY audit_log (position, kind, body, digest) FROM STDIN (FORMAT binary)")
        .await?;
    let log = BinaryCopyInWriter::new(log, &[Type::INT8, Type::TEXT, Type::TEXT, Type::BYTEA]);
    futures::pin_mut!(log);
    for (position, job) in (first..).zip(batch) {
        let body = serde_json::to_string(&Entry {
            kind: "transfer",
            position,
            previous: &previous,
            recorded_at: &recorded_at,
            transfer: &job.transfer,
        })
        .map_err(|e| DbError::Corrupt(format!("a transfer does not serialise: {e}")))?;
        let digest = super::merkle::digest(body.as_bytes());
        previous = hex::encode(digest);
        log.as_mut()
            .write(&[&position, &"transfer", &body, &digest.as_slice()])
            .await?;
    }
    log.finish().await?;

    let rows = tx
        .copy_in(
            "COPY audit_transfer (
                 position, recorded_at, channel, source_system, target_system, event_id,
                 causation_id, event_type, schema_subject, schema_version, fields,
                 classification, purpose, legal_basis, dossier_code, subject_refs, trace_id)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    let rows = BinaryCopyInWriter::new(rows, &TRANSFER_COLUMNS);
    futures::pin_mut!(rows);
    for (position, job) in (first..).zip(batch) {
        let t = &job.transfer;
        rows.as_mut()
            .write(&[
                &position,
                &now,
                &t.channel.as_str(),
                &t.source_system,
                &t.target_system,
                &t.event_id,
                &t.causation_id,
                &t.event_type,
                &t.schema_subject,
                &t.schema_version,
                &t.fields,
                &t.classification,
                &t.purpose,
                &t.legal_basis,
                &t.dossier_code,
                &t.subject_refs,
                &t.trace_id,
            ])
            .await?;
    }
    rows.finish().await?;
    tx.commit().await?;
    Ok(())
}

/// The types of `audit_transfer`'s columns, in the order `append` copies them.
const TRANSFER_COLUMNS: [Type; 17] = [
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::UUID,
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT_ARRAY,
    Type::TEXT,
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_and_personal_ids_are_found_at_any_depth() {
        let payload = json!({
            "child": {"full_name": "An", "birth_date": "2026-01-02", "nickname": null},
            // Walked after "child" but sorted before its members ('-' comes before '.').
            "child-count": 1,
            "mother": {"personal_id": "048195001234", "full_name": "Bích"},
            "head_personal_id": "079090001111",
            "witnesses": [{"personal_id": "001080000001"}]
        });
        assert_eq!(
            fields_of(&payload),
            [
                "child-count",
                "child.birth_date",
                "child.full_name",
                "head_personal_id",
                "mother.full_name",
                "mother.personal_id",
                "witnesses"
            ]
        );
        let ids: Vec<&str> = personal_ids_in(&payload).into_iter().collect();
        assert_eq!(ids, ["001080000001", "048195001234", "079090001111"]);
    }

    #[test]
    fn classification_is_the_highest_crossing() {
        let classes = HashMap::from([
            ("a".to_owned(), "public".to_owned()),
            ("b".to_owned(), "sensitive".to_owned()),
        ]);
        let fields = |f: &[&str]| f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            classification(&fields(&["a"]), Some(&classes), false),
            "public"
        );
        assert_eq!(
            classification(&fields(&["a"]), Some(&classes), true),
            "basic"
        );
        assert_eq!(
            classification(&fields(&["a", "b"]), Some(&classes), false),
            "sensitive"
        );
        assert_eq!(classification(&fields(&["z"]), None, false), "public");
    }

    #[test]
    fn a_channel_is_named_alike_in_the_log_body_and_the_ledger_row() {
        for channel in [Channel::Publish, Channel::Delivery, Channel::ConnectorCall] {
            assert_eq!(
                serde_json::to_value(channel).ok(),
                Some(json!(channel.as_str()))
            );
        }
    }

    #[test]
    fn trace_ids_come_from_traceparent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned();
        assert_eq!(
            trace_id_of(Some(header.as_str())).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let unset = format!("00-{}-00f067aa0ba902b7-00", "0".repeat(32));
        assert_eq!(trace_id_of(Some(unset.as_str())), None);
        assert_eq!(trace_id_of(None), None);
    }
}
