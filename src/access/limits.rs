//! Per-system rate limits, so one member system (a runaway retry loop, a misconfigured batch
//! job) cannot take the hub's capacity from the others: calls per second for every gRPC call,
//! and events per second for publishing (a batch is one call but many events). Counted in
//! memory per hub process with governor's GCRA, which needs no background task.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::LimitsConfig;
use crate::domain::SystemId;

/// Over a limit: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
// Rounded up: a wait under a millisecond is not "retry after 0 ms".
#[error("{what} rate limit of this member system reached; retry after {} ms", .retry_after.as_micros().div_ceil(1000))]
pub struct Throttled {
    pub what: &'static str,
    pub retry_after: Duration,
}

/// RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo`, so clients back off by the right amount.
impl From<Throttled> for tonic::Status {
    fn from(throttled: Throttled) -> Self {
        use tonic_types::{ErrorDetails, StatusExt as _};
        tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            throttled.to_string(),
            ErrorDetails::with_retry_info(Some(throttled.retry_after)),
        )
    }
}

pub struct SystemLimits {
    calls: DefaultKeyedRateLimiter<SystemId>,
    events: DefaultKeyedRateLimiter<SystemId>,
    clock: DefaultClock,
}

fn quota(per_second: NonZeroU32, burst: NonZeroU32) -> Quota {
    Quota::per_second(per_second).allow_burst(burst)
}

impl SystemLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            calls: DefaultKeyedRateLimiter::keyed(quota(
                config.calls_per_second,
                config.call_burst,
            )),
            events: DefaultKeyedRateLimiter::keyed(quota(
                config.events_per_second,
                config.event_burst,
            )),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one call of `system`.
    pub fn call(&self, system: &SystemId) -> Result<(), Throttled> {
        self.calls.check_key(system).map_err(|not_until| Throttled {
            what: "call",
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    /// Counts one published event of `system`.
    pub fn event(&self, system: &SystemId) -> Result<(), Throttled> {
        self.events
            .check_key(system)
            .map_err(|not_until| Throttled {
                what: "publish",
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_system_has_its_own_budget() {
        let one = NonZeroU32::MIN;
        let limits = SystemLimits::new(&LimitsConfig {
            calls_per_second: one,
            call_burst: one,
            ..LimitsConfig::default()
        });
        let a = SystemId::parse("aa").expect("id");
        let b = SystemId::parse("bb").expect("id");
        assert!(limits.call(&a).is_ok());
        let throttled = limits.call(&a).expect_err("over the limit");
        assert!(throttled.retry_after <= Duration::from_secs(1));
        assert!(limits.call(&b).is_ok(), "another system is not affected");
    }
}
