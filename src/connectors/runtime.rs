//! Runs every connector this process has a manifest for. Each gets a supervisor that follows
//! what operators set in PostgreSQL (running, paused, stopped; read every `refresh_interval`),
//! starts its worker, and restarts a failed one with growing delays, counting the restarts.
//! Several hub processes run the same connectors; Kafka's consumer-group assignment spreads the
//! partitions between them, so no coordinator of our own is needed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use futures::future::BoxFuture;

use super::effect::Effect;
use super::manifest::{Manifest, SinkSpec, SourceSpec, Spec};
use super::reload::ManifestSet;
use super::source::SourceWorker;
use super::state::{self, Desired, Wanted};
use super::stats::{Stats, WorkerState};
use super::worker::Worker;
use crate::bus::{Producer, TopicError, TopicSpec, ensure_topics};
use crate::config::{ConnectorsConfig, KafkaConfig};
use crate::domain::Clock;
use crate::events::Events;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::ConnectorLabels;

/// The first delay before restarting a failed worker; it doubles up to [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A worker that ran this long before failing starts its restart delays over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a reload waits for a changed connector's worker to stop (its calls in progress get
/// a grace period of their own).
const SUPERVISOR_STOP: Duration = Duration::from_secs(30);
/// Partitions of each connector's dead-letter topic.
const DEAD_LETTER_PARTITIONS: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error("reading what operators set for the connectors: {0}")]
    Db(#[from] crate::db::DbError),
}

/// The dead-letter topic of connector `name`.
pub fn dead_letter_topic(kafka: &KafkaConfig, name: &str) -> String {
    kafka.topic(&format!("lienthong.dlq.{name}"))
}

/// What the runtime is built from.
pub struct RuntimeParts {
    pub manifests: ManifestSet,
    pub events: Arc<Events>,
    pub producer: Producer,
    pub pool: Pool,
    pub kafka: KafkaConfig,
    pub config: ConnectorsConfig,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

/// This process's name in status reports: host, process id and a random part (tests run
/// several hubs in one process).
fn process_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hub".to_owned());
    let random: u32 = rand::random();
    format!("{host}:{}:{:06x}", std::process::id(), random & 0xff_ffff)
}

/// What a supervised connector does.
enum Work {
    /// Consumes events (its partitions spread by Kafka) and applies them to a target.
    Sink(Arc<SinkSpec>),
    /// Reads an origin from a stored position (one process at a time, by lease).
    Source(Arc<SourceSpec>),
}

struct Supervised {
    manifest: Arc<Manifest>,
    work: Work,
    stats: Arc<Stats>,
    /// Kept across pauses (its breaker remembers the endpoint); dropped when stopped.
    sink: std::sync::Mutex<Option<Arc<Effect>>>,
}

/// A connector this process runs.
struct Running {
    fingerprint: [u8; 32],
    /// Cancelled to stop its supervisor (the manifest changed or went).
    stop: CancellationToken,
    /// Its supervisor, awaited before a replacement starts: two workers of one connector in
    /// one process would break the order of a dossier's events.
    handle: tokio::task::JoinHandle<()>,
    supervised: Arc<Supervised>,
}

/// Starts and stops supervisors as the manifests come and go.
struct Reconciler {
    parts: RuntimeParts,
    process: String,
    desired: watch::Receiver<HashMap<String, Wanted>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    current: HashMap<String, Running>,
    /// What the reporter reports: the connectors running now.
    reported: Arc<std::sync::Mutex<Vec<Arc<Supervised>>>>,
}

impl Reconciler {
    /// Brings the running connectors in line with `manifests`: only those whose file changed
    /// are restarted (keeping their counters); their dead-letter topics are made first.
    async fn apply(&mut self, manifests: &[Manifest]) -> Result<(), TopicError> {
        // Webhooks run where their traffic arrives (the HTTP API); sinks and polling sources
        // run here.
        let workers: Vec<&Manifest> = manifests
            .iter()
            .filter(|manifest| !matches!(manifest.spec, Spec::WebhookSource(_)))
            .collect();
        let retention =
            Duration::from_secs(u64::from(self.parts.config.dead_letter_retention_days) * 86_400);
        let new_topics: Vec<TopicSpec> = workers
            .iter()
            .filter(|m| matches!(m.spec, Spec::Sink(_)) && !self.current.contains_key(&m.name))
            .map(|m| TopicSpec {
                name: dead_letter_topic(&self.parts.kafka, &m.name),
                partitions: DEAD_LETTER_PARTITIONS,
                retention,
            })
            .collect();
        if !new_topics.is_empty() {
            ensure_topics(&self.parts.kafka, &new_topics).await?;
        }
        let gone: Vec<String> = self
            .current
            .iter()
            .filter(|(name, running)| {
                !workers
                    .iter()
                    .any(|m| m.name == **name && m.fingerprint == running.fingerprint)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut kept_stats = HashMap::new();
        for name in gone {
            if let Some(running) = self.current.remove(&name) {
                running.stop.cancel();
                if tokio::time::timeout(SUPERVISOR_STOP, running.handle)
                    .await
                    .is_err()
                {
                    tracing::error!(connector = %name, "the old worker did not stop in time; the new one starts anyway");
                }
                kept_stats.insert(name, running.supervised.stats.clone());
            }
        }
        for manifest in workers {
            if self.current.contains_key(&manifest.name) {
                continue;
            }
            let work = match &manifest.spec {
                Spec::Sink(spec) => Work::Sink(Arc::new((**spec).clone())),
                Spec::Source(spec) => Work::Source(Arc::new(spec.clone())),
                Spec::WebhookSource(_) => continue,
            };
            let supervised = Arc::new(Supervised {
                manifest: Arc::new(manifest.clone()),
                work,
                stats: kept_stats.remove(&manifest.name).unwrap_or_default(),
                sink: std::sync::Mutex::new(None),
            });
            let worker_parts = WorkerParts {
                events: self.parts.events.clone(),
                producer: self.parts.producer.clone(),
                pool: self.parts.pool.clone(),
                kafka: self.parts.kafka.clone(),
                clock: self.parts.clock.clone(),
                metrics: self.parts.metrics.clone(),
                dlq_topic: dead_letter_topic(&self.parts.kafka, &manifest.name),
                process: self.process.clone(),
                refresh: self.parts.config.refresh_interval(),
            };
            let stop = self.shutdown.child_token();
            let handle = self.tracker.spawn(supervise(
                supervised.clone(),
                worker_parts,
                self.desired.clone(),
                stop.clone(),
            ));
            self.current.insert(
                manifest.name.clone(),
                Running {
                    fingerprint: manifest.fingerprint,
                    stop,
                    handle,
                    supervised,
                },
            );
        }
        *self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self
            .current
            .values()
            .map(|r| r.supervised.clone())
            .collect();
        Ok(())
    }
}

/// Starts the runtime's tasks on `tracker`; they end when `shutdown` is cancelled. The
/// connectors of `parts.manifests` start now (a dead-letter topic that cannot be made stops
/// the start); later changes of the set are applied as they come.
pub async fn start(
    parts: RuntimeParts,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), RuntimeError> {
    let process = process_name();
    // What operators set must be known before anything runs: a stopped connector must not
    // start because PostgreSQL was slow to answer.
    let initial = state::wanted_states(&parts.pool).await?;
    let (desired_tx, desired) = watch::channel(initial);
    tracker.spawn(follow_desired(
        parts.pool.clone(),
        desired_tx,
        parts.config.refresh_interval(),
        shutdown.clone(),
    ));
    let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
    tracker.spawn(report(
        reported.clone(),
        parts.pool.clone(),
        process.clone(),
        parts.config.refresh_interval().max(Duration::from_secs(1)),
        shutdown.clone(),
    ));
    let mut manifests = parts.manifests.clone();
    let mut reconciler = Reconciler {
        parts,
        process,
        desired,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        current: HashMap::new(),
        reported,
    };
    let first = manifests.borrow_and_update().clone();
    reconciler.apply(&first).await?;
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = manifests.changed() => if changed.is_err() { return },
            }
            let set = manifests.borrow_and_update().clone();
            if let Err(error) = reconciler.apply(&set).await {
                tracing::error!(%error, "cannot apply the reloaded connector manifests");
            }
        }
    });
    Ok(())
}

/// Reads what operators want and hands changes to the supervisors.
async fn follow_desired(
    pool: Pool,
    desired: watch::Sender<HashMap<String, Wanted>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match state::wanted_states(&pool).await {
            Ok(now) => {
                desired.send_if_modified(|current| {
                    let changed = *current != now;
                    *current = now;
                    changed
                });
            }
            // The last known states stay in force until PostgreSQL answers again.
            Err(error) => tracing::warn!(%error, "cannot read the connectors' states"),
        }
    }
}

struct WorkerParts {
    events: Arc<Events>,
    producer: Producer,
    pool: Pool,
    kafka: KafkaConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    dlq_topic: String,
    process: String,
    refresh: Duration,
}

fn wanted(desired: &watch::Receiver<HashMap<String, Wanted>>, name: &str) -> Wanted {
    desired.borrow().get(name).copied().unwrap_or_default()
}

/// Why a running worker was stopped by its supervisor.
enum Told {
    /// Operators paused or stopped the connector.
    Hold,
    /// Operators asked for a restart.
    Restart,
}

async fn supervise(
    connector: Arc<Supervised>,
    parts: WorkerParts,
    mut desired: watch::Receiver<HashMap<String, Wanted>>,
    shutdown: CancellationToken,
) {
    let name = connector.manifest.name.clone();
    let mut restart_delay = FIRST_RESTART_DELAY;
    // Restarts asked for before this process started are not this process's to do.
    let mut restarts_seen = wanted(&desired, &name).restart_marks();
    while !shutdown.is_cancelled() {
        desired.mark_unchanged();
        let now = wanted(&desired, &name);
        if now.desired != Desired::Running {
            connector
                .stats
                .set_state(if now.desired == Desired::Paused {
                    WorkerState::Paused
                } else {
                    WorkerState::Stopped
                });
            if now.desired == Desired::Stopped {
                *connector
                    .sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            tokio::select! {
                changed = desired.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            restarts_seen = wanted(&desired, &name).restart_marks();
            continue;
        }
        connector.stats.set_state(WorkerState::Starting);
        let started = Instant::now();
        let stop = shutdown.child_token();
        let outcome = match worker(&connector, &parts, stop.clone()) {
            Ok(run) => run_once(&connector, run, stop, &mut desired, &mut restarts_seen).await,
            Err(error) => Err(error),
        };
        let error = match outcome {
            Ok(Some(Told::Restart)) => {
                restart(&connector, &parts, &name);
                restart_delay = FIRST_RESTART_DELAY;
                continue;
            }
            Ok(_) => continue,
            Err(error) => error,
        };
        if shutdown.is_cancelled() {
            return;
        }
        tracing::error!(connector = %name, %error, "connector worker failed; it will be restarted");
        connector.stats.failed(parts.clock.now(), &error);
        if started.elapsed() > HEALTHY_RUN {
            restart_delay = FIRST_RESTART_DELAY;
        }
        let delay = parts.clock.sleep(restart_delay);
        tokio::pin!(delay);
        // An operator's stop, pause or restart takes effect at once, not after the delay.
        loop {
            tokio::select! {
                () = &mut delay => break,
                changed = desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = wanted(&desired, &name);
                    if now.restart_marks() != restarts_seen || now.desired != Desired::Running {
                        restarts_seen = now.restart_marks();
                        restart_delay = FIRST_RESTART_DELAY;
                        break;
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
        restart_delay = (restart_delay * 2).min(MAX_RESTART_DELAY);
        restart(&connector, &parts, &name);
    }
}

/// Counts a restart; the endpoint's client and breaker are made afresh.
fn restart(connector: &Supervised, parts: &WorkerParts, name: &str) {
    *connector
        .sink
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    connector.stats.restarted();
    parts
        .metrics
        .connector_restarts
        .get_or_create(&ConnectorLabels {
            connector: name.to_owned(),
        })
        .inc();
}

/// The connector's endpoint, built on first use (reading its secret) and kept while it runs.
fn sink(
    connector: &Supervised,
    spec: &SinkSpec,
    parts: &WorkerParts,
) -> Result<Arc<Effect>, String> {
    let mut kept = connector
        .sink
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(sink) = kept.as_ref() {
        return Ok(sink.clone());
    }
    let sink = Arc::new(Effect::new(spec, parts.clock.clone())?);
    *kept = Some(sink.clone());
    Ok(sink)
}

/// The connector's worker, to run until `stop`, or the error that keeps it from starting.
fn worker(
    connector: &Supervised,
    parts: &WorkerParts,
    stop: CancellationToken,
) -> Result<BoxFuture<'static, Result<(), String>>, String> {
    match &connector.work {
        Work::Sink(spec) => {
            let worker = Arc::new(Worker {
                manifest: connector.manifest.clone(),
                spec: spec.clone(),
                events: parts.events.clone(),
                producer: parts.producer.clone(),
                pool: parts.pool.clone(),
                kafka: parts.kafka.clone(),
                sink: sink(connector, spec, parts)?,
                clock: parts.clock.clone(),
                stats: connector.stats.clone(),
                metrics: parts.metrics.clone(),
                dlq_topic: parts.dlq_topic.clone(),
                process: parts.process.clone(),
                refresh: parts.refresh,
            });
            Ok(Box::pin(async move {
                worker.run(stop).await.map_err(|e| e.to_string())
            }))
        }
        Work::Source(spec) => {
            let worker = SourceWorker {
                manifest: connector.manifest.clone(),
                spec: spec.clone(),
                events: parts.events.clone(),
                pool: parts.pool.clone(),
                clock: parts.clock.clone(),
                stats: connector.stats.clone(),
                metrics: parts.metrics.clone(),
                process: parts.process.clone(),
            };
            Ok(Box::pin(async move {
                let outcome = worker.run(stop).await.map_err(|e| e.to_string());
                worker.stats.set_reading(None);
                outcome
            }))
        }
    }
}

/// Runs the worker until it fails, the hub shuts down (`Ok(None)`) or operators pause, stop
/// or restart it (then `stop` is cancelled and the worker awaited).
async fn run_once(
    connector: &Supervised,
    run: BoxFuture<'static, Result<(), String>>,
    stop: CancellationToken,
    desired: &mut watch::Receiver<HashMap<String, Wanted>>,
    restarts_seen: &mut (i64, i64),
) -> Result<Option<Told>, String> {
    tokio::pin!(run);
    let name = connector.manifest.name.clone();
    let told = async {
        loop {
            if desired.changed().await.is_err() {
                return Told::Hold;
            }
            let now = wanted(desired, &name);
            if now.desired != Desired::Running {
                return Told::Hold;
            }
            // This worker runs: it has not failed, so `--only-failed` passes it by.
            let full = now.restarts != restarts_seen.0;
            *restarts_seen = now.restart_marks();
            if full {
                return Told::Restart;
            }
        }
    };
    tokio::select! {
        outcome = &mut run => outcome.map(|()| None),
        told = told => {
            stop.cancel();
            run.await?;
            Ok(Some(told))
        }
    }
}

/// Reports every connector's status to PostgreSQL, so `connectors status` sees all processes.
async fn report(
    connectors: Arc<std::sync::Mutex<Vec<Arc<Supervised>>>>,
    pool: Pool,
    process: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let now: Vec<Arc<Supervised>> = connectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for connector in &now {
            let breaker = connector
                .sink
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map_or("closed", |sink| sink.breaker().describe());
            let mut report = connector
                .stats
                .report(&connector.manifest.name, &process, breaker);
            report.manifest_version = connector.manifest.version();
            if stopping {
                report.state = "GONE".to_owned();
            }
            if let Err(error) = state::report(&pool, &report).await {
                tracing::warn!(%error, "cannot report connector status");
            }
        }
        if stopping {
            return;
        }
    }
}
