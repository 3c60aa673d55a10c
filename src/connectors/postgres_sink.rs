//! The postgres-sink kind's side effect: each event's row is upserted into a table of a
//! provincial system's PostgreSQL, keyed by the manifest's key columns, so an event written
//! again (after a crash, a replay) changes nothing more. Values are converted by the table's
//! own column types (`jsonb_populate_record`). Errors of the data (a wrong type, a constraint)
//! are not retried; errors of the connection are.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;
use serde_json::Value;

use super::effect::{Answer, CallError};
use super::manifest::{DeliveryPolicy, PgTarget, Secret, is_identifier};
use super::resilience::Breaker;
use crate::config::DatabaseConfig;
use crate::domain::Clock;

/// Connections a connector holds to a provincial system's PostgreSQL.
const POOL_SIZE: usize = 4;

pub struct PgSink {
    pool: Pool,
    target: PgTarget,
    pub breaker: Breaker,
}

/// `"schema"."table"` from a checked `schema.table`.
pub(super) fn quoted_table(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".")
}

/// A pool of connections to a provincial system's PostgreSQL, its connection string read from
/// `url` now; connections open when first used. Errors name `field`, never the string.
pub(super) fn external_pool(
    url: &Secret,
    ca_file: Option<&PathBuf>,
    field: &str,
) -> Result<Pool, String> {
    let url = url.read().map_err(|e| format!("{field}: {e}"))?;
    crate::db::pool(&DatabaseConfig {
        url,
        ca_file: ca_file.cloned(),
        pool_max_size: POOL_SIZE,
        ..DatabaseConfig::default()
    })
    // A URL error may quote the connection string: say only what kind of problem it is.
    .map_err(|e| match e {
        crate::db::DbError::Url(_) => format!("{field}: not a valid PostgreSQL connection string"),
        other => format!("{field}: {other}"),
    })
}

impl PgSink {
    /// Reads the connection string now; connections open when first used.
    pub fn new(
        target: &PgTarget,
        delivery: &DeliveryPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let pool = external_pool(&target.url, target.ca_file.as_ref(), "postgres.url")?;
        Ok(Self {
            pool,
            target: target.clone(),
            breaker: Breaker::new(clock, delivery.breaker_failures, delivery.breaker_open),
        })
    }

    /// The upsert for a row with these columns.
    fn statement(&self, columns: &[&str]) -> String {
        let table = quoted_table(&self.target.table);
        let list = columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let keys = self
            .target
            .key_columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !self.target.key_columns.iter().any(|k| k == *c))
            .map(|c| format!("\"{c}\" = EXCLUDED.\"{c}\""))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_record(NULL::{table}, $1::jsonb) \
             ON CONFLICT ({keys}) {on_conflict}"
        )
    }

    /// Upserts `row` (an object of column names and values).
    pub async fn write(&self, row: &Value) -> Result<Answer, CallError> {
        let permanent = |class: &str, message: String| CallError {
            class: class.to_owned(),
            message,
            status: None,
            retryable: false,
        };
        let Some(object) = row.as_object() else {
            return Err(permanent(
                "Mapping",
                "the row mapping must give an object of column names and values".to_owned(),
            ));
        };
        let columns: Vec<&str> = object.keys().map(String::as_str).collect();
        if let Some(bad) = columns.iter().find(|c| !is_identifier(c)) {
            return Err(permanent(
                "Mapping",
                format!("{bad:?} is not a column name (lower-case letters, digits and '_')"),
            ));
        }
        if let Some(missing) = self
            .target
            .key_columns
            .iter()
            .find(|k| !object.contains_key(k.as_str()))
        {
            return Err(permanent(
                "Mapping",
                format!("the row has no {missing}, a key column"),
            ));
        }
        let permit = self.breaker.admit().await;
        let started = Instant::now();
        let outcome = match self.pool.get().await {
            Ok(client) => client
                .execute(&self.statement(&columns), &[row])
                .await
                .map(|_| Answer {
                    status: 200,
                    body: Value::Null,
                    latency: started.elapsed(),
                })
                .map_err(|e| classify(&e)),
            Err(e) => Err(CallError {
                class: "Connect".to_owned(),
                message: format!("no connection to the target database: {e}"),
                status: None,
                retryable: true,
            }),
        };
        match &outcome {
            Ok(_) => permit.succeeded(),
            Err(error) if !error.retryable => permit.succeeded(),
            Err(_) => permit.failed(),
        }
        outcome
    }
}

/// Errors of the data (a wrong value, a broken constraint, a trigger's refusal, a row too big:
/// classes 21, 22, 23, 27, 44, 54, P0, and 42 but for a missing table or privilege) belong to
/// the event or the mapping and are not retried. The others (the connection, serialization,
/// resources, a table or GRANT not there yet) may pass on another attempt.
pub(super) fn classify(error: &tokio_postgres::Error) -> CallError {
    let code = error.code();
    let permanent = code.is_some_and(|c| {
        let deployment = matches!(c.code(), "42501" | "42P01");
        let data = matches!(
            c.code().get(..2),
            Some("21" | "22" | "23" | "27" | "42" | "44" | "54" | "P0")
        );
        data && !deployment
    });
    CallError {
        class: code.map_or_else(|| "Connect".to_owned(), |c| format!("SqlState{}", c.code())),
        // The database's own words name the column and the rule, never the connection string.
        message: error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned()),
        status: None,
        retryable: !permanent,
    }
}
