//! The engine's tables (migrations V15 to V19, V22, V23): instances and steps, the events taken
//! in (the inbox and the timeline, documents waiting for the dossier that names them), and the
//! outbox. A dossier's rows change only in a transaction that holds the dossier's advisory lock
//! ([`lock`]), so two hub processes never advance one dossier at once, and an event that comes
//! before its dossier cannot slip past the dossier's opening.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, Utc};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::instance::{Instance, Outgoing, State, Step, StepState};
use crate::db::DbError;

/// The first key of the dossiers' advisory locks, keeping them apart from other parts' locks.
const LOCK_SPACE: i32 = 0x7072_6f63;
/// The relay's lock, held by the one process relaying at a time: a space of its own, so no
/// dossier's lock can be it.
const RELAY_LOCK: (i32, i32) = (0x7072_6f64, 0);

/// Takes `dossier_code`'s lock until the transaction ends.
pub async fn lock(tx: &Transaction<'_>, dossier_code: &str) -> Result<(), DbError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_SPACE, &dossier_code],
    )
    .await?;
    Ok(())
}

/// An event the engine took in.
pub struct Taken<'a> {
    pub event_id: Uuid,
    pub dossier_code: &'a str,
    pub event_type: &'a str,
    pub producer: &'a str,
    pub occurred_at: DateTime<FixedOffset>,
    pub taken_at: DateTime<Utc>,
    pub effect: &'a str,
    /// Kept only for an event waiting for its dossier.
    pub payload: Option<&'a Value>,
}

/// Records `taken`; false when its id was taken in before (then nothing changes).
pub async fn record(tx: &Transaction<'_>, taken: &Taken<'_>) -> Result<bool, DbError> {
    let inserted = tx
        .execute(
            "INSERT INTO procedure_event
                 (event_id, dossier_code, event_type, producer, occurred_at, taken_at, effect, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
            &[
                &taken.event_id,
                &taken.dossier_code,
                &taken.event_type,
                &taken.producer,
                &taken.occurred_at,
                &taken.taken_at,
                &taken.effect,
                &taken.payload,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// What waiting for its dossier is shown as; the payload kept marks it.
pub const EARLY: &str = "waiting for its dossier";

/// What a waiting event shows once its payload is forgotten.
pub const FORGOTTEN: &str = "forgotten: no dossier named it in time";

/// Forgets the payloads of the events (and documents) waiting for a dossier since before
/// `before`: personal data kept for a dossier that never came. How many.
pub async fn forget_waiting(
    client: &impl GenericClient,
    before: DateTime<Utc>,
) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "UPDATE procedure_event SET payload = NULL, effect = $2
             WHERE payload IS NOT NULL AND taken_at < $1",
            &[&before, &FORGOTTEN],
        )
        .await?)
}

/// Forgets the payloads of the events the engine published before `before` (personal data the
/// commands carried); the rows stay, so the timeline still says what was published, when.
/// How many it forgot.
pub async fn forget_published(
    client: &impl GenericClient,
    before: DateTime<Utc>,
) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "UPDATE procedure_outbox SET payload = '{}'::jsonb
             WHERE published_at IS NOT NULL AND payload <> '{}'::jsonb AND published_at < $1",
            &[&before],
        )
        .await?)
}

/// The events of `dossier_code` that came before it, in the order they came.
pub async fn early(
    tx: &Transaction<'_>,
    dossier_code: &str,
) -> Result<Vec<(Uuid, String, Value)>, DbError> {
    let rows = tx
        .query(
            "SELECT event_id, event_type, payload FROM procedure_event
             WHERE dossier_code = $1 AND payload IS NOT NULL
             ORDER BY taken_at, event_id",
            &[&dossier_code],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// Records what an early event did once its dossier came, and forgets its payload. A document
/// kept under its own number moves to the dossier's timeline.
pub async fn joined(
    tx: &Transaction<'_>,
    event_id: Uuid,
    dossier_code: &str,
    effect: &str,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE procedure_event SET effect = $3, payload = NULL, dossier_code = $2
         WHERE event_id = $1",
        &[&event_id, &dossier_code, &effect],
    )
    .await?;
    Ok(())
}

/// Where a document waits for the dossier that names it: under its type and number, never a
/// dossier code (a document's number is its own), so it is found when the submission comes.
pub fn document_key(event_type: &str, number: &str) -> String {
    format!("{event_type}#{number}")
}

/// Records that `dossier_code`'s submission names document `number` of `event_type`, so a
/// document that comes later finds the dossier even after its submission is forgotten.
pub async fn name_document(
    tx: &Transaction<'_>,
    event_type: &str,
    number: &str,
    dossier_code: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO procedure_document (event_type, number, dossier_code) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&event_type, &number, &dossier_code],
    )
    .await?;
    Ok(())
}

/// The dossiers whose submission named document `number` of `event_type`.
pub async fn naming(
    tx: &Transaction<'_>,
    event_type: &str,
    number: &str,
) -> Result<Vec<String>, DbError> {
    Ok(tx
        .query(
            "SELECT dossier_code FROM procedure_document WHERE event_type = $1 AND number = $2
             ORDER BY dossier_code",
            &[&event_type, &number],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

async fn steps(client: &impl GenericClient, dossier_code: &str) -> Result<Vec<Step>, DbError> {
    client
        .query(
            "SELECT step, state, started_at, due_at, finished_at, overdue_at, results, error,
                    done_event
             FROM procedure_step WHERE dossier_code = $1 ORDER BY position",
            &[&dossier_code],
        )
        .await?
        .iter()
        .map(step_from)
        .collect()
}

fn step_from(row: &Row) -> Result<Step, DbError> {
    let state: String = row.get(1);
    Ok(Step {
        name: row.get(0),
        state: StepState::parse(&state).ok_or_else(|| corrupt("procedure_step.state", &state))?,
        started_at: row.get(2),
        due_at: row.get(3),
        finished_at: row.get(4),
        overdue_at: row.get(5),
        results: match row.get::<_, Value>(6) {
            Value::Array(results) => results,
            _ => Vec::new(),
        },
        error: row.get(7),
        done_event: row.get(8),
    })
}

/// A value the engine never writes: the table was changed by hand.
fn corrupt(column: &str, value: &str) -> DbError {
    DbError::Corrupt(format!("{column} holds {value:?}"))
}

/// The procedure of `dossier_code`, if it was opened.
pub async fn load(
    client: &impl GenericClient,
    dossier_code: &str,
) -> Result<Option<Instance>, DbError> {
    let Some(row) = client
        .query_opt(
            "SELECT dossier_code, procedure_group, procedure_code, state, portal_status,
                    received_at, accepted_at, due_at, completed_at, inputs, supplement, prefill,
                    filled
             FROM procedure_instance WHERE dossier_code = $1",
            &[&dossier_code],
        )
        .await?
    else {
        return Ok(None);
    };
    let steps = steps(client, dossier_code).await?;
    instance_from(&row, steps).map(Some)
}

fn instance_from(row: &Row, steps: Vec<Step>) -> Result<Instance, DbError> {
    let state: String = row.get(3);
    let status: i16 = row.get(4);
    let received_at: DateTime<Utc> = row.get(5);
    Ok(Instance {
        dossier_code: row.get(0),
        group: row.get(1),
        procedure_code: row.get(2),
        state: State::parse(&state).ok_or_else(|| corrupt("procedure_instance.state", &state))?,
        portal_status: u8::try_from(status)
            .map_err(|_| corrupt("procedure_instance.portal_status", &status.to_string()))?,
        received_at: received_at.with_timezone(&crate::domain::vietnam()),
        accepted_at: row.get(6),
        due_at: row.get(7),
        completed_at: row.get(8),
        steps,
        inputs: row.get(9),
        supplement: json_column(row, 10, "procedure_instance.supplement")?,
        prefill: json_column(row, 11, "procedure_instance.prefill")?,
        filled: json_column(row, 12, "procedure_instance.filled")?,
    })
}

/// A nullable JSONB column holding a value the engine wrote from `T`.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row,
    index: usize,
    column: &str,
) -> Result<Option<T>, DbError> {
    row.get::<_, Option<Value>>(index)
        .map(|value| {
            serde_json::from_value(value.clone()).map_err(|_| corrupt(column, &value.to_string()))
        })
        .transpose()
}

/// Writes `instance` and its steps as they are now.
pub async fn save(
    tx: &Transaction<'_>,
    instance: &Instance,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let status = i16::from(instance.portal_status);
    let supplement = instance
        .supplement
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    let prefill = instance.prefill.and_then(|p| serde_json::to_value(p).ok());
    let filled = instance
        .filled
        .as_ref()
        .and_then(|f| serde_json::to_value(f).ok());
    tx.execute(
        "INSERT INTO procedure_instance
             (dossier_code, procedure_group, procedure_code, state, portal_status, received_at,
              accepted_at, due_at, completed_at, updated_at, inputs, supplement, prefill, filled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (dossier_code) DO UPDATE SET state = $4, portal_status = $5, due_at = $8,
             completed_at = $9, updated_at = $10, inputs = $11, supplement = $12, filled = $14",
        &[
            &instance.dossier_code,
            &instance.group,
            &instance.procedure_code,
            &instance.state.as_str(),
            &status,
            &instance.received_at,
            &instance.accepted_at,
            &instance.due_at,
            &instance.completed_at,
            &now,
            &instance.inputs,
            &supplement,
            &prefill,
            &filled,
        ],
    )
    .await?;
    for (position, step) in instance.steps.iter().enumerate() {
        // A definition has a handful of steps.
        let position = i16::try_from(position).unwrap_or(i16::MAX);
        let results = Value::Array(step.results.clone());
        tx.execute(
            "INSERT INTO procedure_step
                 (dossier_code, step, state, position, started_at, due_at, finished_at,
                  overdue_at, results, error, done_event)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (dossier_code, step) DO UPDATE SET state = $3, started_at = $5,
                 due_at = $6, finished_at = $7, overdue_at = $8, results = $9, error = $10,
                 done_event = $11",
            &[
                &instance.dossier_code,
                &step.name,
                &step.state.as_str(),
                &position,
                &step.started_at,
                &step.due_at,
                &step.finished_at,
                &step.overdue_at,
                &results,
                &step.error,
                &step.done_event,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Queues `events` for the relay, caused by `causation` (the event taken in).
pub async fn enqueue(
    tx: &Transaction<'_>,
    dossier_code: &str,
    causation: Option<Uuid>,
    events: &[Outgoing],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    for event in events {
        // A v7 id fixed here: the relay publishes it with the same id however often it tries.
        tx.execute(
            "INSERT INTO procedure_outbox
                 (dossier_code, event_id, event_type, causation_id, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &dossier_code,
                &Uuid::now_v7(),
                &event.event_type,
                &causation,
                &event.payload,
                &now,
            ],
        )
        .await?;
    }
    Ok(())
}

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub dossier_code: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub causation_id: Option<Uuid>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

/// Takes the relay's lock for the transaction: false when another process holds it.
pub async fn relay_lock(tx: &Transaction<'_>) -> Result<bool, DbError> {
    let row = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&RELAY_LOCK.0, &RELAY_LOCK.1],
        )
        .await?;
    Ok(row.get(0))
}

/// The oldest `limit` events not yet published, in the order they were queued.
pub async fn unpublished(tx: &Transaction<'_>, limit: i64) -> Result<Vec<Queued>, DbError> {
    // Every published row leaves a dead entry in the partial index until a vacuum. A plain
    // index scan marks the entries it finds dead (so the next round skips them); a bitmap scan,
    // which the planner picks for the few rows it expects, never does, and each round then
    // walked every event published since the last vacuum: ~100 ms of PostgreSQL per round after
    // 10 000 dossiers, measured with autovacuum off (as on the CI machines), growing with
    // history, and between vacuums in any deployment.
    tx.batch_execute("SET LOCAL enable_bitmapscan = off")
        .await?;
    let rows = tx
        .query(
            "SELECT id, dossier_code, event_id, event_type, causation_id, payload, created_at
             FROM procedure_outbox WHERE published_at IS NULL AND refused_at IS NULL
             ORDER BY id LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Queued {
            id: row.get(0),
            dossier_code: row.get(1),
            event_id: row.get(2),
            event_type: row.get(3),
            causation_id: row.get(4),
            payload: row.get(5),
            created_at: row.get(6),
        })
        .collect())
}

/// What one relay round did with the events it took.
#[derive(Debug, Default)]
pub struct Round {
    pub published: Vec<i64>,
    /// Not taken for now (the broker away, a right missing): tried again.
    pub failed: Vec<(i64, String)>,
    /// Refused by the hub's checks: kept, not tried again.
    pub refused: Vec<(i64, String)>,
}

/// Records which queued events reached the broker and why the others did not.
pub async fn relayed(
    tx: &Transaction<'_>,
    round: &Round,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let published = &round.published;
    tx.execute(
        "UPDATE procedure_outbox SET published_at = $2, attempts = attempts + 1, last_error = NULL
         WHERE id = ANY($1)",
        &[&published, &now],
    )
    .await?;
    for (id, error) in &round.failed {
        tx.execute(
            "UPDATE procedure_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
            &[id, error],
        )
        .await?;
    }
    for (id, error) in &round.refused {
        tx.execute(
            "UPDATE procedure_outbox SET attempts = attempts + 1, last_error = $2, refused_at = $3
             WHERE id = $1",
            &[id, error, &now],
        )
        .await?;
    }
    Ok(())
}

/// Dossiers with a step past its due time not yet marked overdue.
pub async fn with_steps_due(
    pool: &Pool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT DISTINCT dossier_code FROM procedure_step
             WHERE state IN ('running', 'failed', 'undoing') AND overdue_at IS NULL
               AND due_at < $1
             UNION
             SELECT dossier_code FROM procedure_instance
             WHERE supplement IS NOT NULL AND supplement->>'overdue_at' IS NULL
               AND (supplement->>'due_at')::timestamptz < $1
             LIMIT $2",
            &[&now, &limit],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// One line of a dossier's timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// `in` for an event taken in, `out` for one the engine published (or will).
    pub direction: &'static str,
    pub event_type: String,
    /// Who sent it (in), or `hub` (out).
    pub by: String,
    pub what: String,
}

/// Everything that happened to `dossier_code`, in time order.
pub async fn timeline(pool: &Pool, dossier_code: &str) -> Result<Vec<Entry>, DbError> {
    let client = pool.get().await?;
    let taken = client
        .query(
            "SELECT taken_at, event_type, producer, effect FROM procedure_event
             WHERE dossier_code = $1",
            &[&dossier_code],
        )
        .await?;
    let sent = client
        .query(
            "SELECT created_at, event_type, published_at, last_error, refused_at
             FROM procedure_outbox WHERE dossier_code = $1",
            &[&dossier_code],
        )
        .await?;
    let mut entries: Vec<Entry> = taken
        .iter()
        .map(|row| Entry {
            at: row.get(0),
            direction: "in",
            event_type: row.get(1),
            by: row.get(2),
            what: row.get(3),
        })
        .chain(sent.iter().map(|row| {
            let published: Option<DateTime<Utc>> = row.get(2);
            let error: Option<String> = row.get(3);
            let refused: Option<DateTime<Utc>> = row.get(4);
            Entry {
                at: row.get(0),
                direction: "out",
                event_type: row.get(1),
                by: "hub".to_owned(),
                what: match (published, refused, error) {
                    (Some(_), _, _) => "published".to_owned(),
                    (None, Some(_), error) => {
                        format!("refused by the hub's checks: {}", error.unwrap_or_default())
                    }
                    (None, None, Some(error)) => format!("not published yet: {error}"),
                    (None, None, None) => "queued".to_owned(),
                },
            }
        }))
        .collect();
    entries.sort_by_key(|e| e.at);
    Ok(entries)
}

/// Dossiers, newest first; with `overdue_at`, only those running past their appointment then,
/// or with a step marked overdue.
pub async fn list(
    pool: &Pool,
    overdue_at: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<Instance>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT dossier_code, procedure_group, procedure_code, state, portal_status,
                    received_at, accepted_at, due_at, completed_at, '{}'::jsonb, supplement,
                    prefill, filled
             FROM procedure_instance i
             WHERE $1::timestamptz IS NULL
                OR (state = 'running' AND supplement IS NULL AND due_at < $1)
                OR (supplement IS NOT NULL AND (supplement->>'due_at')::timestamptz < $1)
                OR (state IN ('running', 'annulled') AND EXISTS (
                    SELECT 1 FROM procedure_step s
                    WHERE s.dossier_code = i.dossier_code AND s.overdue_at IS NOT NULL
                      AND s.state IN ('running', 'failed', 'undoing')))
             ORDER BY received_at DESC LIMIT $2",
            &[&overdue_at, &limit],
        )
        .await?;
    // Every listed dossier's steps in one query, not one query per dossier.
    let codes: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let mut steps: HashMap<String, Vec<Step>> = HashMap::new();
    for row in client
        .query(
            "SELECT step, state, started_at, due_at, finished_at, overdue_at, results, error,
                    done_event, dossier_code
             FROM procedure_step WHERE dossier_code = ANY($1) ORDER BY position",
            &[&codes],
        )
        .await?
    {
        steps.entry(row.get(9)).or_default().push(step_from(&row)?);
    }
    rows.iter()
        .map(|row| {
            let code: String = row.get(0);
            instance_from(row, steps.remove(&code).unwrap_or_default())
        })
        .collect()
}
