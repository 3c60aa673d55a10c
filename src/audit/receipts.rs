//! Tell Us Once receipts: for the event types a procedure tells every entitled agency (the
//! death's registration, `Definition::told`), which recipient system was handed the event of
//! which dossier, how many times, and when it acknowledged it. The transfer ledger proves each
//! delivery; a receipt answers, per dossier, who has been told and who has confirmed, and who
//! is entitled to be told but has not been yet (a subscriber that is down, or never came).
//!
//! A receipt is written before the event is handed over (like the ledger row), and marked
//! acknowledged before the subscription's offset moves: a receipt says acknowledged only if
//! the recipient said so, and an acknowledgement the hub could not record is refused, so the
//! recipient sends it again.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use uuid::Uuid;

use crate::db::DbError;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::ToldLabels;

/// Where the receipts go, and for which event types.
#[derive(Clone)]
pub struct Receipts {
    pool: Pool,
    kept: Arc<HashSet<String>>,
    metrics: Arc<Metrics>,
}

/// One handing-over of a kept event to a recipient.
pub struct Handed<'a> {
    pub event_id: Uuid,
    pub recipient: &'a str,
    pub event_type: &'a str,
    pub dossier_code: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl Receipts {
    /// Receipts for the deliveries of `kept` event types, counted in `lienthong_told_total`.
    pub fn new<'a>(
        pool: Pool,
        kept: impl IntoIterator<Item = &'a str>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pool,
            kept: Arc::new(kept.into_iter().map(str::to_owned).collect()),
            metrics,
        }
    }

    fn count(&self, recipient: &str, outcome: &str, by: u64) {
        self.metrics
            .told
            .get_or_create(&ToldLabels {
                recipient: recipient.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(by);
    }

    pub fn keeps(&self, event_type: &str) -> bool {
        self.kept.contains(event_type)
    }

    /// Records a delivery; the same event handed to the same recipient again counts once more.
    pub async fn handed(&self, handed: Handed<'_>) -> Result<(), DbError> {
        // `xmax = 0` only on a row this statement inserted: the first handing-over.
        let first: bool = self
            .pool
            .get()
            .await?
            .query_one(
                "INSERT INTO delivery_receipt
                     (event_id, recipient, event_type, dossier_code, topic, partition, \"offset\")
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (event_id, recipient) DO UPDATE
                 SET deliveries = delivery_receipt.deliveries + 1
                 RETURNING xmax = 0",
                &[
                    &handed.event_id,
                    &handed.recipient,
                    &handed.event_type,
                    &handed.dossier_code,
                    &handed.topic,
                    &handed.partition,
                    &handed.offset,
                ],
            )
            .await?
            .get(0);
        if first {
            self.count(handed.recipient, "handed", 1);
        }
        Ok(())
    }

    /// Marks what `recipient` acknowledged at `positions` (partition, offset) of `topic`;
    /// returns how many receipts were waiting for it.
    pub async fn acknowledged(
        &self,
        recipient: &str,
        topic: &str,
        positions: &[(i32, i64)],
    ) -> Result<u64, DbError> {
        let (partitions, offsets): (Vec<i32>, Vec<i64>) = positions.iter().copied().unzip();
        let confirmed = self
            .pool
            .get()
            .await?
            .execute(
                "UPDATE delivery_receipt r SET acknowledged_at = now()
                 FROM unnest($3::int[], $4::bigint[]) AS p(partition, \"offset\")
                 WHERE r.recipient = $1 AND r.topic = $2 AND r.partition = p.partition
                   AND r.\"offset\" = p.\"offset\" AND r.acknowledged_at IS NULL",
                &[&recipient, &topic, &partitions, &offsets],
            )
            .await?;
        if confirmed > 0 {
            self.count(recipient, "acknowledged", confirmed);
        }
        Ok(confirmed)
    }
}

/// One agency, as a dossier's Tell Us Once list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Told {
    pub recipient: String,
    /// It is entitled to the event now (one whose right was since revoked, or that was
    /// disabled, still shows if it was told).
    pub entitled: bool,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Times the hub handed the event over (more than one: the recipient did not acknowledge
    /// in time, or restarted before it did).
    pub deliveries: i32,
    /// When it acknowledged every event of the kind for the dossier; `None` until then.
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// Every system `entitled` to `event_type` (`crate::access::subscribers`), and every one it was
/// handed to for `dossier_code`, by name.
pub async fn told(
    client: &impl GenericClient,
    dossier_code: &str,
    event_type: &str,
    entitled: &[String],
) -> Result<Vec<Told>, DbError> {
    let rows = client
        .query(
            "WITH entitled AS (
                 SELECT DISTINCT unnest($3::text[]) AS recipient
             ), handed AS (
                 SELECT recipient, min(first_delivered_at) AS delivered_at,
                        sum(deliveries)::int AS deliveries,
                        CASE WHEN bool_and(acknowledged_at IS NOT NULL)
                             THEN max(acknowledged_at) END AS acknowledged_at
                 FROM delivery_receipt
                 WHERE dossier_code = $1 AND event_type = $2
                 GROUP BY recipient
             )
             SELECT coalesce(e.recipient, h.recipient), e.recipient IS NOT NULL,
                    h.delivered_at, coalesce(h.deliveries, 0), h.acknowledged_at
             FROM entitled e FULL JOIN handed h ON h.recipient = e.recipient
             ORDER BY 1",
            &[&dossier_code, &event_type, &entitled],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Told {
            recipient: row.get(0),
            entitled: row.get(1),
            delivered_at: row.get(2),
            deliveries: row.get(3),
            acknowledged_at: row.get(4),
        })
        .collect())
}
