//! What operators do to connectors, in one place for the CLI and the gRPC `ConnectorAdmin`
//! service: views joining the manifests with every process's report, and the actions (pause,
//! resume, stop, restart, replay), each recorded with who did it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;

use super::manifest::{Manifest, Origin, Spec};
use super::reload::ManifestSet;
use super::runtime::dead_letter_topic;
use super::source::position::{self, Position, ResetError, Stored};
use super::state::{self, DeadLetter, Desired, JournalEntry, WorkerReport};
use crate::bus::offsets::{self, OffsetsError, PartitionOffsets, ResetTo};
use crate::config::KafkaConfig;
use crate::db::DbError;
use crate::events::consumer_group;
use crate::registry::Catalogue;

/// A report older than this many refresh intervals comes from a process that is gone.
const STALE_INTERVALS: u32 = 5;
/// Never stale sooner than this, however short the interval.
const MIN_STALE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no connector {name:?} has a manifest (there are: {known})")]
    Unknown { name: String, known: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Kafka(#[from] OffsetsError),
    #[error(
        "{name} is {state}: stop it first (lienthong connectors stop {name}) and wait until \
         status shows no worker running, so no process reads while its offsets move"
    )]
    NotStopped { name: String, state: String },
    #[error(transparent)]
    Position(#[from] ResetError),
    #[error("{0}")]
    Invalid(String),
}

/// Where a sink's consumer groups are, per event type, or where a polling source is.
#[derive(Debug, Clone, Serialize)]
pub struct Offsets {
    pub name: String,
    pub groups: Vec<GroupOffsets>,
    pub position: Option<Stored>,
}

/// One event type's consumer group of a sink.
#[derive(Debug, Clone, Serialize)]
pub struct GroupOffsets {
    pub event_type: String,
    pub group: String,
    pub topic: String,
    pub partitions: Vec<PartitionOffsets>,
}

/// Where an offsets reset moves a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// A sink: the first record at or after this time.
    Time(DateTime<Utc>),
    /// A sink: this offset on every chosen partition. A source: this cursor (an outbox's id).
    Offset(String),
}

impl std::fmt::Display for ResetTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetTarget::Earliest => f.write_str("--to-earliest"),
            ResetTarget::Latest => f.write_str("--to-latest"),
            ResetTarget::Time(at) => write!(f, "--to-time {}", at.to_rfc3339()),
            ResetTarget::Offset(offset) => write!(f, "--to-offset {offset}"),
        }
    }
}

/// The full topic name of each event type of the catalogue.
pub fn event_topics(catalogue: &Catalogue, kafka: &KafkaConfig) -> HashMap<String, String> {
    catalogue
        .events
        .iter()
        .map(|e| (e.event_type.clone(), kafka.topic(&e.topic)))
        .collect()
}

/// One connector as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorView {
    pub name: String,
    pub kind: String,
    pub system: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub endpoint: String,
    pub reply_event_type: Option<String>,
    /// What an answer that says no is published as (a benefit refused).
    pub refusal_event_type: Option<String>,
    pub failure_event_type: Option<String>,
    pub desired: Desired,
    /// RUNNING, STARTING, PAUSED, STOPPED, FAILED (any process's worker failed) or UNASSIGNED
    /// (wanted running, but no process runs it).
    pub state: String,
    /// The live processes' reports.
    pub workers: Vec<WorkerReport>,
    /// Dead letters not yet replayed (failed events; parked ones are counted apart).
    pub dead_letters: usize,
    /// Events parked until their answer can be final (`reply.ask_again_at`): waiting, not
    /// failed.
    pub parked: usize,
    /// A polling source's stored position.
    pub position: Option<Stored>,
    pub dead_letter_topic: String,
}

pub struct Admin {
    pool: Pool,
    manifests: ManifestSet,
    kafka: KafkaConfig,
    /// The topic of each event type.
    topics: HashMap<String, String>,
    stale: chrono::Duration,
}

/// The state status shows: what operators want, unless a process's worker failed (a connector
/// is never shown RUNNING while one of its workers is FAILED).
fn overall(want: Desired, live: &[WorkerReport]) -> String {
    if live.iter().any(|w| w.state == "FAILED") {
        return "FAILED".to_owned();
    }
    match want {
        Desired::Running if live.is_empty() => "UNASSIGNED",
        // A polling source runs on one process; the others stand by.
        Desired::Running
            if live.iter().any(|w| w.state == "RUNNING")
                && live
                    .iter()
                    .all(|w| matches!(w.state.as_str(), "RUNNING" | "STANDBY")) =>
        {
            "RUNNING"
        }
        Desired::Running => "STARTING",
        Desired::Paused => "PAUSED",
        Desired::Stopped => "STOPPED",
    }
    .to_owned()
}

impl Admin {
    pub fn new(
        pool: Pool,
        manifests: ManifestSet,
        kafka: KafkaConfig,
        topics: HashMap<String, String>,
        refresh: Duration,
    ) -> Self {
        let stale = (refresh * STALE_INTERVALS).max(MIN_STALE);
        Self {
            pool,
            manifests,
            kafka,
            topics,
            stale: chrono::Duration::from_std(stale).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// The manifest of `name` in the set in force now.
    fn manifest(&self, name: &str) -> Result<Manifest, AdminError> {
        let manifests = self.manifests.borrow().clone();
        manifests
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| AdminError::Unknown {
                name: name.chars().take(64).collect(),
                known: manifests
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    async fn view(
        &self,
        manifest: &Manifest,
        desired: Desired,
        reports: &[WorkerReport],
    ) -> Result<ConnectorView, AdminError> {
        let now = Utc::now();
        let workers: Vec<WorkerReport> = reports
            .iter()
            .filter(|w| {
                w.name == manifest.name
                    && w.state != "GONE"
                    && w.updated_at.is_some_and(|at| now - at < self.stale)
            })
            .cloned()
            .collect();
        let sink = match &manifest.spec {
            Spec::Sink(sink) => Some(sink),
            Spec::WebhookSource(_) | Spec::Source(_) => None,
        };
        let position = match &manifest.spec {
            Spec::Source(_) => position::stored(&self.pool, &manifest.name).await?,
            Spec::Sink(_) | Spec::WebhookSource(_) => None,
        };
        let (dead_letters, parked) =
            state::dead_letters_waiting(&self.pool, &manifest.name).await?;
        Ok(ConnectorView {
            name: manifest.name.clone(),
            kind: manifest.kind.to_string(),
            system: manifest.system.to_string(),
            description: manifest.description.clone(),
            event_types: manifest.event_types(),
            endpoint: manifest.endpoint(),
            reply_event_type: sink.and_then(|s| s.reply.as_ref().map(|o| o.event_type.clone())),
            refusal_event_type: sink
                .and_then(|s| s.refusal.as_ref().map(|r| r.output.event_type.clone())),
            failure_event_type: sink.and_then(|s| s.failure.as_ref().map(|o| o.event_type.clone())),
            desired,
            // A webhook source has no worker: every process's HTTP listener takes its callbacks.
            state: match &manifest.spec {
                Spec::WebhookSource(_) => desired.as_str().to_uppercase(),
                Spec::Sink(_) | Spec::Source(_) => overall(desired, &workers),
            },
            workers,
            dead_letters,
            parked,
            position,
            dead_letter_topic: dead_letter_topic(&self.kafka, &manifest.name),
        })
    }

    pub async fn list(&self) -> Result<Vec<ConnectorView>, AdminError> {
        let wanted = state::wanted_states(&self.pool).await?;
        let reports = state::workers(&self.pool, None).await?;
        let manifests = self.manifests.borrow().clone();
        let mut views = Vec::with_capacity(manifests.len());
        for manifest in manifests.iter() {
            let desired = wanted
                .get(&manifest.name)
                .map(|w| w.desired)
                .unwrap_or_default();
            views.push(self.view(manifest, desired, &reports).await?);
        }
        Ok(views)
    }

    pub async fn status(&self, name: &str) -> Result<ConnectorView, AdminError> {
        let manifest = self.manifest(name)?;
        let desired = state::wanted_states(&self.pool)
            .await?
            .get(name)
            .map(|w| w.desired)
            .unwrap_or_default();
        let reports = state::workers(&self.pool, Some(name)).await?;
        self.view(&manifest, desired, &reports).await
    }

    /// Pauses, resumes or stops `name` on every process.
    pub async fn set(
        &self,
        name: &str,
        desired: Desired,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<(), AdminError> {
        self.manifest(name)?;
        state::set_desired(&self.pool, name, desired, actor, reason).await?;
        Ok(())
    }

    /// Restarts `name`'s workers on every process (only the failed ones when `only_failed`).
    pub async fn restart(
        &self,
        name: &str,
        only_failed: bool,
        actor: &str,
    ) -> Result<(), AdminError> {
        self.manifest(name)?;
        state::request_restart(&self.pool, name, only_failed, actor).await?;
        Ok(())
    }

    /// The connector's journal: operators' actions and refused callbacks, newest first.
    pub async fn journal(&self, name: &str, limit: u32) -> Result<Vec<JournalEntry>, AdminError> {
        self.manifest(name)?;
        Ok(state::journal(&self.pool, name, i64::from(limit)).await?)
    }

    pub async fn dead_letters(&self, name: &str, all: bool) -> Result<Vec<DeadLetter>, AdminError> {
        self.manifest(name)?;
        Ok(state::dead_letters(&self.pool, name, all).await?)
    }

    /// Asks for the replay of `ids` (every dead letter not replayed yet when `None`); returns
    /// how many will be replayed.
    pub async fn replay(
        &self,
        name: &str,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<u64, AdminError> {
        self.manifest(name)?;
        Ok(state::request_replay(&self.pool, name, ids, actor).await?)
    }

    /// The consumer groups of a sink (one per event type) with their topics.
    fn groups(&self, manifest: &Manifest) -> Vec<(String, String, String)> {
        manifest
            .event_types()
            .into_iter()
            .filter_map(|event_type| {
                let topic = self.topics.get(&event_type)?.clone();
                let group =
                    consumer_group(&self.kafka, &manifest.system, &event_type, &manifest.name);
                Some((event_type, group, topic))
            })
            .collect()
    }

    /// How far `name` has read: a sink's committed offsets, or a source's position.
    pub async fn offsets(&self, name: &str) -> Result<Offsets, AdminError> {
        let manifest = self.manifest(name)?;
        let mut groups = Vec::new();
        let mut stored = None;
        match &manifest.spec {
            Spec::Sink(_) => {
                for (event_type, group, topic) in self.groups(&manifest) {
                    let partitions = offsets::committed(&self.kafka, &group, &topic).await?;
                    groups.push(GroupOffsets {
                        event_type,
                        group,
                        topic,
                        partitions,
                    });
                }
            }
            Spec::Source(_) => stored = position::stored(&self.pool, name).await?,
            Spec::WebhookSource(_) => {}
        }
        Ok(Offsets {
            name: manifest.name,
            groups,
            position: stored,
        })
    }

    /// Moves where the stopped connector `name` reads next (on `partition` only, if given),
    /// recorded with who did it.
    pub async fn reset_offsets(
        &self,
        name: &str,
        to: &ResetTarget,
        partition: Option<i32>,
        actor: &str,
    ) -> Result<Offsets, AdminError> {
        let view = self.status(name).await?;
        let running = view
            .workers
            .iter()
            .find(|w| w.state != "STOPPED")
            .map(|w| format!("still {} on {}", w.state, w.process));
        if view.desired != Desired::Stopped || running.is_some() {
            return Err(AdminError::NotStopped {
                name: view.name,
                state: running.unwrap_or(view.state),
            });
        }
        let manifest = self.manifest(name)?;
        match &manifest.spec {
            Spec::Sink(_) => {
                let to = match to {
                    ResetTarget::Earliest => ResetTo::Earliest,
                    ResetTarget::Latest => ResetTo::Latest,
                    ResetTarget::Time(at) => ResetTo::Time(*at),
                    ResetTarget::Offset(offset) => {
                        ResetTo::Offset(offset.parse().map_err(|_| {
                            AdminError::Invalid(format!(
                                "--to-offset: {offset:?} is not a Kafka offset (a number)"
                            ))
                        })?)
                    }
                };
                for (_, group, topic) in self.groups(&manifest) {
                    offsets::reset(&self.kafka, &group, &topic, to, partition).await?;
                }
            }
            Spec::Source(source) => {
                let outbox = matches!(source.origin, Origin::Outbox(_));
                let position = match to {
                    // An outbox's beginning is explicit: no position at all would mean
                    // `start_at`, which may be the end.
                    ResetTarget::Earliest if outbox => Position {
                        cursor: Some(i64::MIN.to_string()),
                        skip: 0,
                    },
                    ResetTarget::Earliest => Position::default(),
                    ResetTarget::Offset(cursor) => {
                        if outbox && cursor.parse::<i64>().is_err() {
                            return Err(AdminError::Invalid(format!(
                                "--to-offset: {cursor:?} is not an id of the outbox (a number)"
                            )));
                        }
                        Position {
                            cursor: Some(cursor.clone()),
                            skip: 0,
                        }
                    }
                    ResetTarget::Latest | ResetTarget::Time(_) => {
                        return Err(AdminError::Invalid(
                            "a source's position is its origin's cursor: use --to-earliest or \
                             --to-offset CURSOR (an outbox's last published id)"
                                .to_owned(),
                        ));
                    }
                };
                if partition.is_some() {
                    return Err(AdminError::Invalid(
                        "--partition: a source has no partitions".to_owned(),
                    ));
                }
                position::reset(&self.pool, name, &position).await?;
            }
            Spec::WebhookSource(_) => {
                return Err(AdminError::Invalid(
                    "a webhook source has no position: it publishes what it is sent".to_owned(),
                ));
            }
        }
        let detail = match partition {
            Some(p) => format!("{to} --partition {p}"),
            None => to.to_string(),
        };
        state::record_action(&self.pool, name, "offsets reset", actor, Some(&detail)).await?;
        self.offsets(name).await
    }

    /// For each connector run by workers, the processes not yet running its manifest as it
    /// is in this admin's set (they re-read the directory at an interval).
    pub async fn rollout(&self) -> Result<Vec<Rollout>, AdminError> {
        let manifests = self.manifests.borrow().clone();
        let mut rollout = Vec::new();
        for view in self.list().await? {
            let Some(manifest) = manifests.iter().find(|m| m.name == view.name) else {
                continue;
            };
            if matches!(manifest.spec, Spec::WebhookSource(_)) {
                continue;
            }
            let version = manifest.version();
            rollout.push(Rollout {
                behind: view
                    .workers
                    .iter()
                    .filter(|w| w.manifest_version != version)
                    .map(|w| w.process.clone())
                    .collect(),
                processes: view.workers.len(),
                name: view.name,
                version,
            });
        }
        Ok(rollout)
    }
}

/// How far a manifest change has reached the hub processes.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    pub name: String,
    pub version: String,
    /// Live processes running the connector.
    pub processes: usize,
    /// Those of them still on another version.
    pub behind: Vec<String>,
}
