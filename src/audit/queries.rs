//! What auditors ask of the ledger: a dossier's trace, and a citizen's disclosure history (by
//! personal ID, turned into pseudonymous references here, never stored). Every question asked
//! is itself an entry of the audit log: who asked, what, about which dossier or subject.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::db::DbError;

/// One transfer, as the ledger holds it; `position` is its audit log entry (`audit prove`).
#[derive(Debug, Clone, Serialize)]
pub struct TransferRow {
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub channel: String,
    pub source_system: String,
    pub target_system: String,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub schema_subject: Option<String>,
    pub schema_version: Option<i32>,
    pub fields: Vec<String>,
    pub classification: String,
    pub purpose: String,
    pub legal_basis: String,
    pub dossier_code: Option<String>,
    pub trace_id: Option<String>,
}

const COLUMNS: &str = "position, recorded_at, channel, source_system, target_system, event_id, \
     event_type, schema_subject, schema_version, fields, classification, purpose, legal_basis, \
     dossier_code, trace_id";

fn row(row: &tokio_postgres::Row) -> TransferRow {
    TransferRow {
        position: row.get(0),
        recorded_at: row.get(1),
        channel: row.get(2),
        source_system: row.get(3),
        target_system: row.get(4),
        event_id: row.get(5),
        event_type: row.get(6),
        schema_subject: row.get(7),
        schema_version: row.get(8),
        fields: row.get(9),
        classification: row.get(10),
        purpose: row.get(11),
        legal_basis: row.get(12),
        dossier_code: row.get(13),
        trace_id: row.get(14),
    }
}

/// Records that `by` asked `question` about `about` (a dossier code or subject references).
async fn record_question(
    client: &impl GenericClient,
    by: &str,
    question: &str,
    about: serde_json::Value,
) -> Result<(), DbError> {
    let entry = json!({"action": "audit-query", "question": question, "about": about, "by": by});
    client
        .execute("SELECT audit_append('admin', $1::JSONB)", &[&entry])
        .await?;
    Ok(())
}

/// Every transfer of dossier `code`, in the order they were recorded.
pub async fn dossier_trace(pool: &Pool, code: &str, by: &str) -> Result<Vec<TransferRow>, DbError> {
    let client = pool.get().await?;
    record_question(&client, by, "dossier-trace", json!({"dossier_code": code})).await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit_transfer WHERE dossier_code = $1 ORDER BY position"
            ),
            &[&code],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}

/// Every transfer that concerned the citizen with any of `references` (one per subject key
/// held), in the order they were recorded.
pub async fn subject_history(
    pool: &Pool,
    references: &[String],
    question: &str,
    by: &str,
) -> Result<Vec<TransferRow>, DbError> {
    let client = pool.get().await?;
    record_question(&client, by, question, json!({"subject_refs": references})).await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit_transfer WHERE subject_refs && $1 ORDER BY position"
            ),
            &[&references],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}
