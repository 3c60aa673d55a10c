//! What operators do to connectors, in one place for the CLI and the gRPC `ConnectorAdmin`
//! service: views joining the manifests with every process's report, and the actions (pause,
//! resume, stop, restart, replay), each recorded with who did it.

use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use serde::Serialize;

use super::manifest::{Manifest, Spec};
use super::reload::ManifestSet;
use super::runtime::dead_letter_topic;
use super::state::{self, DeadLetter, Desired, WorkerReport};
use crate::config::KafkaConfig;
use crate::db::DbError;

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
    pub failure_event_type: Option<String>,
    pub desired: Desired,
    /// RUNNING, STARTING, PAUSED, STOPPED, FAILED (any process's worker failed) or UNASSIGNED
    /// (wanted running, but no process runs it).
    pub state: String,
    /// The live processes' reports.
    pub workers: Vec<WorkerReport>,
    /// Dead letters not yet replayed.
    pub dead_letters: usize,
    pub dead_letter_topic: String,
}

pub struct Admin {
    pool: Pool,
    manifests: ManifestSet,
    kafka: KafkaConfig,
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
        Desired::Running if live.iter().all(|w| w.state == "RUNNING") => "RUNNING",
        Desired::Running => "STARTING",
        Desired::Paused => "PAUSED",
        Desired::Stopped => "STOPPED",
    }
    .to_owned()
}

impl Admin {
    pub fn new(pool: Pool, manifests: ManifestSet, kafka: KafkaConfig, refresh: Duration) -> Self {
        let stale = (refresh * STALE_INTERVALS).max(MIN_STALE);
        Self {
            pool,
            manifests,
            kafka,
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
            Spec::WebhookSource(_) => None,
        };
        let dead_letters = state::dead_letters_waiting(&self.pool, &manifest.name).await?;
        Ok(ConnectorView {
            name: manifest.name.clone(),
            kind: manifest.kind.to_string(),
            system: manifest.system.to_string(),
            description: manifest.description.clone(),
            event_types: manifest.event_types(),
            endpoint: manifest.endpoint(),
            reply_event_type: sink.and_then(|s| s.reply.as_ref().map(|o| o.event_type.clone())),
            failure_event_type: sink.and_then(|s| s.failure.as_ref().map(|o| o.event_type.clone())),
            desired,
            // A webhook source has no worker: every process's HTTP listener takes its callbacks.
            state: match &manifest.spec {
                Spec::WebhookSource(_) => desired.as_str().to_uppercase(),
                Spec::Sink(_) => overall(desired, &workers),
            },
            workers,
            dead_letters,
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
}
