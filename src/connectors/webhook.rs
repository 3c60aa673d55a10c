//! The webhook-source kind: signed HTTP callbacks (a payment platform's notifications, say)
//! become events, each once. The HTTP API hands each callback here; the sender is checked
//! (HMAC-SHA256 of the raw body, or a shared token, compared in constant time), the body mapped
//! with the manifest's jq programs, and the event published as the connector's member system
//! through the same checks as any publish. A callback whose dedupe key was seen before is
//! answered as a duplicate and not published again; its event id is fixed on first receipt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use deadpool_postgres::Pool;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::manifest::{Manifest, Signature, Spec, WebhookSpec};
use super::reload::ManifestSet;
use super::state::{self, Desired};
use crate::access::Caller;
use crate::db::DbError;
use crate::domain::{Clock, DossierCode};
use crate::events::{Events, NewEvent, PublishError};
use crate::telemetry::Metrics;

/// How long the connectors' states read for one callback serve the next ones: a pause takes
/// effect within this, and a burst of callbacks costs one query per interval.
const STATES_FRESH: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a request holds a callback's key while it publishes.
const LEASE: std::time::Duration = std::time::Duration::from_secs(120);
/// How long the publish may take: well inside the lease.
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What became of a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Published {
        event_id: Uuid,
    },
    /// Seen before: nothing was published again.
    Duplicate {
        event_id: Uuid,
    },
}

/// Why a callback was not taken. The HTTP status tells the sender whether to send it again.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook connector {0:?}")]
    Unknown(String),
    #[error("the {0} header is missing or does not match")]
    Unauthenticated(String),
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// The callback cannot become a valid event; sending it again will not help.
    #[error("{0}")]
    Unprocessable(String),
    /// Paused or stopped, misconfigured, or the broker or database failed: send it again later.
    #[error("{0}")]
    Unavailable(String),
}

impl From<DbError> for WebhookError {
    fn from(error: DbError) -> Self {
        tracing::error!(%error, "webhook bookkeeping failed");
        WebhookError::Unavailable("the hub's database did not answer; send it again".to_owned())
    }
}

struct Hook {
    manifest: Manifest,
    spec: WebhookSpec,
    /// Read at start; a missing secret refuses every callback (503) until fixed.
    secret: Result<String, String>,
}

/// The webhook-source connectors by name.
type Hooks = Arc<HashMap<String, Hook>>;

/// What operators want of each connector, by name.
type States = Arc<HashMap<String, state::Wanted>>;

/// Every webhook-source connector of this hub.
pub struct Webhooks {
    manifests: ManifestSet,
    /// The hooks of the manifest set they were made from, remade when the set changes.
    hooks: Mutex<(Arc<Vec<Manifest>>, Hooks)>,
    /// What operators want of each connector, and when it was read.
    states: Mutex<Option<(std::time::Instant, States)>>,
    /// When each connector's journal last recorded a refused callback.
    refusals: Mutex<HashMap<String, std::time::Instant>>,
    events: Arc<Events>,
    pool: Pool,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

/// At most one journal entry per connector for refused callbacks in this time.
const REFUSALS_RECORDED_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// True when `presented` proves the sender knows `secret`.
fn verify(signature: Signature, secret: &str, body: &[u8], presented: &str) -> bool {
    // An empty secret proves nothing (and an empty token would match a missing header).
    if secret.is_empty() || presented.is_empty() {
        return false;
    }
    match signature {
        Signature::HmacSha256 => {
            let hex_text = presented.strip_prefix("sha256=").unwrap_or(presented);
            let Ok(expected) = hex::decode(hex_text.trim()) else {
                return false;
            };
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        }
        // Compared as digests, so the time taken says nothing about the secret.
        Signature::Token => {
            Sha256::digest(presented.as_bytes()) == Sha256::digest(secret.as_bytes())
        }
    }
}

/// The dedupe key a mapping gave: text, or a number as text.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The webhook-source manifests of `manifests`, with their secrets read.
fn hooks(manifests: &[Manifest]) -> HashMap<String, Hook> {
    manifests
        .iter()
        .filter_map(|manifest| match &manifest.spec {
            Spec::WebhookSource(spec) => {
                let secret = spec.secret.read();
                if let Err(error) = &secret {
                    tracing::error!(connector = %manifest.name, %error, "webhook secret missing: its callbacks are refused");
                }
                let hook = Hook {
                    manifest: manifest.clone(),
                    spec: spec.clone(),
                    secret,
                };
                Some((manifest.name.clone(), hook))
            }
            Spec::Sink(_) | Spec::Source(_) => None,
        })
        .collect()
}

impl Webhooks {
    pub fn new(
        manifests: ManifestSet,
        events: Arc<Events>,
        pool: Pool,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let set = manifests.borrow().clone();
        let hooks = Mutex::new((set.clone(), Arc::new(hooks(&set))));
        Self {
            manifests,
            hooks,
            states: Mutex::new(None),
            refusals: Mutex::new(HashMap::new()),
            events,
            pool,
            clock,
            metrics,
        }
    }

    /// The hooks of the manifest set in force now.
    fn current(&self) -> Hooks {
        let set = self.manifests.borrow().clone();
        let mut cached = self.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&cached.0, &set) {
            *cached = (set.clone(), Arc::new(hooks(&set)));
        }
        cached.1.clone()
    }

    /// What operators want of each connector, read at most every [`STATES_FRESH`].
    async fn states(&self) -> Result<States, DbError> {
        let cached = self
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|(read_at, _)| read_at.elapsed() < STATES_FRESH);
        if let Some((_, states)) = cached {
            return Ok(states);
        }
        let states = Arc::new(state::wanted_states(&self.pool).await?);
        *self.states.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((std::time::Instant::now(), states.clone()));
        Ok(states)
    }

    fn count(&self, name: &str, outcome: &str) {
        self.metrics.connector_event(name, outcome);
    }

    /// Records a callback refused for its signature in the connector's journal, where operators
    /// and auditors see it (`connectors history`). A flood of forgeries is recorded once a
    /// second; the metric counts every one.
    async fn record_refusal(&self, name: &str, header: &str, bytes: usize) {
        {
            let mut last = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
            let now = std::time::Instant::now();
            if last
                .get(name)
                .is_some_and(|at| now.duration_since(*at) < REFUSALS_RECORDED_EVERY)
            {
                return;
            }
            last.insert(name.to_owned(), now);
        }
        let detail =
            format!("{header} did not verify; the {bytes}-byte callback was not published");
        if let Err(error) = state::record_action(
            &self.pool,
            name,
            "callback-refused",
            "webhook",
            Some(&detail),
        )
        .await
        {
            tracing::warn!(connector = %name, %error, "a refused callback could not be recorded");
        }
        tracing::warn!(connector = %name, "callback refused: bad signature");
    }

    /// Takes one callback for connector `name`; `header` reads a request header.
    pub async fn receive(
        &self,
        name: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<Received, WebhookError> {
        let hooks = self.current();
        let hook = hooks
            .get(name)
            .ok_or_else(|| WebhookError::Unknown(name.chars().take(64).collect()))?;
        let secret = hook.secret.as_ref().map_err(|_| {
            WebhookError::Unavailable("the connector's secret is not configured".to_owned())
        })?;
        let presented = header(&hook.spec.header).unwrap_or_default();
        if !verify(hook.spec.signature, secret, body, &presented) {
            self.count(name, "unauthenticated");
            self.record_refusal(name, &hook.spec.header, body.len())
                .await;
            return Err(WebhookError::Unauthenticated(hook.spec.header.clone()));
        }
        let wanted = self.states().await?;
        if wanted
            .get(name)
            .is_some_and(|w| w.desired != Desired::Running)
        {
            return Err(WebhookError::Unavailable(
                "the connector is paused or stopped; send it again later".to_owned(),
            ));
        }
        let body: Value =
            serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
        let key = hook
            .spec
            .dedupe_key
            .apply(&body)
            .ok()
            .as_ref()
            .and_then(key_text)
            .ok_or_else(|| {
                WebhookError::Unprocessable(
                    "the dedupe key mapping gave no text for this callback".to_owned(),
                )
            })?;
        let correlation = match &hook.spec.correlation {
            None => None,
            Some(mapping) => {
                let code = mapping.apply(&body).map_err(|e| {
                    WebhookError::Unprocessable(format!("correlation mapping: {e}"))
                })?;
                let code = code.as_str().and_then(|c| DossierCode::parse(c).ok());
                Some(code.ok_or_else(|| {
                    WebhookError::Unprocessable(
                        "the correlation mapping gave no valid dossier code".to_owned(),
                    )
                })?)
            }
        };
        let (event_id, published) = self.remember(name, &key).await?;
        if published {
            self.count(name, "duplicate");
            return Ok(Received::Duplicate { event_id });
        }
        // One request publishes a key at a time: a repeat arriving meanwhile is asked to
        // come back, and then finds it published. The publish is bounded well inside the
        // lease, so a lease never lapses under a publish still running.
        let Some(token) = self.lease(name, &key).await? else {
            return Err(WebhookError::Unavailable(
                "the same callback is being taken now; send it again".to_owned(),
            ));
        };
        let published = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.publish(hook, name, event_id, correlation, body),
        )
        .await
        .unwrap_or_else(|_| {
            Err(WebhookError::Unavailable(
                "the hub took too long to publish the event; send it again".to_owned(),
            ))
        });
        match &published {
            Ok(_) => {
                // Published: the answer is yes even if the bookkeeping fails (a later repeat
                // would publish the same event id again, which consumers drop).
                if let Err(error) = self.mark_published(name, &key, token).await {
                    tracing::warn!(connector = %name, %error, "webhook published but not marked");
                }
            }
            Err(_) => self.release(name, &key, token).await?,
        }
        published
    }

    /// Publishes the callback's event (its dedupe key leased to this request).
    async fn publish(
        &self,
        hook: &Hook,
        name: &str,
        event_id: Uuid,
        correlation: Option<DossierCode>,
        body: Value,
    ) -> Result<Received, WebhookError> {
        let received_at = self.clock.now().with_timezone(&crate::domain::vietnam());
        let input = json!({"body": body, "received_at": received_at.to_rfc3339()});
        let payload = hook
            .spec
            .payload
            .apply(&input)
            .map_err(|e| WebhookError::Unprocessable(format!("payload mapping: {e}")))?;
        let event = NewEvent {
            event_type: hook.spec.event_type.clone(),
            event_id,
            occurred_at: received_at,
            correlation_id: correlation,
            causation_id: None,
            purpose: hook.manifest.purpose.clone(),
            legal_basis: hook.manifest.legal_basis.clone(),
            payload,
        };
        let caller = Caller::internal(hook.manifest.system.clone());
        match self.events.publish_event(&caller, event).await {
            Ok(_) => {}
            Err(PublishError::Rejected(rejected)) => {
                self.count(name, "refused");
                return Err(WebhookError::Unprocessable(format!(
                    "the event was refused ({})",
                    rejected.summary()
                )));
            }
            Err(error) => {
                tracing::error!(connector = %name, %error, "webhook event not published");
                return Err(WebhookError::Unavailable(
                    "the hub could not publish the event; send it again".to_owned(),
                ));
            }
        }
        self.count(name, "published");
        Ok(Received::Published { event_id })
    }

    /// The event id of `key` (chosen now if it is new) and whether it was published already.
    async fn remember(&self, name: &str, key: &str) -> Result<(Uuid, bool), DbError> {
        let hash = key_hash(key);
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO connector_webhook_seen (name, key_sha256, event_id)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (name, key_sha256) DO UPDATE
                     SET repeats = connector_webhook_seen.repeats + 1
                 RETURNING event_id, published_at IS NOT NULL",
                &[&name, &hash, &Uuid::now_v7()],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Takes the key for this request, unless another holds it; the lease lapses by itself.
    /// Returns the lease's token.
    async fn lease(&self, name: &str, key: &str) -> Result<Option<Uuid>, DbError> {
        let token = Uuid::now_v7();
        let leased = self
            .pool
            .get()
            .await?
            .execute(
                "UPDATE connector_webhook_seen
                 SET publishing_until = now() + make_interval(secs => $4), publishing_token = $3
                 WHERE name = $1 AND key_sha256 = $2 AND published_at IS NULL
                   AND (publishing_until IS NULL OR publishing_until < now())",
                &[&name, &key_hash(key), &token, &LEASE.as_secs_f64()],
            )
            .await?;
        Ok((leased == 1).then_some(token))
    }

    /// Gives the key back after a failed publish, so the sender's retry need not wait.
    async fn release(&self, name: &str, key: &str, token: Uuid) -> Result<(), DbError> {
        self.pool
            .get()
            .await?
            .execute(
                "UPDATE connector_webhook_seen SET publishing_until = NULL, publishing_token = NULL
                 WHERE name = $1 AND key_sha256 = $2 AND publishing_token = $3",
                &[&name, &key_hash(key), &token],
            )
            .await?;
        Ok(())
    }

    async fn mark_published(&self, name: &str, key: &str, token: Uuid) -> Result<(), DbError> {
        self.pool
            .get()
            .await?
            .execute(
                "UPDATE connector_webhook_seen
                 SET published_at = now(), publishing_until = NULL, publishing_token = NULL
                 WHERE name = $1 AND key_sha256 = $2 AND publishing_token = $3",
                &[&name, &key_hash(key), &token],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_against_the_raw_body() {
        let body = br#"{"transaction_id":"PG1"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(verify(Signature::HmacSha256, "s3cret", body, &good));
        assert!(verify(
            Signature::HmacSha256,
            "s3cret",
            body,
            &format!("sha256={good}")
        ));
        assert!(!verify(Signature::HmacSha256, "other", body, &good));
        assert!(!verify(Signature::HmacSha256, "s3cret", b"{}", &good));
        assert!(!verify(Signature::HmacSha256, "s3cret", body, "zz"));
        assert!(verify(Signature::Token, "t0ken", body, "t0ken"));
        assert!(!verify(Signature::Token, "t0ken", body, "t0ke"));
        assert!(
            !verify(Signature::Token, "", body, ""),
            "an empty secret proves nothing"
        );
    }
}
