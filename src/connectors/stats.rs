//! What one process knows about its worker of a connector, kept in memory and reported to
//! PostgreSQL every few seconds (see `state::report`), where `connectors status` reads every
//! process's report at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use chrono::{DateTime, Utc};

use std::sync::Arc;

use super::state::WorkerReport;
use crate::bus::Assignment;

/// `event type: partition(lag) …` for each subscription, e.g.
/// `birth.dossier-submitted: 0(lag 0) 2(lag 5)`; `?` where the lag is not known yet.
fn partitions(assignments: &[(String, Arc<Assignment>)]) -> String {
    assignments
        .iter()
        .map(|(event_type, assignment)| {
            let held: Vec<String> = assignment
                .snapshot()
                .into_iter()
                .map(|(partition, lag)| match lag {
                    0.. => format!("{partition}(lag {lag})"),
                    _ => format!("{partition}(lag ?)"),
                })
                .collect();
            format!(
                "{event_type}: {}",
                if held.is_empty() {
                    "none".to_owned()
                } else {
                    held.join(" ")
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Call latencies kept for the percentiles: the most recent ones.
const LATENCY_WINDOW: usize = 512;

/// A worker's state as status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Starting,
    Running,
    /// A polling source's worker while another process reads the source.
    Standby,
    Paused,
    Stopped,
    /// Ended with an error; restarted after a backoff unless an operator stops it.
    Failed,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "STARTING",
            WorkerState::Running => "RUNNING",
            WorkerState::Standby => "STANDBY",
            WorkerState::Paused => "PAUSED",
            WorkerState::Stopped => "STOPPED",
            WorkerState::Failed => "FAILED",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: WorkerState,
    delivered: i64,
    failed_attempts: i64,
    dead_lettered: i64,
    restarts: i32,
    last_success_at: Option<DateTime<Utc>>,
    last_failure_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    latencies: VecDeque<Duration>,
    /// What the worker's subscriptions hold, per event type.
    assignments: Vec<(String, Arc<Assignment>)>,
    /// A polling source's position, or `standby`, shown instead of partitions.
    reading: Option<String>,
}

#[derive(Debug)]
pub struct Stats {
    inner: Mutex<Inner>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: WorkerState::Starting,
                delivered: 0,
                failed_attempts: 0,
                dead_lettered: 0,
                restarts: 0,
                last_success_at: None,
                last_failure_at: None,
                last_error: None,
                latencies: VecDeque::with_capacity(LATENCY_WINDOW),
                assignments: Vec::new(),
                reading: None,
            }),
        }
    }
}

impl Stats {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_state(&self, state: WorkerState) {
        self.inner().state = state;
    }

    /// The subscriptions the worker runs on now (none when it is not running).
    pub fn set_assignments(&self, assignments: Vec<(String, Arc<Assignment>)>) {
        self.inner().assignments = assignments;
    }

    /// Where a polling source reads now (`None` when it is not running).
    pub fn set_reading(&self, reading: Option<String>) {
        self.inner().reading = reading;
    }

    pub fn delivered(&self, at: DateTime<Utc>, latency: Duration) {
        let mut inner = self.inner();
        inner.delivered += 1;
        inner.last_success_at = Some(at);
        if inner.latencies.len() == LATENCY_WINDOW {
            inner.latencies.pop_front();
        }
        inner.latencies.push_back(latency);
    }

    pub fn failed_attempt(&self, at: DateTime<Utc>, error: &str) {
        let mut inner = self.inner();
        inner.failed_attempts += 1;
        inner.last_failure_at = Some(at);
        inner.last_error = Some(error.to_owned());
    }

    pub fn dead_lettered(&self) {
        self.inner().dead_lettered += 1;
    }

    /// The worker ended with `error`; it will be restarted.
    pub fn failed(&self, at: DateTime<Utc>, error: &str) {
        let mut inner = self.inner();
        inner.state = WorkerState::Failed;
        inner.last_failure_at = Some(at);
        inner.last_error = Some(error.to_owned());
    }

    pub fn restarted(&self) {
        self.inner().restarts += 1;
    }

    /// The report of this process (`process`) on connector `name`.
    pub fn report(&self, name: &str, process: &str, breaker: &str) -> WorkerReport {
        let inner = self.inner();
        let mut sorted: Vec<Duration> = inner.latencies.iter().copied().collect();
        sorted.sort_unstable();
        let percentile = |p: f64| {
            let last = sorted.len().checked_sub(1)?;
            let index = ((last as f64) * p).round() as usize;
            Some(sorted[index.min(last)].as_secs_f64() * 1000.0)
        };
        WorkerReport {
            name: name.to_owned(),
            process: process.to_owned(),
            state: inner.state.as_str().to_owned(),
            partitions: inner
                .reading
                .clone()
                .unwrap_or_else(|| partitions(&inner.assignments)),
            delivered: inner.delivered,
            failed_attempts: inner.failed_attempts,
            dead_lettered: inner.dead_lettered,
            restarts: inner.restarts,
            breaker: breaker.to_owned(),
            last_success_at: inner.last_success_at,
            last_failure_at: inner.last_failure_at,
            last_error: inner.last_error.clone(),
            latency_p50_ms: percentile(0.5),
            latency_p99_ms: percentile(0.99),
            manifest_version: String::new(),
            updated_at: None,
        }
    }
}
