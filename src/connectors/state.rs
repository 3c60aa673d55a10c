//! The connectors' shared state in PostgreSQL: what operators want (running, paused, stopped),
//! what they did, what each process's worker reports and what was dead-lettered. Every hub
//! process reads the same rows, so an operator's command reaches all of them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::db::DbError;

/// What operators want a connector to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    #[default]
    Running,
    /// Holds: takes no new events and leaves its consumer group, keeping its counters; resumes
    /// where it stopped.
    Paused,
    /// Off until resumed: releases its partitions, connections and rate budget.
    Stopped,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Paused => "paused",
            Desired::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Desired {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "running" => Ok(Desired::Running),
            "paused" => Ok(Desired::Paused),
            "stopped" => Ok(Desired::Stopped),
            _ => Err(()),
        }
    }
}

/// Sets what `name` should do and records who asked, in one transaction.
pub async fn set_desired(
    pool: &Pool,
    name: &str,
    desired: Desired,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO connector_state (name, desired, changed_by, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET desired = $2, changed_by = $3, reason = $4,
             changed_at = now()",
        &[&name, &desired.as_str(), &actor, &reason],
    )
    .await?;
    tx.execute(
        "INSERT INTO connector_action (name, action, actor, detail) VALUES ($1, $2, $3, $4)",
        &[&name, &desired.as_str(), &actor, &reason],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Records an action in the connector's journal that changes no state row: an operator's
/// (an offsets reset, say) or the hub's own (a callback refused for its signature).
pub async fn record_action(
    pool: &Pool,
    name: &str,
    action: &str,
    actor: &str,
    detail: Option<&str>,
) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            "INSERT INTO connector_action (name, action, actor, detail) VALUES ($1, $2, $3, $4)",
            &[&name, &action, &actor, &detail],
        )
        .await?;
    Ok(())
}

/// One entry of a connector's journal: an operator's action, or a callback it refused.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JournalEntry {
    pub action: String,
    pub actor: String,
    pub detail: Option<String>,
    pub acted_at: DateTime<Utc>,
}

/// The newest `limit` entries of `name`'s journal, newest first.
pub async fn journal(pool: &Pool, name: &str, limit: i64) -> Result<Vec<JournalEntry>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT action, actor, detail, acted_at FROM connector_action
             WHERE name = $1 ORDER BY acted_at DESC, id DESC LIMIT $2",
            &[&name, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| JournalEntry {
            action: r.get(0),
            actor: r.get(1),
            detail: r.get(2),
            acted_at: r.get(3),
        })
        .collect())
}

/// What operators set for one connector: its state, and how many restarts they asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    pub desired: Desired,
    /// Moves by one per `connectors restart`; a process restarts its worker when it moves.
    pub restarts: i64,
    /// Moves by one per `connectors restart --only-failed`; only a failed worker restarts.
    pub failed_restarts: i64,
}

impl Wanted {
    /// Both restart counters: a failed worker restarts when either moves.
    pub fn restart_marks(&self) -> (i64, i64) {
        (self.restarts, self.failed_restarts)
    }
}

/// What operators set for every connector that has a row.
pub async fn wanted_states(pool: &Pool) -> Result<HashMap<String, Wanted>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT name, desired, restarts_requested, failed_restarts_requested
             FROM connector_state",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let wanted = Wanted {
                desired: row.get::<_, &str>(1).parse().ok()?,
                restarts: row.get(2),
                failed_restarts: row.get(3),
            };
            Some((row.get(0), wanted))
        })
        .collect())
}

/// Asks every process to restart `name`'s worker (only failed ones when `only_failed`),
/// recorded with who asked.
pub async fn request_restart(
    pool: &Pool,
    name: &str,
    only_failed: bool,
    actor: &str,
) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO connector_state (name, desired, changed_by, restarts_requested,
             failed_restarts_requested)
         VALUES ($1, 'running', $2, CASE WHEN $3 THEN 0 ELSE 1 END, CASE WHEN $3 THEN 1 ELSE 0 END)
         ON CONFLICT (name) DO UPDATE SET
             restarts_requested = connector_state.restarts_requested + EXCLUDED.restarts_requested,
             failed_restarts_requested = connector_state.failed_restarts_requested
                 + EXCLUDED.failed_restarts_requested",
        &[&name, &actor, &only_failed],
    )
    .await?;
    let action = if only_failed {
        "restart --only-failed"
    } else {
        "restart"
    };
    tx.execute(
        "INSERT INTO connector_action (name, action, actor) VALUES ($1, $2, $3)",
        &[&name, &action, &actor],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One process's report on its worker of a connector.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkerReport {
    pub name: String,
    pub process: String,
    pub state: String,
    pub partitions: String,
    pub delivered: i64,
    pub failed_attempts: i64,
    pub dead_lettered: i64,
    pub restarts: i32,
    pub breaker: String,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// The manifest the worker runs ([`Manifest::version`](super::manifest::Manifest::version)).
    pub manifest_version: String,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn report(pool: &Pool, r: &WorkerReport) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            "INSERT INTO connector_worker (name, process, state, partitions, delivered,
                 failed_attempts, dead_lettered, restarts, breaker, last_success_at,
                 last_failure_at, last_error, latency_p50_ms, latency_p99_ms, manifest_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (name, process) DO UPDATE SET state = $3, partitions = $4,
                 delivered = $5, failed_attempts = $6, dead_lettered = $7, restarts = $8,
                 breaker = $9, last_success_at = $10, last_failure_at = $11, last_error = $12,
                 latency_p50_ms = $13, latency_p99_ms = $14, manifest_version = $15,
                 updated_at = now()",
            &[
                &r.name,
                &r.process,
                &r.state,
                &r.partitions,
                &r.delivered,
                &r.failed_attempts,
                &r.dead_lettered,
                &r.restarts,
                &r.breaker,
                &r.last_success_at,
                &r.last_failure_at,
                &r.last_error,
                &r.latency_p50_ms,
                &r.latency_p99_ms,
                &r.manifest_version,
            ],
        )
        .await?;
    Ok(())
}

/// The reports of every process on `name` (every connector when `None`), freshest first.
pub async fn workers(pool: &Pool, name: Option<&str>) -> Result<Vec<WorkerReport>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT name, process, state, partitions, delivered, failed_attempts, dead_lettered,
                    restarts, breaker, last_success_at, last_failure_at, last_error,
                    latency_p50_ms, latency_p99_ms, updated_at, manifest_version
             FROM connector_worker WHERE $1::text IS NULL OR name = $1
             ORDER BY name, updated_at DESC",
            &[&name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| WorkerReport {
            name: row.get(0),
            process: row.get(1),
            state: row.get(2),
            partitions: row.get(3),
            delivered: row.get(4),
            failed_attempts: row.get(5),
            dead_lettered: row.get(6),
            restarts: row.get(7),
            breaker: row.get(8),
            last_success_at: row.get(9),
            last_failure_at: row.get(10),
            last_error: row.get(11),
            latency_p50_ms: row.get(12),
            latency_p99_ms: row.get(13),
            updated_at: row.get(14),
            manifest_version: row.get(15),
        })
        .collect())
}

/// An event a connector gave up on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub name: String,
    pub event_id: Option<Uuid>,
    pub event_type: String,
    pub source: (String, i32, i64),
    pub dlq: (String, i32, i64),
    pub error_class: String,
    pub error_message: String,
    pub attempts: i32,
    pub first_failure_at: DateTime<Utc>,
    pub last_failure_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_requested_at: Option<DateTime<Utc>>,
    /// What the replay did: `delivered`, or `dead-lettered again as #N`.
    pub replay_outcome: Option<String>,
    /// Set for an event that waits rather than failed: replayed by itself at this time.
    pub parked_until: Option<DateTime<Utc>>,
}

pub async fn add_dead_letter(pool: &Pool, d: &DeadLetter) -> Result<i64, DbError> {
    let row = pool
        .get()
        .await?
        .query_one(
            "INSERT INTO connector_dead_letter (name, event_id, event_type, source_topic,
                 source_partition, source_offset, dlq_topic, dlq_partition, dlq_offset,
                 error_class, error_message, attempts, first_failure_at, last_failure_at,
                 parked_until, replay_requested_at, replayed_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                     $15, $15, CASE WHEN $15::timestamptz IS NOT NULL THEN 'schedule' END)
             RETURNING id",
            &[
                &d.name,
                &d.event_id,
                &d.event_type,
                &d.source.0,
                &d.source.1,
                &d.source.2,
                &d.dlq.0,
                &d.dlq.1,
                &d.dlq.2,
                &d.error_class,
                &d.error_message,
                &d.attempts,
                &d.first_failure_at,
                &d.last_failure_at,
                &d.parked_until,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// How many dead letters of `name` are not replayed yet, and how many of those are parked
/// events (waiting, not failed).
pub async fn dead_letters_waiting(pool: &Pool, name: &str) -> Result<(usize, usize), DbError> {
    let row = pool
        .get()
        .await?
        .query_one(
            "SELECT count(*) FILTER (WHERE parked_until IS NULL),
                    count(*) FILTER (WHERE parked_until IS NOT NULL)
             FROM connector_dead_letter WHERE name = $1 AND replayed_at IS NULL",
            &[&name],
        )
        .await?;
    let count = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(usize::MAX);
    Ok((count(0), count(1)))
}

/// Dead letters of `name`, newest first; replayed ones only when `all`.
pub async fn dead_letters(pool: &Pool, name: &str, all: bool) -> Result<Vec<DeadLetter>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT id, name, event_id, event_type, source_topic, source_partition, source_offset,
                    dlq_topic, dlq_partition, dlq_offset, error_class, error_message, attempts,
                    first_failure_at, last_failure_at, replayed_at, replay_requested_at,
                    replay_outcome, parked_until
             FROM connector_dead_letter WHERE name = $1 AND ($2 OR replayed_at IS NULL)
             ORDER BY id DESC LIMIT 1000",
            &[&name, &all],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| DeadLetter {
            id: row.get(0),
            name: row.get(1),
            event_id: row.get(2),
            event_type: row.get(3),
            source: (row.get(4), row.get(5), row.get(6)),
            dlq: (row.get(7), row.get(8), row.get(9)),
            error_class: row.get(10),
            error_message: row.get(11),
            attempts: row.get(12),
            first_failure_at: row.get(13),
            last_failure_at: row.get(14),
            replayed_at: row.get(15),
            replay_requested_at: row.get(16),
            replay_outcome: row.get(17),
            parked_until: row.get(18),
        })
        .collect())
}

/// Asks for the replay of `name`'s dead letters `ids` (every one not yet replayed when
/// `None`); returns how many were asked for. One being replayed now is left to finish.
/// Recorded with who asked.
pub async fn request_replay(
    pool: &Pool,
    name: &str,
    ids: Option<&[i64]>,
    actor: &str,
) -> Result<u64, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let count = tx
        .execute(
            "UPDATE connector_dead_letter SET replay_requested_at = now(), replayed_by = $3,
                 replay_claimed_by = NULL, replay_claimed_at = NULL
             WHERE name = $1 AND replayed_at IS NULL
               -- Every dead letter means the failed ones: parked events ask again when due,
               -- or when named.
               AND ($2::bigint[] IS NULL AND parked_until IS NULL OR id = ANY($2))
               AND (replay_claimed_at IS NULL
                    OR replay_claimed_at < now() - make_interval(secs => $4))",
            &[&name, &ids, &actor, &CLAIM_TIMEOUT_SECONDS],
        )
        .await?;
    let detail = match ids {
        Some(ids) => format!("dead letters {ids:?}"),
        None => "every dead letter".to_owned(),
    };
    tx.execute(
        "INSERT INTO connector_action (name, action, actor, detail) VALUES ($1, 'replay', $2, $3)",
        &[&name, &actor, &detail],
    )
    .await?;
    tx.commit().await?;
    Ok(count)
}

/// A dead letter claimed for replay by this process.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub event_type: String,
    pub source: (String, i32, i64),
    pub dlq: (String, i32, i64),
    /// A parked event's turn (not a failed event's replay): since when it has waited, and
    /// how often it was asked.
    pub parked: Option<(DateTime<Utc>, i32)>,
}

/// How long a claim holds before another process may take the replay over.
const CLAIM_TIMEOUT_SECONDS: f64 = 300.0;

/// Claims up to `limit` requested replays of `name` for `process`; none is claimed twice
/// while its claim holds.
pub async fn claim_replays(
    pool: &Pool,
    name: &str,
    process: &str,
    limit: i64,
) -> Result<Vec<Claimed>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "UPDATE connector_dead_letter SET replay_claimed_by = $2, replay_claimed_at = now()
             WHERE id IN (
                 SELECT id FROM connector_dead_letter
                 WHERE name = $1 AND replay_requested_at <= now() AND replayed_at IS NULL
                   AND (replay_claimed_at IS NULL
                        OR replay_claimed_at < now() - make_interval(secs => $4))
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, event_type, source_topic, source_partition, source_offset,
                       dlq_topic, dlq_partition, dlq_offset, parked_until IS NOT NULL,
                       first_failure_at, attempts",
            &[&name, &process, &limit, &CLAIM_TIMEOUT_SECONDS],
        )
        .await?;
    let mut claimed: Vec<Claimed> = rows
        .iter()
        .map(|row| Claimed {
            id: row.get(0),
            event_type: row.get(1),
            source: (row.get(2), row.get(3), row.get(4)),
            dlq: (row.get(5), row.get(6), row.get(7)),
            parked: row.get::<_, bool>(8).then(|| (row.get(9), row.get(10))),
        })
        .collect();
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Parks event `id` again until `until`, after its turn (by `process`) found it still waiting
/// or its system failing: one row per parked event, its history kept.
pub async fn park_again(
    pool: &Pool,
    id: i64,
    process: &str,
    until: DateTime<Utc>,
    (class, message): (&str, &str),
    attempts: i32,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            "UPDATE connector_dead_letter
             SET parked_until = $3, replay_requested_at = $3, replay_claimed_by = NULL,
                 replay_claimed_at = NULL, error_class = $4, error_message = $5, attempts = $6,
                 last_failure_at = $7
             WHERE id = $1 AND replay_claimed_by = $2",
            &[&id, &process, &until, &class, &message, &attempts, &at],
        )
        .await?;
    Ok(())
}

/// Records what the replay of dead letter `id` by `process` did (unless another process has
/// taken the replay over meanwhile).
pub async fn replayed(pool: &Pool, id: i64, process: &str, outcome: &str) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            "UPDATE connector_dead_letter SET replayed_at = now(), replay_outcome = $3
             WHERE id = $1 AND replay_claimed_by = $2",
            &[&id, &process, &outcome],
        )
        .await?;
    Ok(())
}

/// The event id of `connector`'s reply about `key`: `candidate` if none was given yet, else
/// the one given first. Several events can cause replies about one thing (a payment.initiated
/// repeated or replayed for one PayGov transaction); their replies share this id. (The comment
/// in V13, written earlier, names a callback as one cause: callbacks reach a connector of
/// their own and are not keyed.)
pub async fn outcome_id_for_key(
    pool: &Pool,
    connector: &str,
    key: &str,
    candidate: Uuid,
) -> Result<Uuid, DbError> {
    let client = pool.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO connector_outcome_key (connector, key, event_id) VALUES ($1, $2, $3)
             ON CONFLICT (connector, key) DO NOTHING",
            &[&connector, &key, &candidate],
        )
        .await?;
    if inserted == 1 {
        return Ok(candidate);
    }
    // A statement of its own: it sees the row that made the insert conflict, however late
    // that row was committed.
    let row = client
        .query_one(
            "SELECT event_id FROM connector_outcome_key WHERE connector = $1 AND key = $2",
            &[&connector, &key],
        )
        .await?;
    Ok(row.get(0))
}
