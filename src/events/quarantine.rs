//! The quarantine: every refused publish, kept with its reason, its violations and the calling
//! system, so an operator can find later what was refused and why (`lienthong quarantine list`).
//! Rejected input may hold personal data: it stays in PostgreSQL, never in logs, and only for
//! the configured retention (`quarantine.retention_days`), which the hub enforces itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::db::DbError;
use crate::domain::SystemId;
use crate::registry::Violation;

/// What the quarantine keeps of one refused publish.
pub struct QuarantineEntry<'a> {
    pub system: &'a SystemId,
    pub event_type: &'a str,
    pub event_id: &'a str,
    pub correlation_id: &'a str,
    pub reason: &'a str,
    pub violations: &'a [Violation],
    pub request: &'a Value,
}

/// A quarantined publish as an operator sees it.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub system_id: String,
    pub event_type: String,
    pub correlation_id: String,
    pub reason: String,
    pub violations: Vec<Violation>,
}

fn replace_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

fn without_nul(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(replace_nul(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (replace_nul(&k), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

#[derive(Clone)]
pub struct Quarantine {
    pool: Pool,
}

impl Quarantine {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn keep(&self, entry: QuarantineEntry<'_>) -> Result<i64, DbError> {
        let violations = serde_json::to_value(entry.violations)
            .expect("violations are plain strings and serialise");
        // PostgreSQL text and jsonb cannot hold NUL: keep the input with U+FFFD in its place,
        // rather than failing (the caller would retry an invalid event forever).
        let request = without_nul(entry.request.clone());
        let strip = |text: &str| replace_nul(text);
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO quarantine
                   (system_id, event_type, event_id, correlation_id, reason, violations, request)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &entry.system.as_str(),
                    &strip(entry.event_type),
                    &strip(entry.event_id),
                    &strip(entry.correlation_id),
                    &entry.reason,
                    &violations,
                    &request,
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Deletes the entries received more than `retention` ago; returns how many.
    pub async fn purge(&self, retention: chrono::Duration) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        let cutoff = Utc::now() - retention;
        Ok(client
            .execute("DELETE FROM quarantine WHERE received_at < $1", &[&cutoff])
            .await?)
    }

    /// Purges at start and then every `every` until `shutdown`.
    pub async fn enforce_retention(
        self,
        retention: chrono::Duration,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            match self.purge(retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "quarantine entries past retention deleted"),
                Err(error) => tracing::warn!(%error, "cannot purge the quarantine; will retry"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// The most recent entries, newest first.
    pub async fn recent(&self, limit: i64) -> Result<Vec<Quarantined>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, received_at, system_id, event_type, correlation_id, reason, violations
                 FROM quarantine ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Quarantined {
                id: row.get(0),
                received_at: row.get(1),
                system_id: row.get(2),
                event_type: row.get(3),
                correlation_id: row.get(4),
                reason: row.get(5),
                violations: serde_json::from_value(row.get(6)).unwrap_or_default(),
            })
            .collect())
    }
}
