//! The http-sink kind's side effect: one HTTP call per event, carrying an idempotency key
//! derived from the event id so the external system can drop repeats (the runtime may repeat a
//! call after a crash; it never skips one). Answers are sorted into success, failures another
//! attempt may fix (unreachable, a dropped connection, timeout, 408/425/429, 5xx) and failures
//! it cannot (other 4xx, a request that cannot be built).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;

use super::effect::{Answer, CallError};
use super::manifest::{HttpTarget, SinkSpec};
use super::resilience::Breaker;
use crate::domain::Clock;

/// The header that carries the idempotency key (the IETF draft's name, which payment and
/// government APIs follow).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Answers longer than this are cut: a connector maps replies, it does not download files.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("http.auth: {0}")]
    Secret(String),
    #[error("http.checksum: {0}")]
    Checksum(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One connector's endpoint: the client, its secret, its breaker and its rate limit.
pub struct HttpSink {
    client: reqwest::Client,
    target: HttpTarget,
    bearer: Option<String>,
    /// The checksum's secret, read once.
    checksum_secret: Option<String>,
    limiter: Option<DefaultDirectRateLimiter>,
    pub breaker: Breaker,
    /// 4xx statuses that are answers (the refusal's), not failures.
    answers: Vec<u16>,
}

impl HttpSink {
    /// Reads the secret now: a missing one stops the connector with a message naming where it
    /// was looked for.
    pub fn new(
        target: &HttpTarget,
        spec: &SinkSpec,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SinkError> {
        let delivery = &spec.delivery;
        let bearer = target
            .bearer
            .as_ref()
            .map(|secret| secret.read().map_err(SinkError::Secret))
            .transpose()?;
        let checksum_secret = target
            .checksum
            .as_ref()
            .map(|c| c.secret.read().map_err(SinkError::Checksum))
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(target.timeout)
            .connect_timeout(target.timeout.min(Duration::from_secs(10)))
            .build()?;
        let limiter = delivery
            .rate_per_second
            .and_then(NonZeroU32::new)
            .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        Ok(Self {
            client,
            target: target.clone(),
            bearer,
            checksum_secret,
            limiter,
            breaker: Breaker::new(clock, delivery.breaker_failures, delivery.breaker_open),
            answers: spec
                .refusal
                .as_ref()
                .map(|r| r.statuses.clone())
                .unwrap_or_default(),
        })
    }

    /// The URL of one call: the target's, with `path` appended segment by segment.
    fn url(&self, path: Option<&[String]>) -> Result<reqwest::Url, CallError> {
        let mut url = reqwest::Url::parse(&self.target.url).map_err(|e| CallError {
            class: "Request".to_owned(),
            message: format!("http.url: {e}"),
            status: None,
            retryable: false,
        })?;
        if let Some(segments) = path
            && let Ok(mut parts) = url.path_segments_mut()
        {
            parts.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    /// The request body with its checksum field set, when the target asks for one.
    fn signed<'a>(&self, body: &'a Value) -> Result<std::borrow::Cow<'a, Value>, CallError> {
        let (Some(checksum), Some(secret)) = (&self.target.checksum, &self.checksum_secret) else {
            return Ok(std::borrow::Cow::Borrowed(body));
        };
        let refused = |message: String| CallError {
            class: "Request".to_owned(),
            message,
            status: None,
            retryable: false,
        };
        let signed = match checksum.over.apply(body) {
            Ok(Value::String(signed)) => signed,
            Ok(other) => {
                return Err(refused(format!(
                    "http.checksum.over must give a string, not {}",
                    super::mapping::json_kind(&other)
                )));
            }
            Err(e) => return Err(refused(format!("http.checksum.over: {e}"))),
        };
        let Value::Object(fields) = body else {
            return Err(refused(
                "http.checksum: the request must be a JSON object to carry a checksum".to_owned(),
            ));
        };
        let mut fields = fields.clone();
        fields.insert(
            checksum.field.clone(),
            Value::String(hmac_sha256_hex(secret, signed.as_bytes())),
        );
        Ok(std::borrow::Cow::Owned(Value::Object(fields)))
    }

    /// Waits for the breaker and the rate limit, then calls the endpoint once, at `path` below
    /// the target's URL when given.
    pub async fn call(
        &self,
        body: &Value,
        idempotency_key: &str,
        path: Option<&[String]>,
    ) -> Result<Answer, CallError> {
        let url = self.url(path)?;
        let body = self.signed(body)?;
        let permit = self.breaker.admit().await;
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let started = Instant::now();
        let mut request = self
            .client
            .request(self.target.method.clone(), url)
            .header(IDEMPOTENCY_KEY, idempotency_key);
        if self.target.method != reqwest::Method::GET {
            request = request.json(&body);
        }
        for (name, value) in &self.target.headers {
            request = request.header(name, value);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let outcome = match request.send().await {
            Ok(response) => read_answer(response, started, &self.answers).await,
            Err(error) => Err(transport_error(error)),
        };
        match &outcome {
            Ok(_) => permit.succeeded(),
            // The endpoint answered: it is up, whatever it thought of this event.
            Err(error) if !error.retryable => permit.succeeded(),
            Err(_) => permit.failed(),
        }
        outcome
    }
}

/// Hex HMAC-SHA256 of `data` under `secret`.
fn hmac_sha256_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// The endpoint's answer: a success, or a status of `answers` (a "no" the refusal reads), with
/// its body; any other status as a failure.
pub(super) async fn read_answer(
    mut response: reqwest::Response,
    started: Instant,
    answers: &[u16],
) -> Result<Answer, CallError> {
    let status = response.status();
    // Read in chunks up to the cap: an endless answer must not fill the hub's memory.
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(transport_error(e)),
        }
    }
    bytes.truncate(MAX_ANSWER_BYTES);
    let latency = started.elapsed();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status.is_success() || answers.contains(&status.as_u16()) {
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        return Ok(Answer {
            status: status.as_u16(),
            body,
            latency,
        });
    }
    let code = status.as_u16();
    // The answer's own words help the operator; they are cut short, as they may echo input.
    let said: String = text.chars().take(300).collect();
    Err(CallError {
        class: format!("HttpStatus{code}"),
        message: format!("the endpoint answered {status}: {said}"),
        status: Some(code),
        // 409 is not retried: national systems answer it for a conflict no retry resolves (a
        // birth registered already under another request); a repeat with the same key gets
        // the first answer, not 409.
        retryable: matches!(code, 408 | 425 | 429) || status.is_server_error(),
    })
}

pub(super) fn transport_error(error: reqwest::Error) -> CallError {
    let (class, retryable) = if error.is_timeout() {
        ("Timeout", true)
    } else if error.is_connect() {
        ("Connect", true)
    } else if error.is_builder() {
        // The request could not be made at all (a bad header value, say): no retry fixes it.
        ("Request", false)
    } else {
        ("Transport", true)
    };
    CallError {
        class: class.to_owned(),
        // Without the URL: it may carry credentials or a query string.
        message: error.without_url().to_string(),
        status: None,
        retryable,
    }
}
