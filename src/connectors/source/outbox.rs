//! The postgres-outbox-source kind's origin: a provincial system's transactional outbox, read
//! in the order of its sequence-filled id. The stored position is the last id published.
//!
//! Ids are taken when a transaction inserts and become visible when it commits, so a reader can
//! see id 11 while 10 is still uncommitted. Moving past 10 then would skip it for ever. The
//! reader therefore publishes only ids that follow on without a gap. At a gap it notes the
//! newest transaction id that could exist (the snapshot's `xmax`) and waits until every
//! transaction older than that has ended (the snapshot's `xmin` passed it): the missing id was
//! then rolled back, or deleted, and is passed over. A reader without a position waits the same
//! way before its first read. This needs PostgreSQL 13 or later, and a sequence without a
//! cache (`CACHE 1`, the default): cached or preallocated ids are taken long before the
//! transaction that uses them writes.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde_json::Value;

use super::position::Position;
use super::{Page, Record};
use crate::connectors::effect::CallError;
use crate::connectors::manifest::{OutboxTable, StartAt};
use crate::connectors::postgres_sink::{classify, external_pool, quoted_table};

/// A gap is never passed over sooner than this: an inserting transaction may take its id a
/// moment before it is given a transaction id.
const GAP_GRACE: Duration = Duration::from_secs(2);

/// A missing id the reader waits for.
#[derive(Debug, Clone)]
struct Gap {
    missing: i64,
    /// `xmax` when the gap was first seen, as text (an `xid8`).
    horizon: String,
    since: Instant,
}

pub struct Outbox {
    pool: Pool,
    table: OutboxTable,
    gap: Mutex<Option<Gap>>,
}

fn connect_error(error: &deadpool_postgres::PoolError) -> CallError {
    CallError {
        class: "Connect".to_owned(),
        message: format!("no connection to the outbox's database: {error}"),
        status: None,
        retryable: true,
    }
}

impl Outbox {
    /// Reads the connection string now; connections open when first used.
    pub fn new(table: &OutboxTable) -> Result<Self, String> {
        Ok(Self {
            pool: external_pool(&table.url, table.ca_file.as_ref(), "outbox.url")?,
            table: table.clone(),
            gap: Mutex::new(None),
        })
    }

    fn column(&self) -> String {
        format!("\"{}\"", self.table.position_column)
    }

    /// The rows after `at`, in order and without gaps, at most `batch`.
    pub async fn fetch(&self, at: &Position, batch: u32) -> Result<Page, CallError> {
        let client = self.pool.get().await.map_err(|e| connect_error(&e))?;
        let table = quoted_table(&self.table.table);
        let column = self.column();
        let after = match at.cursor.as_deref().map(str::parse::<i64>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                return Err(CallError {
                    class: "Position".to_owned(),
                    message: format!(
                        "the stored position {:?} is not an id of {table}; set it with \
                         `lienthong connectors offsets reset`",
                        at.cursor
                    ),
                    status: None,
                    retryable: false,
                });
            }
        };
        // Without a position, the first row seen may not be the first to commit: an older
        // transaction may still hold a lower id. Wait until every transaction open at the
        // first look has ended, as at a gap.
        if after.is_none() && !self.passed_over(&client, i64::MIN, i64::MIN).await? {
            return Ok(Page {
                records: Vec::new(),
                end: None,
                more: false,
            });
        }
        if after.is_none() && self.table.start_at == StartAt::Latest {
            // Only what is written from now on: start after the newest row.
            let row = client
                .query_one(&format!("SELECT max({column})::bigint FROM {table}"), &[])
                .await
                .map_err(|e| classify(&e))?;
            let newest: Option<i64> = row.get(0);
            return Ok(Page {
                records: Vec::new(),
                end: Some(Position {
                    cursor: Some(newest.unwrap_or(0).to_string()),
                    skip: 0,
                }),
                more: true,
            });
        }
        let rows = client
            .query(
                &format!(
                    "SELECT {column}::bigint, to_jsonb(t) FROM {table} t WHERE {column} > $1 \
                     ORDER BY {column} LIMIT $2"
                ),
                &[&after.unwrap_or(i64::MIN), &i64::from(batch)],
            )
            .await
            .map_err(|e| classify(&e))?;
        let read = rows.len();
        let mut records = Vec::with_capacity(read);
        let mut expected = after.and_then(|id| id.checked_add(1));
        for row in rows {
            let id: i64 = row.get(0);
            if let Some(missing) = expected.filter(|missing| id != *missing)
                && !self.passed_over(&client, missing, id).await?
            {
                break;
            }
            records.push(Record {
                value: row.get::<_, Value>(1),
                after: Position {
                    cursor: Some(id.to_string()),
                    skip: 0,
                },
            });
            expected = id.checked_add(1);
        }
        let more = records.len() == read && read == usize::try_from(batch).unwrap_or(usize::MAX);
        Ok(Page {
            records,
            end: None,
            more,
        })
    }

    /// Whether the reader may pass over the ids from `missing` up to `next` (the next row
    /// seen), none of which it saw (see the module's comment).
    async fn passed_over(
        &self,
        client: &deadpool_postgres::Client,
        missing: i64,
        next: i64,
    ) -> Result<bool, CallError> {
        let known = self
            .gap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|gap| gap.missing == missing);
        let Some(gap) = known else {
            let row = client
                .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
                .await
                .map_err(|e| classify(&e))?;
            *self.gap.lock().unwrap_or_else(PoisonError::into_inner) = Some(Gap {
                missing,
                horizon: row.get(0),
                since: Instant::now(),
            });
            return Ok(false);
        };
        if gap.since.elapsed() < GAP_GRACE {
            return Ok(false);
        }
        let table = quoted_table(&self.table.table);
        let column = self.column();
        let row = client
            .query_one(
                &format!(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8 \
                     AND NOT EXISTS (SELECT 1 FROM {table} WHERE {column} >= $2 AND {column} < $3)"
                ),
                &[&gap.horizon, &missing, &next],
            )
            .await
            .map_err(|e| classify(&e))?;
        let passed: bool = row.get(0);
        if passed {
            if missing != i64::MIN {
                tracing::warn!(table = %self.table.table, from = missing, to = next - 1,
                    waited_ms = gap.since.elapsed().as_millis() as u64,
                    "outbox ids never committed (rolled back or deleted); passed over");
            }
            *self.gap.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        Ok(passed)
    }
}
