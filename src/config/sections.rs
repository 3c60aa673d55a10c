//! The configuration's plain sections: where the hub listens, PostgreSQL, Kafka, the catalogue
//! folder and logging.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address of the gRPC API (EventService, health, reflection).
    pub listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// libpq-style URL, e.g. `postgres://lienthong@127.0.0.1:5432/lienthong`.
    pub url: String,
    pub pool_max_size: usize,
    /// How long a caller waits for a free connection.
    pub pool_wait_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` on every connection: no query may hang the hub.
    pub statement_timeout_ms: u64,
    /// CA certificate(s), PEM, that sign PostgreSQL's server certificate. When set, connections
    /// use TLS (rustls) and verify the server's name against `url`'s host; with
    /// `sslmode=require` in `url`, a server without TLS is refused.
    pub ca_file: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://lienthong@127.0.0.1:5432/lienthong".to_owned(),
            pool_max_size: 16,
            pool_wait_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 10_000,
            ca_file: None,
        }
    }
}

impl DatabaseConfig {
    pub fn pool_wait_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_wait_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Prepended to every topic name, so several environments (or test runs) share one cluster.
    pub topic_prefix: String,
    pub replication_factor: i32,
    /// How long a publish waits for the broker's acknowledgement before failing.
    pub produce_timeout_ms: u64,
    /// How long a subscription's fetch may wait at the broker for records
    /// (`fetch.wait.max.ms`, librdkafka's 500 by default). Apache Kafka answers a fetch as
    /// soon as records arrive, so there it only bounds an idle fetch. Tansu 0.6 sleeps through
    /// half of it, or all of it under 500 ms, even with records to give (`tansu-storage`
    /// `service/fetch.rs`): on the local broker one hop took a median of 371 ms at 500, 78 at
    /// 100 and 14 at 20. Lower there means faster hops for more broker work: measured on the
    /// demo, 50 instead of 500 took 10 dossiers from 1.5 s to 1.0 s (p50) and doubled Tansu's
    /// CPU, which cost 400 dossiers under load about a tenth of their pace (README, scene 18).
    pub fetch_wait_max_ms: u32,
    /// Extra librdkafka settings for every client (security.protocol, sasl.*, ssl.*, ...).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            topic_prefix: String::new(),
            replication_factor: 1,
            produce_timeout_ms: 30_000,
            fetch_wait_max_ms: 500,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The full name of a catalogue topic in this deployment.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemasConfig {
    /// The catalogue folder: `topics.toml`, `events/`, `reference/` and `access/`.
    pub dir: PathBuf,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("schemas"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// The manifests folder: one `<name>.toml` per external system, with `<name>.tests.json`.
    pub dir: PathBuf,
    /// Run the connectors in this process. Every process that runs them shares their work
    /// through Kafka consumer groups.
    pub enabled: bool,
    /// How often this process reads what operators set (paused, stopped) and reports status.
    pub refresh_interval_ms: u64,
    /// How long dead-lettered events are kept on their topic.
    pub dead_letter_retention_days: u32,
    /// How often this process re-reads the manifests; changed connectors restart, the others
    /// run on.
    pub reload_interval_ms: u64,
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("connectors"),
            enabled: true,
            refresh_interval_ms: 1_000,
            dead_letter_retention_days: 30,
            reload_interval_ms: 5_000,
        }
    }
}

impl ConnectorsConfig {
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_interval_ms.max(50))
    }

    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms.max(100))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProceduresConfig {
    /// Run the procedure engine in this process. Every process that runs it shares the work
    /// through Kafka consumer groups; PostgreSQL locks keep one dossier to one process at a time.
    pub enabled: bool,
    /// The member system the engine acts as; grant it the rights `src/procedures` lists.
    pub system: String,
    /// Unacknowledged events each of the engine's subscriptions (one per topic) may hold.
    pub max_in_flight: usize,
    /// Events the engine takes in at once, each in a transaction holding a connection of the
    /// pool: keep it well below `database.pool_max_size`. Each transaction spends most of its
    /// time waiting for its commit to reach the disk, so more of them overlap those waits: the
    /// bench's engine took 2 000 dossiers through at 60/s with 4, 91/s with 8, 86/s with 12.
    pub max_transactions: usize,
    /// Where the engine starts reading the first time: `earliest` (every dossier still on the
    /// topics) for a new hub, `latest` when turning the engine on for a hub that already
    /// carried dossiers, which would otherwise be taken in again as new.
    pub start_at: ProceduresStart,
    /// How often the outbox relay looks for events when nothing woke it.
    pub relay_interval_ms: u64,
    /// How often the engine looks for steps past their due time (and for what waited too
    /// long, below).
    pub deadline_interval_ms: u64,
    /// Days an event or document waits for a dossier to name it before its payload (personal
    /// data) is forgotten, and days the engine keeps what it published; their lines in the
    /// timeline stay. The topics keep records 30 days.
    pub waiting_retention_days: u32,
}

impl Default for ProceduresConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            system: "procedure-engine".to_owned(),
            max_in_flight: 256,
            max_transactions: 8,
            start_at: ProceduresStart::Earliest,
            relay_interval_ms: 500,
            deadline_interval_ms: 60_000,
            waiting_retention_days: 30,
        }
    }
}

/// The OpenLineage feed (src/audit/lineage_feed.rs): every transfer ledger row, once committed,
/// as an OpenLineage run event on a topic of its own and, when set, to an HTTP endpoint (a
/// Marquez or any OpenLineage HTTP receiver).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineageConfig {
    pub enabled: bool,
    /// The topic, under `kafka.topic_prefix`; the hub creates it.
    pub topic: String,
    /// Where each event is also POSTed, one per request (OpenLineage's HTTP transport), e.g.
    /// `http://marquez:5000/api/v1/lineage`.
    pub http_url: Option<String>,
    /// The namespace of the hub's jobs; one per deployment, e.g. `lienthong.dongnai`.
    pub namespace: String,
    /// Where the JSON Schema of the hub's own facets is published (schemas/lineage/facets.json):
    /// each custom facet's `_schemaURL` points into it.
    pub facets_schema_url: String,
    /// How often the feed looks for rows when the last look found none.
    pub interval_ms: u64,
}

impl Default for LineageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            topic: "lienthong.openlineage".to_owned(),
            http_url: None,
            namespace: "lienthong".to_owned(),
            facets_schema_url: "https://lienthong.local/schemas/lineage/facets.json".to_owned(),
            interval_ms: 1000,
        }
    }
}

impl LineageConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(10))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProceduresStart {
    Earliest,
    Latest,
}

impl ProceduresConfig {
    pub fn relay_interval(&self) -> Duration {
        Duration::from_millis(self.relay_interval_ms.max(10))
    }

    pub fn deadline_interval(&self) -> Duration {
        Duration::from_millis(self.deadline_interval_ms.max(100))
    }

    pub fn waiting_retention(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.waiting_retention_days.max(1)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `lienthong=debug,rdkafka=warn`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}
