//! [`Access`]: the running hub's view of the access policy and the one place that enforces it.
//! It keeps the current [`Snapshot`] in a watch channel, polls the database's access generation
//! (a counter moved by triggers on every change of systems, credentials and rights) and reloads
//! when it moves, so that every hub process sees a revocation within one poll interval. Open
//! subscriptions watch the same channel and end when their credential or right goes.
//!
//! It must never answer "allowed" from a token it has not seen in the database, and never put a
//! token, only its hash, in memory, logs or errors.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::catalogue::AccessCatalogue;
use super::credentials::{TOKEN_PREFIX, hash};
use super::disclosure::FieldSet;
use super::policy::{
    AuthFailure, Caller, CredentialEntry, Denied, Direction, Resource, Right, Snapshot,
    SystemEntry, Target,
};
use crate::db::DbError;
use crate::domain::SystemId;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{AuthFailureLabels, DenialLabels};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Failed(#[from] AuthFailure),
    #[error("cannot read the access policy: {0}")]
    Unavailable(#[from] DbError),
}

/// Why an open subscription had to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawn {
    Credential(AuthFailure),
    Right(Denied),
}

pub struct Access {
    pool: Pool,
    catalogue: AccessCatalogue,
    current: watch::Sender<Arc<Snapshot>>,
    refresh_interval: Duration,
    metrics: Arc<Metrics>,
}

impl Access {
    /// Reads the policy once; the hub does not start without it.
    pub async fn load(
        pool: Pool,
        catalogue: AccessCatalogue,
        refresh_interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DbError> {
        let snapshot = read_snapshot(&pool).await?;
        Ok(Self {
            pool,
            catalogue,
            current: watch::Sender::new(Arc::new(snapshot)),
            refresh_interval,
            metrics,
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    /// Re-reads the policy when the database's generation moved.
    async fn refresh(&self) -> Result<(), DbError> {
        let generation: i64 = self
            .pool
            .get()
            .await?
            .query_one("SELECT generation FROM access_generation", &[])
            .await?
            .get(0);
        if generation == self.snapshot().generation {
            return Ok(());
        }
        let snapshot = read_snapshot(&self.pool).await?;
        tracing::info!(generation = snapshot.generation, "access policy reloaded");
        self.current.send_replace(Arc::new(snapshot));
        Ok(())
    }

    /// Polls the database every refresh interval until `shutdown`, reloading what changed.
    /// This task is the only writer of the snapshot.
    pub async fn keep_current(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.refresh_interval) => {}
            }
            if let Err(error) = self.refresh().await {
                // The last snapshot stays in force; a revocation waits for the database to answer.
                tracing::warn!(%error, "cannot refresh the access policy");
            }
        }
    }

    /// The caller `token` belongs to. Failures are logged (without the token) and counted.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let outcome = self.resolve(token).await;
        if let Err(AuthError::Failed(failure)) = &outcome {
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

    async fn resolve(&self, token: &str) -> Result<Caller, AuthError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(AuthFailure::Unknown.into());
        }
        let token_hash = hash(token);
        let mut changes = self.current.subscribe();
        let first = changes
            .borrow_and_update()
            .authenticate(&token_hash, Utc::now());
        if first != Err(AuthFailure::Unknown) {
            return first.map_err(AuthError::from);
        }
        // Perhaps issued a moment ago, by the CLI or another process: wait for the next reload
        // rather than query. A flood of made-up tokens thus costs no database work, only time.
        let _ = tokio::time::timeout(self.refresh_interval * 2, changes.changed()).await;
        Ok(self.snapshot().authenticate(&token_hash, Utc::now())?)
    }

    /// What the policy knows of `event_type`, if the catalogue has it.
    pub fn target<'a>(&'a self, event_type: &'a str) -> Option<Target<'a>> {
        self.catalogue
            .event_types
            .get(event_type)
            .map(|info| Target {
                event_type,
                topic: &info.topic,
                hub_only: info.hub_only,
            })
    }

    /// Checks that `caller` may act on `event_type` for `purpose`; a refusal is recorded (who
    /// tried what, when) and counted before it is returned. Unknown event types are the
    /// caller's to report: they are allowed here.
    pub async fn authorize(
        &self,
        caller: &Caller,
        direction: Direction,
        event_type: &str,
        purpose: &str,
    ) -> Result<(), Denied> {
        let Some(target) = self.target(event_type) else {
            return Ok(());
        };
        let decision = self
            .snapshot()
            .allows(&caller.system, direction, target, purpose)
            .map(|_| ());
        if let Err(denied) = &decision {
            self.record_denial(&caller.system, direction, event_type, purpose, denied)
                .await;
        }
        decision
    }

    /// Checks that `caller` may subscribe to `event_type` for `purpose` and answers which
    /// fields it may see; a refusal is recorded like any other.
    pub async fn authorize_subscription(
        &self,
        caller: &Caller,
        event_type: &str,
        purpose: &str,
    ) -> Result<Arc<FieldSet>, Denied> {
        self.authorize(caller, Direction::Subscribe, event_type, purpose)
            .await?;
        match self.catalogue.disclosures.fields(event_type, purpose) {
            Some(fields) => Ok(fields),
            None => {
                let denied = Denied {
                    code: "no_disclosure",
                    message: format!(
                        "no fields of {event_type} are declared for purpose {purpose} \
                         (schemas/access/disclosure.toml), so nothing can be delivered"
                    ),
                };
                self.record_denial(
                    &caller.system,
                    Direction::Subscribe,
                    event_type,
                    purpose,
                    &denied,
                )
                .await;
                Err(denied)
            }
        }
    }

    /// True when `caller` holds some right on `event_type` in `direction`, whatever the purpose:
    /// such a caller is told about a missing purpose by validation, not refused outright.
    pub fn has_any_right(&self, caller: &Caller, direction: Direction, event_type: &str) -> bool {
        self.target(event_type)
            .is_some_and(|target| self.snapshot().has_any(&caller.system, direction, target))
    }

    async fn record_denial(
        &self,
        system: &SystemId,
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
        tracing::info!(%system, action = %direction, resource, reason = denied.code, "access denied");
        // Whatever the caller sent, kept printable: operators read it in a terminal.
        let purpose = if super::is_purpose_code(purpose) {
            purpose.to_owned()
        } else {
            format!("{:?}", purpose.chars().take(63).collect::<String>())
        };
        let recorded = async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "INSERT INTO access_denial (system_id, action, resource, purpose, reason)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &system.as_str(),
                        &direction.as_str(),
                        &resource,
                        &purpose,
                        &denied.code,
                    ],
                )
                .await?;
            Ok::<_, DbError>(())
        };
        if let Err(error) = recorded.await {
            tracing::error!(%error, "cannot record an access denial");
        }
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
                if let Some(info) = &info {
                    let target = Target {
                        event_type: &event_type,
                        topic: &info.topic,
                        hub_only: info.hub_only,
                    };
                    if let Err(denied) =
                        snapshot.allows(&caller.system, Direction::Subscribe, target, &purpose)
                    {
                        return Withdrawn::Right(denied);
                    }
                }
                let expiry = snapshot
                    .expiry_of(caller.credential)
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

/// Reads systems, credentials and rights as of one moment.
async fn read_snapshot(pool: &Pool) -> Result<Snapshot, DbError> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let generation: i64 = tx
        .query_one("SELECT generation FROM access_generation", &[])
        .await?
        .get(0);
    let mut systems = HashMap::new();
    for row in tx
        .query(
            "SELECT id, operator, disabled_at IS NOT NULL FROM member_system",
            &[],
        )
        .await?
    {
        // Ids were parsed on the way in; a row that no longer parses grants nothing.
        if let Ok(id) = SystemId::parse(row.get(0)) {
            systems.insert(
                id,
                SystemEntry {
                    operator: row.get(1),
                    disabled: row.get(2),
                },
            );
        }
    }
    let mut credentials = HashMap::new();
    for row in tx
        .query(
            "SELECT id, system_id, token_hash, expires_at, revoked_at IS NOT NULL
             FROM system_credential",
            &[],
        )
        .await?
    {
        if let Ok(system) = SystemId::parse(row.get(1)) {
            credentials.insert(
                row.get::<_, String>(2),
                CredentialEntry {
                    id: row.get(0),
                    system,
                    expires_at: row.get(3),
                    revoked: row.get(4),
                },
            );
        }
    }
    let mut rights: HashMap<SystemId, Vec<Right>> = HashMap::new();
    for row in tx
        .query(
            "SELECT id, system_id, direction, resource_kind, resource, purposes, owner,
                    granted_by, granted_at
             FROM access_right WHERE revoked_at IS NULL",
            &[],
        )
        .await?
    {
        let parsed = (
            SystemId::parse(row.get(1)).ok(),
            Direction::parse(row.get(2)),
            Resource::from_parts(row.get(3), row.get(4)),
        );
        if let (Some(system), Some(direction), Some(resource)) = parsed {
            rights.entry(system.clone()).or_default().push(Right {
                id: row.get(0),
                system,
                direction,
                resource,
                purposes: row.get(5),
                owner: row.get(6),
                granted_by: row.get(7),
                granted_at: row.get(8),
            });
        }
    }
    tx.commit().await?;
    Ok(Snapshot {
        generation,
        credentials,
        systems,
        rights,
    })
}
