//! [`Access`]: the running hub's view of the access policy and the one place that enforces it.
//! It keeps the current [`Snapshot`] in a watch channel, polls the database's access generation
//! (a counter moved by triggers on every change of systems, credentials and rights) and reloads
//! when it moves, so that every hub process sees a revocation within one poll interval. Open
//! subscriptions watch the same channel and end when their credential or right goes.
//!
//! It must never answer "allowed" from a token it has not seen in the database, nor for an
//! event type the catalogue does not know, and never hold a token, only its hash.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::catalogue::AccessCatalogue;
use super::credentials::{TOKEN_PREFIX, certificate_fingerprint, hash};
use super::denials::{DenialQueue, DenialRecorder, DenialRow};
use super::disclosure::FieldSet;
use super::load::{current_generation, read_snapshot};
use super::policy::{AuthFailure, Caller, Denied, Direction, Snapshot, Target};
use crate::db::DbError;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{AuthFailureLabels, DenialLabels};

/// Why an open subscription had to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawn {
    Credential(AuthFailure),
    Right(Denied),
}

/// How [`Access`] is set up.
pub struct AccessSettings {
    pub refresh_interval: Duration,
    /// How long refused attempts are kept.
    pub denial_retention: chrono::Duration,
}

pub struct Access {
    /// Connections of the access policy's own: a publish load that exhausts the main pool
    /// must not stop revocations from being read.
    pool: Pool,
    catalogue: AccessCatalogue,
    current: watch::Sender<Arc<Snapshot>>,
    refresh_interval: Duration,
    denials: DenialQueue,
    metrics: Arc<Metrics>,
}

impl Access {
    /// Reads the policy once (the hub does not start without it). The returned recorder
    /// writes refused attempts and must be run by the caller.
    pub async fn load(
        pool: Pool,
        catalogue: AccessCatalogue,
        settings: AccessSettings,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, DenialRecorder), DbError> {
        let snapshot = read_snapshot(&pool).await?;
        let (denials, recorder) =
            super::denials::queue(pool.clone(), settings.denial_retention, metrics.clone());
        let access = Self {
            pool,
            catalogue,
            current: watch::Sender::new(Arc::new(snapshot)),
            refresh_interval: settings.refresh_interval,
            denials,
            metrics,
        };
        Ok((access, recorder))
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    /// The generation of the policy this process enforces now.
    pub fn generation(&self) -> i64 {
        self.snapshot().generation
    }

    /// Waits until this process enforces every change committed before the call (at most a
    /// few refresh intervals); for tests and scripts that change rights, then act on them.
    pub async fn caught_up(&self) -> Result<(), DbError> {
        let target = current_generation(&self.pool).await?;
        let mut changes = self.current.subscribe();
        // The wait ends at shutdown too (the sender is gone): nothing to catch up with then.
        let _ = changes.wait_for(|s| s.generation >= target).await;
        Ok(())
    }

    /// Re-reads the policy when the database's generation moved.
    async fn refresh(&self) -> Result<(), DbError> {
        if current_generation(&self.pool).await? == self.generation() {
            return Ok(());
        }
        let snapshot = read_snapshot(&self.pool).await?;
        tracing::info!(generation = snapshot.generation, "access policy reloaded");
        self.current.send_replace(Arc::new(snapshot));
        Ok(())
    }

    /// Polls the database every refresh interval until `shutdown`, reloading what changed.
    /// This task is the only writer of the snapshot. While the database does not answer, the
    /// last snapshot stays in force: `lienthong_access_policy_age_seconds` shows for how long.
    pub async fn keep_current(self: Arc<Self>, shutdown: CancellationToken) {
        let mut checked = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.refresh_interval) => {}
            }
            match self.refresh().await {
                Ok(()) => checked = Instant::now(),
                Err(error) => tracing::warn!(%error, "cannot refresh the access policy"),
            }
            self.metrics
                .access_policy_age
                .set(checked.elapsed().as_secs_f64());
        }
    }

    /// The caller a call's credentials belong to: a bearer token, a client certificate (DER,
    /// over mutual TLS), or both, which must then name the same system. A certificate that is
    /// presented must be registered and valid. Failures are logged (without the token) and
    /// counted.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        certificate: Option<&[u8]>,
    ) -> Result<Caller, AuthFailure> {
        let outcome = self.resolve(token, certificate).await;
        if let Err(failure) = &outcome {
            tracing::warn!(reason = failure.code(), "authentication failed");
            self.metrics
                .authentication_failures
                .get_or_create(&AuthFailureLabels {
                    reason: failure.code().to_owned(),
                })
                .inc();
        }
        outcome
    }

    async fn resolve(
        &self,
        token: Option<&str>,
        certificate: Option<&[u8]>,
    ) -> Result<Caller, AuthFailure> {
        let by_certificate = match certificate {
            Some(der) => {
                let fingerprint = certificate_fingerprint(der);
                Some(
                    self.look_up(|s, now| s.authenticate_certificate(&fingerprint, now))
                        .await?,
                )
            }
            None => None,
        };
        let by_token = match token {
            Some(token) if token.starts_with(TOKEN_PREFIX) => {
                let token_hash = hash(token);
                Some(
                    self.look_up(|s, now| s.authenticate(&token_hash, now))
                        .await?,
                )
            }
            Some(_) => return Err(AuthFailure::Unknown),
            None => None,
        };
        match (by_token, by_certificate) {
            (Some(by_token), Some(by_certificate)) if by_token.system != by_certificate.system => {
                Err(AuthFailure::Mismatch)
            }
            (Some(by_token), Some(by_certificate)) => Ok(Caller {
                certificate: by_certificate.credential,
                ..by_token
            }),
            (Some(caller), None) | (None, Some(caller)) => Ok(caller),
            (None, None) => Err(AuthFailure::Unknown),
        }
    }

    /// Looks a credential up in the snapshot; if it is unknown, perhaps it was issued a moment
    /// ago by the CLI or another process: wait for the next reload rather than query. A flood
    /// of made-up credentials thus costs no database work, only time.
    async fn look_up(
        &self,
        find: impl Fn(&Snapshot, chrono::DateTime<Utc>) -> Result<Caller, AuthFailure>,
    ) -> Result<Caller, AuthFailure> {
        let mut changes = self.current.subscribe();
        let first = find(&changes.borrow_and_update(), Utc::now());
        if !matches!(
            first,
            Err(AuthFailure::Unknown | AuthFailure::UnknownCertificate)
        ) {
            return first;
        }
        let _ = tokio::time::timeout(self.refresh_interval * 2, changes.changed()).await;
        find(&self.snapshot(), Utc::now())
    }

    fn target<'a>(&'a self, event_type: &'a str) -> Option<Target<'a>> {
        self.catalogue
            .event_types
            .get(event_type)
            .map(|info| Target {
                event_type,
                topic: &info.topic,
                hub_only: info.hub_only,
            })
    }

    /// Checks that `caller`, with a credential still valid now, may act on `event_type` for
    /// `purpose`. A refusal is counted and queued for the record before it is returned.
    pub fn authorize(
        &self,
        caller: &Caller,
        direction: Direction,
        event_type: &str,
        purpose: &str,
    ) -> Result<(), Denied> {
        let decision = self
            .snapshot()
            .check(
                caller,
                direction,
                event_type,
                self.target(event_type),
                purpose,
                Utc::now(),
            )
            .map(|_| ());
        if let Err(denied) = &decision {
            self.record_denial(caller, direction, event_type, purpose, denied);
        }
        decision
    }

    /// Checks that `caller` may subscribe to `event_type` for `purpose` and answers which
    /// fields it may see; a refusal is recorded like any other.
    pub fn authorize_subscription(
        &self,
        caller: &Caller,
        event_type: &str,
        purpose: &str,
    ) -> Result<Arc<FieldSet>, Denied> {
        self.authorize(caller, Direction::Subscribe, event_type, purpose)?;
        self.catalogue
            .disclosures
            .fields(event_type, purpose)
            .ok_or_else(|| {
                let denied = Denied {
                    code: "no_disclosure",
                    message: format!(
                        "no fields of {event_type} are declared for purpose {purpose} \
                         (schemas/access/disclosure.toml), so nothing can be delivered"
                    ),
                };
                self.record_denial(caller, Direction::Subscribe, event_type, purpose, &denied);
                denied
            })
    }

    /// True when `caller` (with a valid credential) holds some right on `event_type` in
    /// `direction`, whatever the purpose: such a caller is told about a missing purpose by
    /// validation, not refused outright.
    pub fn has_any_right(&self, caller: &Caller, direction: Direction, event_type: &str) -> bool {
        let snapshot = self.snapshot();
        snapshot.still_valid(caller, Utc::now()).is_ok()
            && self
                .target(event_type)
                .is_some_and(|target| snapshot.has_any(&caller.system, direction, target))
    }

    /// True when `caller` (with a valid credential) may publish some event type: only such a
    /// caller's refused events are worth keeping in the quarantine.
    pub fn publishes_anything(&self, caller: &Caller) -> bool {
        let snapshot = self.snapshot();
        snapshot.still_valid(caller, Utc::now()).is_ok()
            && snapshot.has_any_anywhere(&caller.system, Direction::Publish)
    }

    fn record_denial(
        &self,
        caller: &Caller,
        direction: Direction,
        resource: &str,
        purpose: &str,
        denied: &Denied,
    ) {
        self.metrics
            .access_denied
            .get_or_create(&DenialLabels {
                action: direction.as_str().to_owned(),
                reason: denied.code.to_owned(),
            })
            .inc();
        tracing::info!(system = %caller.system, action = %direction, reason = denied.code, "access denied");
        // Only catalogue names and purpose codes are stored: whatever else a caller typed there
        // might be personal data.
        self.denials.push(DenialRow {
            at: Utc::now(),
            system: caller.system.clone(),
            action: direction,
            resource: if self.target(resource).is_some() {
                resource.to_owned()
            } else {
                "(unknown event type)".to_owned()
            },
            purpose: if super::is_purpose_code(purpose) {
                purpose.to_owned()
            } else {
                "(not a purpose code)".to_owned()
            },
            reason: denied.code,
        });
    }

    /// Resolves when `caller` may no longer receive `event_type` for `purpose`: its credential
    /// was revoked or expired, its system disabled, or its right revoked. Never resolves while
    /// all of them stand.
    pub fn withdrawal(
        &self,
        caller: Caller,
        event_type: String,
        purpose: String,
    ) -> impl Future<Output = Withdrawn> + Send + 'static {
        let mut changes = self.current.subscribe();
        let info = self.catalogue.event_types.get(&event_type).cloned();
        async move {
            loop {
                let snapshot = changes.borrow_and_update().clone();
                let now = Utc::now();
                if let Err(failure) = snapshot.still_valid(&caller, now) {
                    return Withdrawn::Credential(failure);
                }
                let target = info.as_ref().map(|info| Target {
                    event_type: &event_type,
                    topic: &info.topic,
                    hub_only: info.hub_only,
                });
                if let Err(denied) = snapshot.check(
                    &caller,
                    Direction::Subscribe,
                    &event_type,
                    target,
                    &purpose,
                    now,
                ) {
                    return Withdrawn::Right(denied);
                }
                let expiry = snapshot
                    .expiry_of(&caller)
                    .and_then(|at| (at - now).to_std().ok());
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            // The hub is shutting down; the subscription ends with it.
                            std::future::pending::<()>().await;
                        }
                    }
                    () = sleep_or_forever(expiry) => {}
                }
            }
        }
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
