//! The OpenLineage feed: every transfer ledger row, once committed, becomes an OpenLineage run
//! event on the hub's lineage topic and, when configured, is POSTed to an OpenLineage HTTP
//! receiver (Marquez, or any catalogue that speaks it). Jobs are the connectors, the procedure
//! steps and the member systems' publishing and receiving; datasets are the topics, the
//! external endpoints, the member systems and the engine's state table; each event carries the
//! fields that crossed as column lineage, and the hub's facets: purpose, legal basis and the
//! audit log position that `lienthong audit prove` proves (`schemas/lineage/facets.json`).
//!
//! The feed reads the ledger after the fact, so the publish path never waits for it. It keeps
//! a place per sink in PostgreSQL (`lineage_feed`: the topic's, the HTTP receiver's, so one
//! that is down holds up only itself) and one hub process feeds at a time (an advisory lock held
//! by each round's transaction); a round sent but not recorded (a crash) is sent again: the
//! events are the same, with the same run ids, and OpenLineage consumers take a repeat as the
//! same run. A receiver configured later is sent the ledger from its start.

mod event;
mod roles;

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use rdkafka::message::OwnedHeaders;
use tokio_util::sync::CancellationToken;

pub use event::{Context, DatasetId, Deployment, RunEvent, run_event};
pub use roles::{Role, RunState, role};

use crate::audit::{TransferRow, transfer_rows_after};
use crate::bus::{ProduceError, Producer};
use crate::config::Config;
use crate::connectors::manifest::{Manifest, Spec, Target};
use crate::connectors::reload::ManifestSet;
use crate::db::DbError;
use crate::procedures::GROUPS;

/// Rows one round sends at most.
const BATCH: i64 = 500;
/// The advisory lock a feeding round holds.
const FEED_LOCK: i64 = 7_361_029_482_377;
/// The sinks' rows in `lineage_feed`: the topic's place, and the HTTP receiver's.
const TOPIC: &str = "openlineage";
const HTTP: &str = "openlineage-http";

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the lineage topic did not take an event: {0}")]
    Produce(#[from] ProduceError),
    #[error("an event does not serialise: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<tokio_postgres::Error> for FeedError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Db(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for FeedError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Db(error.into())
    }
}

/// What turns ledger rows into run events: this deployment, each event type's topic (full
/// names) and the connectors, for their endpoints.
pub struct Describer {
    pub deployment: Deployment,
    pub topics: HashMap<String, String>,
    pub manifests: ManifestSet,
}

impl Describer {
    /// The run events of `rows`, in their order; the procedure group of each row's dossier is
    /// read from the engine's table (or, for a dossier's intake, from its event type).
    pub async fn describe(
        &self,
        client: &impl GenericClient,
        rows: &[TransferRow],
    ) -> Result<Vec<RunEvent>, DbError> {
        let codes: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.dossier_code.as_deref())
            .collect();
        let groups: HashMap<String, String> = client
            .query(
                "SELECT dossier_code, procedure_group FROM procedure_instance
                 WHERE dossier_code = ANY($1)",
                &[&codes],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let manifests = self.manifests.borrow().clone();
        let endpoints: HashMap<&str, DatasetId> = manifests
            .iter()
            .filter_map(|m| Some((m.name.as_str(), endpoint(m)?)))
            .collect();
        Ok(rows
            .iter()
            .map(|row| {
                let event_type = row.event_type.as_deref();
                let definition = row.dossier_code.as_ref().and_then(|code| {
                    groups
                        .get(code)
                        .and_then(|group| GROUPS.iter().find(|g| g.group == group))
                        // The engine's taking in of a dossier can be described before the
                        // engine has committed the dossier's instance (the feed runs beside
                        // it, and the delivery's row comes first): the intake names its group.
                        .or_else(|| GROUPS.iter().find(|g| event_type == Some(g.intake)))
                });
                let published = self.deployment.engine_side(row).unwrap_or_default();
                let context = Context {
                    topic: event_type
                        .and_then(|t| self.topics.get(t))
                        .map(String::as_str),
                    endpoint: endpoints.get(row.target_system.as_str()).cloned(),
                    procedure: definition
                        .map(|d| (d.group, role(d, event_type.unwrap_or_default(), published))),
                };
                run_event(&self.deployment, row, &context)
            })
            .collect())
    }
}

/// The audit log position of the last row the feed sent to the topic.
pub async fn sent_up_to(client: &impl GenericClient) -> Result<i64, DbError> {
    Ok(client
        .query_one(
            "SELECT position FROM lineage_feed WHERE name = $1",
            &[&TOPIC],
        )
        .await?
        .get(0))
}

pub struct Feed {
    pub pool: Pool,
    pub producer: Producer,
    /// The lineage topic's full name.
    pub topic: String,
    /// Where each event is also POSTed.
    pub http_url: Option<String>,
    pub describer: Describer,
    pub interval: Duration,
}

impl Feed {
    pub async fn run(self, stop: CancellationToken) {
        let http = reqwest::Client::new();
        loop {
            let sent = match self.round(&http).await {
                Ok(sent) => sent,
                Err(error) => {
                    tracing::warn!(%error, "cannot feed OpenLineage; trying again");
                    0
                }
            };
            if stop.is_cancelled() {
                return;
            }
            if sent == 0 {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(self.interval) => {}
                }
            }
        }
    }

    /// Sends what follows each sink's place (the topic's, and the HTTP receiver's) and moves
    /// each place past what it took; the number of events sent, 0 when there was nothing to
    /// send, the receiver refused, or another process is feeding. Each sink keeps its own
    /// place, so a receiver that is down neither holds the topic up nor has the topic sent the
    /// same events again.
    pub async fn round(&self, http: &reqwest::Client) -> Result<usize, FeedError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FEED_LOCK])
            .await?
            .get(0);
        if !locked {
            return Ok(0);
        }
        let place = async |sink: &str| -> Result<i64, FeedError> {
            Ok(tx
                .query_one(
                    "SELECT position FROM lineage_feed WHERE name = $1 FOR UPDATE",
                    &[&sink],
                )
                .await?
                .get(0))
        };
        let topic_at = place(TOPIC).await?;
        let http_at = match &self.http_url {
            Some(url) => Some((url, place(HTTP).await?)),
            None => None,
        };
        let after = http_at.map_or(topic_at, |(_, at)| at.min(topic_at));
        let rows = transfer_rows_after(&tx, after, BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let events = self.describer.describe(&tx, &rows).await?;
        let mut in_flight = Vec::new();
        for (row, event) in rows.iter().zip(&events) {
            if row.position > topic_at {
                let body = serde_json::to_vec(event)?;
                in_flight.push(
                    self.producer
                        .enqueue(&self.topic, event.key(), &body, OwnedHeaders::new())
                        .await?,
                );
            }
        }
        let mut sent = in_flight.len();
        for record in in_flight {
            record.acknowledged().await?;
        }
        // The rows may all lie behind the topic's place (the receiver catching up).
        let last = rows.last().map_or(topic_at, |r| r.position);
        set_place(&tx, TOPIC, last.max(topic_at)).await?;
        if let Some((url, from)) = http_at {
            let mut at = from;
            for (row, event) in rows.iter().zip(&events).filter(|(r, _)| r.position > from) {
                let posted = http.post(url.as_str()).json(event).send().await;
                if let Err(error) = posted.and_then(reqwest::Response::error_for_status) {
                    tracing::warn!(%error, position = row.position,
                        "the OpenLineage receiver did not take an event; trying again");
                    break;
                }
                at = row.position;
                sent += 1;
            }
            set_place(&tx, HTTP, at).await?;
        }
        tx.commit().await?;
        Ok(sent)
    }
}

async fn set_place(client: &impl GenericClient, sink: &str, position: i64) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE lineage_feed SET position = $2, updated_at = now() WHERE name = $1",
            &[&sink, &position],
        )
        .await?;
    Ok(())
}

/// This deployment as the feed names it: the job namespace, the Kafka cluster by its first
/// bootstrap server (OpenLineage's `kafka://host:port`), and the engine's state table in its
/// database (`postgres://host:port`, `database.public.procedure_step`).
pub fn deployment(config: &Config) -> Deployment {
    let kafka = config
        .kafka
        .bootstrap_servers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim();
    // The URL was checked at start-up (`Config::check`).
    let database = config.database.url.parse::<tokio_postgres::Config>().ok();
    let host = database
        .as_ref()
        .and_then(|d| match d.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => Some(host.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = database
        .as_ref()
        .and_then(|d| d.get_ports().first().copied())
        .unwrap_or(5432);
    let name = database
        .as_ref()
        .and_then(|d| d.get_dbname().map(str::to_owned))
        .unwrap_or_else(|| "lienthong".to_owned());
    Deployment {
        namespace: config.lineage.namespace.clone(),
        facets_schema_url: config.lineage.facets_schema_url.clone(),
        kafka: format!("kafka://{kafka}"),
        engine_state: DatasetId {
            namespace: format!("postgres://{host}:{port}"),
            name: format!("{name}.public.procedure_step"),
        },
        engine_system: config.procedures.system.clone(),
    }
}

/// Where a connector sends, as a dataset: an HTTP sink's endpoint (its URL without
/// credentials or query), a PostgreSQL sink's table in its system.
fn endpoint(manifest: &Manifest) -> Option<DatasetId> {
    let Spec::Sink(sink) = &manifest.spec else {
        return None;
    };
    match &sink.target {
        Target::Http(http) => {
            let url = reqwest::Url::parse(&http.url).ok()?;
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            Some(DatasetId {
                namespace: format!("{}://{}{port}", url.scheme(), url.host_str()?),
                name: url.path().to_owned(),
            })
        }
        Target::Postgres(pg) => Some(DatasetId {
            namespace: format!("member-system://{}", manifest.system.as_str()),
            name: pg.table.clone(),
        }),
    }
}
