//! The procedure engine: each life-event dossier as a durable procedure in PostgreSQL, moved by
//! the events connectors and member systems publish, with deadlines in working days. The
//! groups are data, one readable definition each (`birth.rs`, `death.rs`); `instance.rs` says how an event
//! moves a dossier; `engine.rs` takes events in, `relay.rs` publishes what the engine decided
//! (an outbox: a state change and the events announcing it are one transaction), `store.rs`
//! holds the tables. Decision record: `docs/decisions/0008-procedure-engine.md`.
//!
//! The engine acts as a member system (`procedures.system`, `procedure-engine` by default) for
//! the purpose `dossier-processing`, so its rights and field minimisation apply as to any
//! system's: grant it (`lienthong systems grant`) what [`rights`] lists.

pub mod birth;
pub mod death;
pub mod definition;
mod engine;
pub mod instance;
mod relay;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use definition::Definition;
pub use engine::{DEADLINE, EngineError};

use crate::access::{Caller, Direction};
use crate::config::ProceduresConfig;
pub use crate::config::ProceduresStart as StartAt;
use crate::domain::{Clock, ReferenceData, SystemId};
use crate::events::Events;
use crate::telemetry::Metrics;

/// The purpose the engine processes dossiers for (`schemas/access/purposes.toml`).
pub const PURPOSE: &str = "dossier-processing";
pub const LEGAL_BASIS: &str = "Decree 63/2024/ND-CP; Decree 61/2018/ND-CP";

/// The procedure groups the engine runs.
pub static GROUPS: &[&Definition] = &[&birth::BIRTH, &death::DEATH];

/// The first delay before starting a failed engine again; it doubles up to the second.
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// Every right the engine's system needs: (direction, event type), all for [`PURPOSE`].
pub fn rights() -> Vec<(Direction, &'static str)> {
    let mut rights = Vec::new();
    for group in GROUPS {
        rights.extend(
            group
                .event_types()
                .into_iter()
                .map(|t| (Direction::Subscribe, t)),
        );
        rights.extend(
            group
                .publishes()
                .into_iter()
                .map(|t| (Direction::Publish, t)),
        );
    }
    rights.sort_unstable_by_key(|(d, t)| (*d == Direction::Subscribe, *t));
    rights.dedup();
    rights
}

/// What the engine is built from.
pub struct EngineParts {
    pub events: Arc<Events>,
    pub pool: Pool,
    pub reference: Arc<ReferenceData>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub config: ProceduresConfig,
    pub system: SystemId,
}

/// Starts the engine, its relay and its deadline watch on `tracker`, until `shutdown`.
pub fn start(parts: EngineParts, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let outbox = Arc::new(Notify::new());
    let caller = Caller::internal(parts.system);
    let engine = Arc::new(engine::Engine {
        definitions: GROUPS,
        events: parts.events.clone(),
        pool: parts.pool.clone(),
        reference: parts.reference,
        clock: parts.clock.clone(),
        metrics: parts.metrics,
        caller: caller.clone(),
        max_in_flight: parts.config.max_in_flight,
        start: parts.config.start_at,
        transactions: Semaphore::new(parts.config.max_transactions),
        outbox: outbox.clone(),
    });
    let relay = relay::Relay {
        events: parts.events,
        pool: parts.pool,
        caller,
        clock: parts.clock.clone(),
        outbox,
        interval: parts.config.relay_interval(),
    };
    tracker.spawn(relay.run(shutdown.clone()));
    tracker.spawn(watch_deadlines(
        engine.clone(),
        parts.clock,
        (
            parts.config.deadline_interval(),
            parts.config.waiting_retention(),
        ),
        shutdown.clone(),
    ));
    tracker.spawn(supervise(engine, shutdown.clone()));
}

/// Runs the engine, starting it again with growing delays when it fails (a right not yet
/// granted, the broker away).
async fn supervise(engine: Arc<engine::Engine>, shutdown: CancellationToken) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let started = std::time::Instant::now();
        match engine.clone().run(shutdown.child_token()).await {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(%error, "the procedure engine stopped; starting it again in {delay:?}");
            }
        }
        if started.elapsed() > MAX_RESTART_DELAY * 2 {
            delay = FIRST_RESTART_DELAY;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// Looks for steps past their due time every `every` (on the engine's clock), and forgets
/// what waited longer than `retention` for a dossier and what it published longer ago.
async fn watch_deadlines(
    engine: Arc<engine::Engine>,
    clock: Arc<dyn Clock>,
    (every, retention): (Duration, chrono::Duration),
    shutdown: CancellationToken,
) {
    loop {
        if let Err(error) = engine.mark_overdue().await {
            tracing::warn!(%error, "cannot look for overdue procedure steps");
        }
        match engine.forget_waiting(retention).await {
            Ok(0) => {}
            Ok(forgotten) => {
                tracing::info!(forgotten, "forgot events no dossier named in time");
            }
            Err(error) => tracing::warn!(%error, "cannot forget what waited too long"),
        }
        match engine.forget_published(retention).await {
            Ok(0) => {}
            Ok(forgotten) => {
                tracing::info!(
                    forgotten,
                    "forgot what the engine published past the retention"
                );
            }
            Err(error) => tracing::warn!(%error, "cannot forget what the engine published"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = clock.sleep(every) => {}
        }
    }
}
