//! The auditor's questions that judge the ledger against the access rights: transfers whose
//! purpose the system had no right to when they happened (`audit purposes`), and who would be
//! affected by a change to an event type's schema (`audit blast-radius`). Rights are replayed
//! from their history (never deleted, only revoked), so a right revoked since still covers
//! what it covered then.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::json;

use super::queries::{COLUMNS, TransferRow, record_question, row};
use crate::access::{AccessCatalogue, Direction, RightRecord};
use crate::db::DbError;

/// A transfer no right covered, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Uncovered {
    pub transfer: TransferRow,
    /// The system that needed the right.
    pub system: String,
    pub direction: String,
}

/// Publishes and deliveries since `since` that no right of the system concerned covered for
/// their purpose at the time (the hub's own production of hub-only types aside).
pub async fn purpose_check(
    pool: &Pool,
    rights: &[RightRecord],
    catalogue: &AccessCatalogue,
    since: DateTime<Utc>,
    by: &str,
) -> Result<Vec<Uncovered>, DbError> {
    let client = pool.get().await?;
    record_question(&client, by, "purpose-check", json!({"since": since})).await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit_transfer
                 WHERE recorded_at >= $1 AND channel IN ('publish', 'delivery')
                 ORDER BY position"
            ),
            &[&since],
        )
        .await?;
    Ok(rows
        .iter()
        .map(row)
        .filter_map(|transfer| {
            let event_type = transfer.event_type.clone()?;
            let info = catalogue.event_types.get(&event_type);
            let (direction, system) = match transfer.channel.as_str() {
                "publish" if info.is_some_and(|i| i.hub_only) => return None,
                "publish" => (Direction::Publish, transfer.source_system.clone()),
                _ => (Direction::Subscribe, transfer.target_system.clone()),
            };
            let topic = info.map_or("", |i| i.topic.as_str());
            let covered = rights.iter().any(|record| {
                record.right.system.as_str() == system
                    && record.covered(
                        direction,
                        &event_type,
                        topic,
                        &transfer.purpose,
                        transfer.recorded_at,
                    )
            });
            (!covered).then(|| Uncovered {
                transfer,
                system,
                direction: direction.as_str().to_owned(),
            })
        })
        .collect())
}

/// A right in force on the event type.
#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    pub system: String,
    pub direction: String,
    pub purposes: Vec<String>,
    pub granted_at: DateTime<Utc>,
}

/// A connector that consumes or publishes the event type.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorUse {
    pub connector: String,
    pub system: String,
    pub uses: String,
}

/// What one connector consumes and publishes, from its manifest.
#[derive(Debug, Clone)]
pub struct ConnectorTypes {
    pub name: String,
    pub system: String,
    pub consumes: Vec<String>,
    pub publishes: Vec<String>,
}

/// A system that received the event type, as the ledger recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct Receiver {
    pub system: String,
    pub deliveries: i64,
    pub last_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlastRadius {
    pub event_type: String,
    pub rights: Vec<Holder>,
    pub connectors: Vec<ConnectorUse>,
    pub recipients: Vec<Receiver>,
}

/// Who a change to `event_type`'s schema reaches: systems holding rights on it now,
/// connectors using it, and the systems that actually received it.
pub async fn blast_radius(
    pool: &Pool,
    event_type: &str,
    rights: &[RightRecord],
    catalogue: &AccessCatalogue,
    connectors: &[ConnectorTypes],
    by: &str,
) -> Result<BlastRadius, DbError> {
    let client = pool.get().await?;
    record_question(
        &client,
        by,
        "blast-radius",
        json!({"event_type": event_type}),
    )
    .await?;
    let topic = catalogue
        .event_types
        .get(event_type)
        .map_or("", |i| i.topic.as_str());
    let holders = rights
        .iter()
        .filter(|r| r.revoked_at.is_none() && r.right.resource.covers(event_type, topic))
        .map(|r| Holder {
            system: r.right.system.to_string(),
            direction: r.right.direction.as_str().to_owned(),
            purposes: r.right.purposes.clone(),
            granted_at: r.right.granted_at,
        })
        .collect();
    let uses = connectors
        .iter()
        .flat_map(|connector| {
            let has = |types: &[String]| types.iter().any(|t| t == event_type);
            let consumed = has(&connector.consumes).then_some("consumes");
            let published = has(&connector.publishes).then_some("publishes");
            [consumed, published]
                .into_iter()
                .flatten()
                .map(|uses| ConnectorUse {
                    connector: connector.name.clone(),
                    system: connector.system.clone(),
                    uses: uses.to_owned(),
                })
        })
        .collect();
    let rows = client
        .query(
            "SELECT target_system, count(*), max(recorded_at) FROM audit_transfer
             WHERE channel = 'delivery' AND event_type = $1
             GROUP BY target_system ORDER BY target_system",
            &[&event_type],
        )
        .await?;
    Ok(BlastRadius {
        event_type: event_type.to_owned(),
        rights: holders,
        connectors: uses,
        recipients: rows
            .iter()
            .map(|r| Receiver {
                system: r.get(0),
                deliveries: r.get(1),
                last_at: r.get(2),
            })
            .collect(),
    })
}
