//! The record of refused attempts (`access_denial`): who tried what, when, and why. Refusals are
//! queued and written by one task with a connection of its own, so a member hammering the hub
//! with calls it may not make costs the publish path nothing: when the queue is full, further
//! refusals are counted in metrics and logged, not written. Rows older than the retention are
//! deleted by the same task.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::policy::Direction;
use crate::db::DbError;
use crate::domain::SystemId;
use crate::telemetry::Metrics;

/// Refusals waiting to be written.
const QUEUE: usize = 4096;
/// Rows written in one statement at most.
const BATCH: usize = 256;
/// How often rows past the retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// One refusal, as recorded.
#[derive(Debug, Clone)]
pub(super) struct DenialRow {
    pub at: DateTime<Utc>,
    pub system: SystemId,
    pub action: Direction,
    pub resource: String,
    /// A purpose code, or a marker when the caller sent something else: whatever a caller
    /// types into `purpose` (perhaps a personal ID) is not stored.
    pub purpose: String,
    pub reason: &'static str,
}

/// The sending side, held by [`super::Access`].
#[derive(Clone)]
pub(super) struct DenialQueue {
    sender: mpsc::Sender<DenialRow>,
    metrics: Arc<Metrics>,
}

impl DenialQueue {
    pub fn push(&self, row: DenialRow) {
        if self.sender.try_send(row).is_err() {
            self.metrics.access_denials_dropped.inc();
            tracing::warn!("access denials arrive faster than they are recorded; one not recorded");
        }
    }
}

/// Writes queued refusals until shutdown, then what is left.
pub struct DenialRecorder {
    receiver: mpsc::Receiver<DenialRow>,
    pool: Pool,
    retention: chrono::Duration,
}

pub(super) fn queue(
    pool: Pool,
    retention: chrono::Duration,
    metrics: Arc<Metrics>,
) -> (DenialQueue, DenialRecorder) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    (
        DenialQueue { sender, metrics },
        DenialRecorder {
            receiver,
            pool,
            retention,
        },
    )
}

impl DenialRecorder {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut purge = tokio::time::interval(PURGE_EVERY);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = purge.tick() => self.purge().await,
                received = self.receiver.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        break;
                    }
                    self.write(&mut batch).await;
                }
            }
        }
        while let Ok(row) = self.receiver.try_recv() {
            batch.push(row);
            if batch.len() == BATCH {
                self.write(&mut batch).await;
            }
        }
        self.write(&mut batch).await;
    }

    async fn write(&self, batch: &mut Vec<DenialRow>) {
        if batch.is_empty() {
            return;
        }
        let rows = std::mem::take(batch);
        let count = rows.len();
        let written = async {
            let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
            let system: Vec<&str> = rows.iter().map(|r| r.system.as_str()).collect();
            let action: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
            let resource: Vec<&str> = rows.iter().map(|r| r.resource.as_str()).collect();
            let purpose: Vec<&str> = rows.iter().map(|r| r.purpose.as_str()).collect();
            let reason: Vec<&str> = rows.iter().map(|r| r.reason).collect();
            self.pool
                .get()
                .await?
                .execute(
                    "INSERT INTO access_denial (at, system_id, action, resource, purpose, reason)
                     SELECT * FROM unnest($1::TIMESTAMPTZ[], $2::TEXT[], $3::TEXT[], $4::TEXT[],
                                          $5::TEXT[], $6::TEXT[])",
                    &[&at, &system, &action, &resource, &purpose, &reason],
                )
                .await?;
            Ok::<_, DbError>(())
        };
        if let Err(error) = written.await {
            tracing::error!(%error, count, "cannot record access denials");
        }
    }

    async fn purge(&self) {
        let cutoff = Utc::now() - self.retention;
        let purged = async {
            Ok::<_, DbError>(
                self.pool
                    .get()
                    .await?
                    .execute("DELETE FROM access_denial WHERE at < $1", &[&cutoff])
                    .await?,
            )
        };
        match purged.await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "access denials past retention deleted"),
            Err(error) => tracing::warn!(%error, "cannot purge access denials; will retry"),
        }
    }
}
