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

pub(super) const COLUMNS: &str = "position, recorded_at, channel, source_system, target_system, event_id, \
     event_type, schema_subject, schema_version, fields, classification, purpose, legal_basis, \
     dossier_code, trace_id";

pub(super) fn row(row: &tokio_postgres::Row) -> TransferRow {
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
pub(super) async fn record_question(
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

/// Up to `limit` transfers after log position `after`, in order: what the lineage feed sends
/// next. Positions commit in order (see `log`), so none is skipped.
pub async fn transfer_rows_after(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<TransferRow>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit_transfer WHERE position > $1 ORDER BY position LIMIT $2"
            ),
            &[&after, &limit],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
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

/// One event on the way a field came: from the event asked about, upstream by causation.
#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    /// 0 for the event asked about, 1 for the event it follows from, and so on.
    pub depth: i32,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: Option<i32>,
    /// The system that published it.
    pub producer: String,
    /// When a connector published it with an external system's answer: that system.
    pub answered_by: Option<String>,
    /// Its fields that carry the field asked about.
    pub carries: Vec<String>,
}

/// True when `field` (a dotted path of an upstream event) carries `asked`: the same path, or
/// the same name where neither names a different owner (`personal_id` carries
/// `child.personal_id`; `mother.personal_id` does not).
fn carries(field: &str, asked: &str) -> bool {
    if field == asked {
        return true;
    }
    let split = |path: &'_ str| -> (Option<String>, String) {
        match path.rsplit_once('.') {
            Some((parent, name)) => (
                parent.rsplit('.').next().map(str::to_owned),
                name.to_owned(),
            ),
            None => (None, path.to_owned()),
        }
    };
    let (field_owner, field_name) = split(field);
    let (asked_owner, asked_name) = split(asked);
    field_name == asked_name
        && (field_owner.is_none() || asked_owner.is_none() || field_owner == asked_owner)
}

/// Where `field` of event `event_id` came from: the events it follows from (by causation,
/// as published), each with its producer, the external system that answered where a connector
/// published it, and which of its fields carry the one asked about. The field entered the hub
/// with the deepest event that carries it.
pub async fn field_provenance(
    pool: &Pool,
    event_id: Uuid,
    field: &str,
    by: &str,
) -> Result<Vec<Upstream>, DbError> {
    let client = pool.get().await?;
    record_question(
        &client,
        by,
        "field-provenance",
        json!({"event_id": event_id, "field": field}),
    )
    .await?;
    let rows = client
        .query(
            "WITH RECURSIVE chain AS (
                 SELECT t.*, 0 AS depth FROM audit_transfer t
                 WHERE t.channel = 'publish' AND t.event_id = $1
               UNION ALL
                 SELECT t.*, chain.depth + 1 FROM chain
                 JOIN audit_transfer t
                   ON t.channel = 'publish' AND t.event_id = chain.causation_id
                 WHERE chain.depth < 64
             )
             SELECT DISTINCT ON (depth) depth, position, recorded_at, event_id, event_type,
                 schema_version, source_system, fields,
                 (SELECT c.target_system FROM audit_transfer c
                  WHERE c.channel = 'connector-call' AND c.source_system = chain.source_system
                    AND c.event_id = chain.causation_id
                  ORDER BY c.position LIMIT 1)
             FROM chain ORDER BY depth, position",
            &[&event_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let fields: Vec<String> = row.get(7);
            Upstream {
                depth: row.get(0),
                position: row.get(1),
                recorded_at: row.get(2),
                event_id: row.get(3),
                event_type: row.get::<_, Option<String>>(4).unwrap_or_default(),
                schema_version: row.get(5),
                producer: row.get(6),
                answered_by: row.get(8),
                carries: fields.into_iter().filter(|f| carries(f, field)).collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::carries;

    #[test]
    fn a_field_is_carried_by_its_name_unless_another_owner_holds_it() {
        assert!(carries("child.personal_id", "child.personal_id"));
        assert!(carries("personal_id", "child.personal_id"));
        assert!(carries("child.personal_id", "personal_id"));
        assert!(!carries("mother.personal_id", "child.personal_id"));
        assert!(!carries("child.full_name", "child.personal_id"));
        assert!(carries("residence.child.personal_id", "child.personal_id"));
    }
}
