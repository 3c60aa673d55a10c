//! A sink's side effect, whichever the target: an HTTP call (`http_sink`) or an upsert into
//! PostgreSQL (`postgres_sink`). The worker sees one interface: the call's answer, or a
//! failure classified as worth retrying or not.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::http_sink::HttpSink;
use super::manifest::{SinkSpec, Target};
use super::postgres_sink::PgSink;
use super::resilience::Breaker;
use crate::domain::Clock;

/// A failed call, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// Kafka Connect's `exception.class.name` equivalent: `Timeout`, `Connect`, `HttpStatus503`…
    pub class: String,
    pub message: String,
    pub status: Option<u16>,
    /// Another attempt might succeed.
    pub retryable: bool,
}

/// The external system's answer to a successful call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The body as JSON; a body that is not JSON becomes a string, an empty one `null`.
    pub body: Value,
    pub latency: Duration,
}

/// The side effect of one sink.
pub enum Effect {
    Http(Box<HttpSink>),
    Postgres(PgSink),
}

impl Effect {
    /// Reads the target's secret now: a missing one stops the connector with a message naming
    /// where it was looked for.
    pub fn new(spec: &SinkSpec, clock: Arc<dyn Clock>) -> Result<Self, String> {
        match &spec.target {
            Target::Http(target) => HttpSink::new(target, spec, clock)
                .map(|sink| Effect::Http(Box::new(sink)))
                .map_err(|e| e.to_string()),
            Target::Postgres(target) => {
                PgSink::new(target, &spec.delivery, clock).map(Effect::Postgres)
            }
        }
    }

    /// Applies the effect once for an event: `body` is the mapped request or row, `path` the
    /// event's path below an HTTP target's URL.
    pub async fn call(
        &self,
        body: &Value,
        idempotency_key: &str,
        path: Option<&[String]>,
    ) -> Result<Answer, CallError> {
        match self {
            Effect::Http(sink) => sink.call(body, idempotency_key, path).await,
            // The key columns make the write idempotent; no key is needed.
            Effect::Postgres(sink) => sink.write(body).await,
        }
    }

    pub fn breaker(&self) -> &Breaker {
        match self {
            Effect::Http(sink) => &sink.breaker,
            Effect::Postgres(sink) => &sink.breaker,
        }
    }
}
