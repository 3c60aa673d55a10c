//! A sandbox's bad days, on purpose: added latency (log-normal, from a median and a 99th
//! percentile), a share of requests failed, outage windows, a rate limit. Set per system at
//! start (`sandbox serve --faults FILE`) or while running (`PUT /sandbox/v1/faults/{system}`),
//! and deterministic under a seed: the same seed and the same requests, in the same order, meet
//! the same faults, so a failing test can be run again as it was.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, http};
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_348;

/// A window in which every request of the system is answered 503.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// One system's faults. The default is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Median of the latency added to each request, in milliseconds (0: none).
    pub latency_p50_ms: u64,
    /// Its 99th percentile (at least the median).
    pub latency_p99_ms: u64,
    /// Share of requests failed without being handled, from 0 to 1.
    pub error_rate: f64,
    /// The status those failures are answered with (5xx, 408 or 429).
    pub error_status: u16,
    pub outages: Vec<Outage>,
    /// Requests per second above which 429 is answered.
    pub rate_per_second: Option<u32>,
    /// Callbacks (PayGov's payment notifications): the delay before one is sent, in ms.
    pub callback_delay_ms: u64,
    /// Share of callbacks sent twice.
    pub duplicate_callback_rate: f64,
    /// Share of callbacks never sent (the merchant must query the transaction).
    pub lost_callback_rate: f64,
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_p50_ms: 0,
            latency_p99_ms: 0,
            error_rate: 0.0,
            error_status: 503,
            outages: Vec::new(),
            rate_per_second: None,
            callback_delay_ms: 0,
            duplicate_callback_rate: 0.0,
            lost_callback_rate: 0.0,
            seed: 0,
        }
    }
}

impl Faults {
    /// The first thing wrong with these settings, naming the field.
    pub fn check(&self) -> Result<(), String> {
        for (field, rate) in [
            ("error_rate", self.error_rate),
            ("duplicate_callback_rate", self.duplicate_callback_rate),
            ("lost_callback_rate", self.lost_callback_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{field}: must be from 0 to 1"));
            }
        }
        if !matches!(self.error_status, 408 | 429 | 500..=599) {
            return Err("error_status: must be 5xx, 408 or 429".to_owned());
        }
        if self.latency_p99_ms < self.latency_p50_ms {
            return Err("latency_p99_ms: must be at least latency_p50_ms".to_owned());
        }
        if self.outages.iter().any(|o| o.until <= o.from) {
            return Err("outages: each must end after it starts".to_owned());
        }
        if self.rate_per_second == Some(0) {
            return Err("rate_per_second: must be above 0 (or absent)".to_owned());
        }
        Ok(())
    }
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Handled after this added delay.
    Handle(Duration),
    Outage,
    Limited,
    Fail(u16),
}

/// What becomes of one callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackPlan {
    pub delay: Duration,
    pub lost: bool,
    pub duplicate: bool,
}

/// One system's faults in force, with the random source they draw from.
struct Active {
    faults: Faults,
    random: Mutex<StdRng>,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Active {
    fn new(faults: Faults) -> Self {
        let limiter = faults
            .rate_per_second
            .and_then(NonZeroU32::new)
            .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        Self {
            random: Mutex::new(StdRng::seed_from_u64(faults.seed)),
            faults,
            limiter,
        }
    }

    fn callback(&self) -> CallbackPlan {
        let f = &self.faults;
        let (lost, duplicate) = {
            let mut random = self.random.lock().unwrap_or_else(PoisonError::into_inner);
            (random.random::<f64>(), random.random::<f64>())
        };
        CallbackPlan {
            delay: Duration::from_millis(f.callback_delay_ms),
            lost: lost < f.lost_callback_rate,
            duplicate: duplicate < f.duplicate_callback_rate,
        }
    }

    fn fate(&self, now: DateTime<Utc>) -> Fate {
        let f = &self.faults;
        // Every draw is made for every request, first, so the sequence depends only on the
        // seed and the number of requests, whatever the settings and the timing.
        let (fail, u1, u2) = {
            let mut random = self.random.lock().unwrap_or_else(PoisonError::into_inner);
            (
                random.random::<f64>(),
                random.random::<f64>(),
                random.random::<f64>(),
            )
        };
        if f.outages.iter().any(|o| o.from <= now && now < o.until) {
            return Fate::Outage;
        }
        if self.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            return Fate::Limited;
        }
        if fail < f.error_rate {
            return Fate::Fail(f.error_status);
        }
        if f.latency_p50_ms == 0 {
            return Fate::Handle(Duration::ZERO);
        }
        // Log-normal: ln(latency) is normal with the median's log as mean; its spread puts
        // the 99th percentile where asked. The normal draw is Box–Muller's.
        let mu = (f.latency_p50_ms as f64).ln();
        let sigma = ((f.latency_p99_ms as f64).ln() - mu) / Z99;
        let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let millis = (mu + sigma * z).exp().min(60_000.0);
        Fate::Handle(Duration::from_secs_f64(millis / 1000.0))
    }
}

/// The faults of every system of a sandbox process.
#[derive(Clone, Default)]
pub struct Controls {
    systems: Arc<RwLock<HashMap<String, Arc<Active>>>>,
}

impl Controls {
    /// Controls for `systems`, each with the faults `initial` names (none for the others).
    pub fn new(systems: &[&str], mut initial: HashMap<String, Faults>) -> Result<Self, String> {
        if let Some(unknown) = initial.keys().find(|s| !systems.contains(&s.as_str())) {
            return Err(format!(
                "{unknown}: no such sandbox (there are: {})",
                systems.join(", ")
            ));
        }
        let mut active = HashMap::new();
        for system in systems {
            let faults = initial.remove(*system).unwrap_or_default();
            faults.check().map_err(|e| format!("{system}.{e}"))?;
            active.insert((*system).to_owned(), Arc::new(Active::new(faults)));
        }
        Ok(Self {
            systems: Arc::new(RwLock::new(active)),
        })
    }

    fn get(&self, system: &str) -> Option<Arc<Active>> {
        self.systems
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(system)
            .cloned()
    }

    /// Replaces `system`'s faults (its random source starts again from the seed).
    pub fn set(&self, system: &str, faults: Faults) -> Result<(), String> {
        faults.check()?;
        let mut systems = self.systems.write().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = systems.get_mut(system) else {
            return Err(format!("{system}: no such sandbox"));
        };
        *slot = Arc::new(Active::new(faults));
        Ok(())
    }

    /// Every system's faults.
    pub fn all(&self) -> HashMap<String, Faults> {
        self.systems
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(system, active)| (system.clone(), active.faults.clone()))
            .collect()
    }

    /// What becomes of `system`'s next callback.
    pub fn callback(&self, system: &str) -> CallbackPlan {
        self.get(system).map_or(
            CallbackPlan {
                delay: Duration::ZERO,
                lost: false,
                duplicate: false,
            },
            |active| active.callback(),
        )
    }

    /// What happens to the next request of `system`.
    pub fn fate(&self, system: &str) -> Fate {
        self.get(system)
            .map_or(Fate::Handle(Duration::ZERO), |active| {
                active.fate(Utc::now())
            })
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (status, Json(json!({"error": code, "message": message}))).into_response();
    if matches!(status.as_u16(), 503 | 429) {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// Middleware: applies `system`'s faults before the request reaches its handler.
pub async fn apply(
    State((controls, system)): State<(Controls, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    match controls.fate(system) {
        Fate::Handle(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            next.run(request).await
        }
        Fate::Outage => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "outage",
            "the system is down for maintenance (sandbox outage window)",
        ),
        Fate::Limited => refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; slow down",
        ),
        Fate::Fail(status) => refusal(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "injected_failure",
            "a failure injected by the sandbox's fault controls",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fates(faults: &Faults, count: usize) -> Vec<Fate> {
        let active = Active::new(faults.clone());
        let now = Utc::now();
        (0..count).map(|_| active.fate(now)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let faults = Faults {
            error_rate: 0.3,
            latency_p50_ms: 20,
            latency_p99_ms: 200,
            seed: 7,
            ..Faults::default()
        };
        let first = fates(&faults, 1000);
        assert_eq!(first, fates(&faults, 1000));
        let failed = first
            .iter()
            .filter(|f| matches!(f, Fate::Fail(503)))
            .count();
        assert!((240..=360).contains(&failed), "about 30 %: {failed}");
        let mut delays: Vec<Duration> = first
            .iter()
            .filter_map(|f| match f {
                Fate::Handle(d) => Some(*d),
                _ => None,
            })
            .collect();
        delays.sort();
        let median = delays[delays.len() / 2].as_millis();
        assert!((15..=27).contains(&median), "median near 20 ms: {median}");
        let other = Faults {
            seed: 8,
            ..faults.clone()
        };
        assert_ne!(first, fates(&other, 1000), "another seed, other faults");
    }

    #[test]
    fn outages_and_bad_settings() {
        let now = Utc::now();
        let active = Active::new(Faults {
            outages: vec![Outage {
                from: now - chrono::Duration::seconds(1),
                until: now + chrono::Duration::seconds(60),
            }],
            ..Faults::default()
        });
        assert_eq!(active.fate(now), Fate::Outage);
        assert_eq!(
            active.fate(now + chrono::Duration::seconds(61)),
            Fate::Handle(Duration::ZERO)
        );
        let bad = Faults {
            error_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad.check().unwrap_err().starts_with("error_rate"));
        let refused = Controls::new(&["paygov"], HashMap::from([("paygov".into(), bad)]));
        assert!(refused.is_err_and(|e| e.starts_with("paygov.error_rate")));
    }
}
