//! Publishes what the engine queued in its outbox, through the same checks as any event. An
//! event the broker did not take, or that the engine's system has no right to publish yet, is
//! tried again on the next round; one the schema or rules refuse is a fault of the engine's and
//! is set aside with the reason (shown in the dossier's timeline), so it cannot hold the outbox
//! up. One process relays at a time (a PostgreSQL advisory lock held by the round's
//! transaction), a dossier's events in the order they were queued (sent together: the producer
//! keeps their order on each topic's partition, see `Events::publish_events_in_order`),
//! different dossiers' events concurrently. A crash
//! between publishing and recording it publishes the event again with the same id, which
//! consumers drop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::{self, Queued, Round};
use super::{LEGAL_BASIS, PURPOSE};
use crate::access::Caller;
use crate::db::DbError;
use crate::domain::{Clock, DossierCode};
use crate::events::{Events, NewEvent, PublishError};

/// Events one round takes from the outbox.
const BATCH: i64 = 512;

pub struct Relay {
    pub events: Arc<Events>,
    pub pool: Pool,
    pub caller: Caller,
    pub clock: Arc<dyn Clock>,
    /// Told when the outbox has something new; the relay also looks every `interval`.
    pub outbox: Arc<Notify>,
    pub interval: Duration,
}

impl Relay {
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let published = match self.round(&stop).await {
                Ok(published) => published,
                Err(error) => {
                    tracing::warn!(%error, "cannot relay the procedures' outbox; trying again");
                    0
                }
            };
            if published == 0 {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.outbox.notified() => {}
                    () = self.clock.sleep(self.interval) => {}
                }
            } else if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Publishes one batch; how many events reached the broker. Stops early (recording what
    /// it did) when `stop` is cancelled.
    async fn round(&self, stop: &CancellationToken) -> Result<usize, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !store::relay_lock(&tx).await? {
            return Ok(0);
        }
        let queued = store::unpublished(&tx, BATCH).await?;
        if queued.is_empty() {
            return Ok(0);
        }
        let mut by_dossier: Vec<Vec<Queued>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for event in queued {
            let at = *index.entry(event.dossier_code.clone()).or_insert_with(|| {
                by_dossier.push(Vec::new());
                by_dossier.len() - 1
            });
            by_dossier[at].push(event);
        }
        let outcomes = futures::future::join_all(
            by_dossier
                .into_iter()
                .map(|events| self.publish_in_order(events, stop)),
        )
        .await;
        let mut round = Round::default();
        for outcome in outcomes {
            round.published.extend(outcome.published);
            round.failed.extend(outcome.failed);
            round.refused.extend(outcome.refused);
        }
        store::relayed(&tx, &round, self.clock.now()).await?;
        tx.commit().await?;
        Ok(round.published.len())
    }

    /// One dossier's events, in the order queued, all sent before the first acknowledgement
    /// comes back (`Events::publish_events_in_order`): those not taken for now are tried
    /// again, one refused for good is set aside.
    async fn publish_in_order(&self, events: Vec<Queued>, stop: &CancellationToken) -> Round {
        let mut round = Round::default();
        if stop.is_cancelled() {
            return round;
        }
        let mut queued = Vec::with_capacity(events.len());
        let new: Vec<NewEvent> = events
            .into_iter()
            .map(|event| {
                queued.push((event.id, event.dossier_code.clone()));
                NewEvent {
                    event_type: event.event_type,
                    event_id: event.event_id,
                    occurred_at: event.created_at.with_timezone(&crate::domain::vietnam()),
                    correlation_id: DossierCode::parse(&event.dossier_code).ok(),
                    causation_id: event.causation_id,
                    purpose: PURPOSE.to_owned(),
                    legal_basis: LEGAL_BASIS.to_owned(),
                    payload: event.payload,
                }
            })
            .collect();
        let outcomes = self.events.publish_events_in_order(&self.caller, new).await;
        for ((id, dossier), outcome) in queued.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) => round.published.push(id),
                Err(PublishError::Rejected(rejected)) => {
                    tracing::error!(%dossier, violations = %rejected.summary(), "the hub refused an event of the procedure engine's; set aside");
                    round.refused.push((id, rejected.summary()));
                }
                Err(error) => {
                    tracing::warn!(%dossier, %error, "a procedure's event was not published; trying again");
                    round.failed.push((id, error.to_string()));
                }
            }
        }
        round
    }
}
