//! The quarantine: every refused publish, kept with its reason, its violations and the calling
//! system, so an operator can find later what was refused and why (`lienthong quarantine list`).
//! Rejected input may hold personal data: it stays in PostgreSQL, never in logs, and only for
//! the configured retention (`quarantine.retention_days`), which the hub enforces itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::seal::{QuarantineKeys, SealError};
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

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("no quarantined event #{0} (it may be past retention)")]
    NotFound(i64),
    #[error("quarantined event #{0} was kept before requests were sealed; nothing to show")]
    NotSealed(i64),
    #[error("the sealed request of #{0} is not JSON")]
    NotJson(i64),
}

impl From<tokio_postgres::Error> for QuarantineError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

impl From<deadpool_postgres::PoolError> for QuarantineError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(DbError::Pool(e))
    }
}

/// What a sealed request is bound to: the row's identity in clear. Microseconds, as PostgreSQL
/// keeps them, so the time reads back identical.
fn seal_context(
    system: &str,
    event_id: &str,
    correlation_id: &str,
    received_at: DateTime<Utc>,
) -> String {
    format!(
        "{system}\n{event_id}\n{correlation_id}\n{}",
        received_at.timestamp_micros()
    )
}

#[derive(Clone)]
pub struct Quarantine {
    pool: Pool,
    /// Needed to keep and to read requests; listing needs none.
    keys: Option<Arc<QuarantineKeys>>,
}

impl Quarantine {
    pub fn new(pool: Pool, keys: Option<Arc<QuarantineKeys>>) -> Self {
        Self { pool, keys }
    }

    fn keys(&self) -> Result<&QuarantineKeys, QuarantineError> {
        self.keys
            .as_deref()
            .ok_or(QuarantineError::Seal(SealError::NoKey))
    }

    /// Keeps a refused publish: what identifies it in clear (to list and find it), the request
    /// itself sealed.
    pub async fn keep(&self, entry: QuarantineEntry<'_>) -> Result<i64, QuarantineError> {
        let violations = serde_json::to_value(entry.violations)
            .expect("violations are plain strings and serialise");
        let request =
            serde_json::to_vec(entry.request).expect("a JSON value always serialises to bytes");
        // PostgreSQL text cannot hold NUL: the clear columns keep U+FFFD in its place rather
        // than failing (the caller would retry an invalid event forever).
        let strip = |text: &str| replace_nul(text);
        let received_at = Utc::now();
        let context = seal_context(
            entry.system.as_str(),
            &strip(entry.event_id),
            &strip(entry.correlation_id),
            received_at,
        );
        let (key_id, sealed) = self.keys()?.seal(&request, &context);
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO quarantine
                   (system_id, event_type, event_id, correlation_id, reason, violations, sealed,
                    key_id, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                &[
                    &entry.system.as_str(),
                    &strip(entry.event_type),
                    &strip(entry.event_id),
                    &strip(entry.correlation_id),
                    &entry.reason,
                    &violations,
                    &sealed,
                    &key_id,
                    &received_at,
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Opens the sealed request of entry `id` for an operator, recording who read it and when
    /// before anything is returned.
    pub async fn read(&self, id: i64, by: &str) -> Result<Value, QuarantineError> {
        let keys = self.keys()?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT sealed, key_id, system_id, event_id, correlation_id, received_at
                 FROM quarantine WHERE id = $1",
                &[&id],
            )
            .await?
            .ok_or(QuarantineError::NotFound(id))?;
        let (Some(sealed), Some(key_id)) = (
            row.get::<_, Option<Vec<u8>>>(0),
            row.get::<_, Option<String>>(1),
        ) else {
            return Err(QuarantineError::NotSealed(id));
        };
        let context = seal_context(row.get(2), row.get(3), row.get(4), row.get(5));
        let request = keys.open(&key_id, &sealed, &context)?;
        tx.execute(
            "INSERT INTO quarantine_read (quarantine_id, read_by) VALUES ($1, $2)",
            &[&id, &by],
        )
        .await?;
        tx.commit().await?;
        serde_json::from_slice(&request).map_err(|_| QuarantineError::NotJson(id))
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
