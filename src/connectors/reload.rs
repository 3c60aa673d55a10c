//! Manifest changes without restarting the hub: every process re-reads `connectors/` at an
//! interval and, when a manifest was added, changed or removed, hands the new set to the
//! runtime (which restarts only the connectors whose file changed), the webhooks and the
//! admin. A set with any problem is not applied: the connectors keep running as they were and
//! the problems are logged, once, with file, line and field.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::manifest::{self, Manifest, ManifestErrors};
use crate::telemetry::Metrics;

/// The manifests in force, shared by every part that needs them.
pub type ManifestSet = watch::Receiver<Arc<Vec<Manifest>>>;

/// Whether an event type is in the catalogue.
pub type KnownEventTypes = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A set that never changes (the CLI's).
pub fn fixed(manifests: Vec<Manifest>) -> ManifestSet {
    watch::channel(Arc::new(manifests)).1
}

/// (name, fingerprint) of each manifest, sorted: equal when nothing changed.
fn identity(manifests: &[Manifest]) -> Vec<(String, [u8; 32])> {
    let mut identity: Vec<_> = manifests
        .iter()
        .map(|m| (m.name.clone(), m.fingerprint))
        .collect();
    identity.sort();
    identity
}

/// Re-reads `dir` every `every` until `shutdown`, publishing changed sets on `set`.
pub async fn follow_dir(
    dir: PathBuf,
    known: KnownEventTypes,
    every: Duration,
    set: watch::Sender<Arc<Vec<Manifest>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last_problems: Option<ManifestErrors> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let loaded = {
            let known = known.clone();
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || manifest::load_dir(&dir, &|t: &str| known(t))).await
        };
        let manifests = match loaded {
            Ok(Ok(manifests)) => manifests,
            Ok(Err(problems)) => {
                metrics
                    .connector_manifest_problems
                    .set(problems.0.len() as i64);
                if last_problems.as_ref() != Some(&problems) {
                    tracing::error!(problems = %problems, "connector manifests changed but have problems; the running connectors are kept as they were");
                    last_problems = Some(problems);
                }
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "reading the connector manifests panicked");
                continue;
            }
        };
        metrics.connector_manifest_problems.set(0);
        last_problems = None;
        let changed = identity(&set.borrow()) != identity(&manifests);
        if changed {
            let names: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
            tracing::info!(connectors = ?names, "connector manifests reloaded");
            set.send_replace(Arc::new(manifests));
        }
    }
}
