//! `lienthong bench`'s latency figure: unary `Publish` calls started on a fixed schedule, at an
//! offered rate, whether or not earlier calls have been answered (an open loop, as many member
//! systems each sending when their clerks submit). Each call's latency runs from the moment it
//! was scheduled, not from when it was sent, so a generator that falls behind a slow hub shows
//! the queueing in the figure rather than hiding it (coordinated omission). It must never pace
//! itself on the hub's answers: that would measure a closed loop's latency instead.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tonic::transport::Channel;

use super::hub_client::client;
use crate::proto::PublishRequest;

/// HTTP/2 connections the calls are spread over, as several member systems' would be. One
/// connection carries at most the hub's `limits.concurrency_per_connection` calls at once (the
/// hub announces it as HTTP/2's maximum of concurrent streams); once the hub falls behind, calls
/// beyond it wait in the bench's client rather than in the hub. They are timed from their
/// schedule either way, so the figure holds; four connections only move that queue nearer the
/// hub.
const CONNECTIONS: usize = 4;

/// The slowest latency the histogram tells apart; slower calls count as this slow. Above the
/// hub's own request timeout (a minute by default), so no answered call is clipped.
const SLOWEST: Duration = Duration::from_secs(3600);

/// One run of the open loop: latency percentiles of the calls answered, from their scheduled
/// start; the rate the hub answered at; and the calls that failed, counted apart.
pub(super) struct Run {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Calls answered successfully per second, from the first scheduled start to the last
    /// answer.
    pub per_second: f64,
    pub errors: usize,
}

/// A member system's unary publishing at a fixed offered rate, on connections of its own.
pub(super) struct OpenLoop {
    connections: Vec<Channel>,
    token: String,
    requests: Arc<Vec<PublishRequest>>,
    offered: NonZeroU32,
}

impl OpenLoop {
    /// Opens the connections to the hub at `addr`; its calls publish `requests` in turn, as the
    /// system whose bearer token is `token`.
    pub async fn connect(
        addr: SocketAddr,
        token: &str,
        requests: Arc<Vec<PublishRequest>>,
        offered: NonZeroU32,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!requests.is_empty(), "the open loop has nothing to publish");
        let mut connections = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            connections.push(
                Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await
                    .with_context(|| format!("connecting to the bench's hub at {addr}"))?,
            );
        }
        Ok(Self {
            connections,
            token: token.to_owned(),
            requests,
            offered,
        })
    }

    /// Starts `calls` unary `Publish` calls at the offered rate and waits for every answer.
    pub async fn run(&self, calls: usize) -> anyhow::Result<Run> {
        let rate = f64::from(self.offered.get());
        let mut in_flight = JoinSet::new();
        let mut tally = Tally::new()?;
        let started = Instant::now();
        for i in 0..calls {
            // The client is made before the call's time comes, so its making is not timed.
            let mut hub = client(
                self.connections[i % self.connections.len()].clone(),
                &self.token,
            )?;
            let request = self.requests[i % self.requests.len()].clone();
            // From the start rather than from the previous call, so rounding never accumulates.
            let scheduled = started + Duration::from_secs_f64(i as f64 / rate);
            // Answers already in are counted meanwhile, so finished calls do not pile up.
            while let Some(joined) = in_flight.try_join_next() {
                tally.add(joined)?;
            }
            // Tokio's timer counts whole milliseconds: calls start in small bursts each
            // millisecond, and up to one millisecond of waiting is in a call's latency.
            tokio::time::sleep_until(scheduled).await;
            in_flight.spawn(async move {
                let outcome = hub.publish(request).await;
                (outcome.map(drop), scheduled.elapsed())
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            tally.add(joined)?;
        }
        let elapsed = started.elapsed();
        if let Some(status) = &tally.first_error {
            // tonic's message for a failed connection is only "transport error": its causes
            // (h2's reason, the socket's) are in the error's sources.
            let causes: String =
                std::iter::successors(std::error::Error::source(status), |cause| cause.source())
                    .map(|cause| format!(": {cause}"))
                    .collect();
            eprintln!(
                "{} of {calls} unary Publish calls failed, the first with {:?}: {}{causes}",
                tally.errors,
                status.code(),
                status.message()
            );
        }
        let at = |quantile: f64| Duration::from_micros(tally.latencies.value_at_quantile(quantile));
        Ok(Run {
            p50: at(0.5),
            p99: at(0.99),
            max: Duration::from_micros(tally.latencies.max()),
            per_second: tally.latencies.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
            errors: tally.errors,
        })
    }
}

/// The answers of one run as they come in.
struct Tally {
    /// Microseconds from each answered call's scheduled start to its answer.
    latencies: Histogram<u64>,
    errors: usize,
    first_error: Option<tonic::Status>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        let slowest = u64::try_from(SLOWEST.as_micros()).unwrap_or(u64::MAX);
        Ok(Self {
            // Three significant digits: a 20 ms p99 is told apart to within 20 µs.
            latencies: Histogram::new_with_bounds(1, slowest, 3)
                .context("the latency histogram's bounds")?,
            errors: 0,
            first_error: None,
        })
    }

    fn add(
        &mut self,
        joined: Result<(Result<(), tonic::Status>, Duration), JoinError>,
    ) -> anyhow::Result<()> {
        let (outcome, latency) = joined.context("a unary Publish call of the bench")?;
        match outcome {
            Ok(()) => self
                .latencies
                .saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
            Err(status) => {
                self.errors += 1;
                self.first_error.get_or_insert(status);
            }
        }
        Ok(())
    }
}
