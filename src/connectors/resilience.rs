//! How a connector treats an endpoint that fails: exponential backoff with jitter between
//! attempts (the `backon` crate computes the delays; the connector's clock waits them), and a
//! circuit breaker per endpoint that stops calling after repeated failures and lets one probe
//! through once its open period ends. Both read the injectable clock, so tests move time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::manifest::DeliveryPolicy;
use crate::domain::Clock;

/// The delays between attempts of one event: `max_attempts - 1` of them, growing from
/// `initial_backoff` to `max_backoff`, each with random jitter so that many failed events do
/// not retry in lockstep.
pub fn backoff(policy: &DeliveryPolicy) -> impl Iterator<Item = Duration> + Send + use<> {
    ExponentialBuilder::default()
        .with_min_delay(policy.initial_backoff)
        .with_max_delay(policy.max_backoff)
        .with_max_times(policy.max_attempts.saturating_sub(1) as usize)
        .with_jitter()
        .build()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: DateTime<Utc>,
    },
    /// The open period ended: one call probes the endpoint; the others wait for its result.
    HalfOpen {
        probing: bool,
    },
}

/// A circuit breaker for one endpoint, shared by every event of the connector.
#[derive(Debug)]
pub struct Breaker {
    clock: Arc<dyn Clock>,
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
    changed: Notify,
}

impl Breaker {
    pub fn new(clock: Arc<dyn Clock>, threshold: u32, open_for: Duration) -> Self {
        Self {
            clock,
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `closed`, `open` or `half-open`, for status.
    pub fn describe(&self) -> &'static str {
        match *self.state() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half-open",
        }
    }

    /// Waits until a call may be made: at once while closed; while open, until the open
    /// period ends, then as the one probe or after it. The permit must be given back with
    /// [`Permit::succeeded`] or [`Permit::failed`]; a permit dropped unanswered (its call was
    /// cancelled) lets the next caller probe, so the breaker never waits on a call that is gone.
    pub async fn admit(&self) -> Permit<'_> {
        let probe = self.wait().await;
        Permit {
            breaker: self,
            probe,
            answered: false,
        }
    }

    /// Waits for leave to call; true when this call is the half-open breaker's probe.
    async fn wait(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            let wait = {
                let mut state = self.state();
                match *state {
                    State::Closed { .. } => return false,
                    State::Open { until } => {
                        let now = self.clock.now();
                        if now >= until {
                            *state = State::HalfOpen { probing: true };
                            return true;
                        }
                        Some((until - now).to_std().unwrap_or_default())
                    }
                    State::HalfOpen { probing: false } => {
                        *state = State::HalfOpen { probing: true };
                        return true;
                    }
                    State::HalfOpen { probing: true } => None,
                }
            };
            match wait {
                Some(duration) => {
                    tokio::select! {
                        () = self.clock.sleep(duration) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The endpoint answered: the breaker closes.
    fn success(&self) {
        *self.state() = State::Closed { failures: 0 };
        self.changed.notify_waiters();
    }

    /// The endpoint failed in a way another attempt might not (unreachable, timeout, 5xx).
    fn failure(&self) {
        let mut state = self.state();
        let open = State::Open {
            until: self.clock.now()
                + chrono::Duration::from_std(self.open_for).unwrap_or(chrono::Duration::MAX),
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            State::Closed { .. } | State::HalfOpen { .. } => open,
            // Calls admitted before it opened still report; the open period does not restart.
            State::Open { until } => State::Open { until },
        };
        drop(state);
        self.changed.notify_waiters();
    }
}

/// Leave to make one call.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// This call probes the half-open breaker.
    probe: bool,
    answered: bool,
}

impl Permit<'_> {
    pub fn succeeded(mut self) {
        self.answered = true;
        self.breaker.success();
    }

    pub fn failed(mut self) {
        self.answered = true;
        self.breaker.failure();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.answered || !self.probe {
            return;
        }
        let mut state = self.breaker.state();
        if *state == (State::HalfOpen { probing: true }) {
            *state = State::HalfOpen { probing: false };
        }
        drop(state);
        self.breaker.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ManualClock;

    #[tokio::test]
    async fn opens_after_the_threshold_and_lets_one_probe_through_after_the_open_period() {
        let clock = ManualClock::new(Utc::now());
        let breaker = Arc::new(Breaker::new(
            Arc::new(clock.clone()),
            3,
            Duration::from_secs(30),
        ));
        for _ in 0..2 {
            breaker.admit().await.failed();
        }
        assert_eq!(breaker.describe(), "closed");
        breaker.admit().await.failed();
        assert_eq!(breaker.describe(), "open");
        let (probe_tx, probe_rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = tokio::spawn({
            let breaker = breaker.clone();
            async move {
                let permit = breaker.admit().await;
                // Holds the probe until told, then answers.
                let _ = probe_rx.await;
                permit.succeeded();
            }
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(29));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "admitted while open");
        clock.advance(Duration::from_secs(1));
        while breaker.describe() != "half-open" {
            tokio::task::yield_now().await;
        }
        // A second caller waits for the probe's result.
        let second = tokio::spawn({
            let breaker = breaker.clone();
            async move { breaker.admit().await.succeeded() }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "two probes at once");
        probe_tx.send(()).unwrap();
        waiting.await.unwrap();
        second.await.unwrap();
        assert_eq!(breaker.describe(), "closed");
    }

    #[tokio::test]
    async fn a_probe_whose_call_is_cancelled_lets_the_next_caller_probe() {
        let clock = ManualClock::new(Utc::now());
        let breaker = Breaker::new(Arc::new(clock.clone()), 1, Duration::from_secs(5));
        breaker.admit().await.failed();
        clock.advance(Duration::from_secs(5));
        let probe = breaker.admit().await;
        drop(probe);
        let next = tokio::time::timeout(Duration::from_secs(5), breaker.admit()).await;
        assert!(next.is_ok(), "the breaker waited on a cancelled probe");
    }

    #[test]
    fn backoff_grows_to_its_cap_and_stops_at_the_attempt_budget() {
        let policy = DeliveryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            max_in_flight: 1,
            rate_per_second: None,
            breaker_failures: 1,
            breaker_open: Duration::ZERO,
            retry_statuses: Vec::new(),
        };
        let delays: Vec<Duration> = backoff(&policy).collect();
        assert_eq!(delays.len(), 5);
        // Jitter adds up to one more delay on top of each.
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(800)),
            "{delays:?}"
        );
    }
}
