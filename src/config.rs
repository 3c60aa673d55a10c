//! The hub's configuration: one TOML file plus `LIENTHONG_*` environment overrides
//! (`LIENTHONG_DATABASE__URL` sets `database.url`). Loaded and checked once at start-up, so a bad
//! value stops the hub with a message naming the field, never later in the middle of work.
//! Secrets must never be printed: [`Config::redacted`] is the only way to show a configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration field `{field}`: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

/// The environment prefixes of the sections below: `LIENTHONG_<SECTION>__<FIELD>`.
const SECTIONS: [&str; 10] = [
    "access__",
    "tls__",
    "limits__",
    "quarantine__",
    "grpc__",
    "http__",
    "database__",
    "kafka__",
    "schemas__",
    "log__",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub access: AccessConfig,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub limits: LimitsConfig,
    pub quarantine: QuarantineConfig,
    pub schemas: SchemasConfig,
    pub log: LogConfig,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// How often each hub process asks PostgreSQL whether systems, tokens or rights changed: a
    /// revoked token stops working (open subscriptions included) within this interval.
    pub refresh_interval_ms: u64,
    /// How long refused attempts (`lienthong systems denials`) are kept.
    pub denial_retention_days: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            refresh_interval_ms: 1_000,
            denial_retention_days: 365,
        }
    }
}

impl AccessConfig {
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_interval_ms)
    }

    pub fn denial_retention(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.denial_retention_days))
    }
}

/// TLS on the hub's listeners. Without `cert_file` and `key_file` they are plain text, which is
/// for local development only (`config check` warns when such a listener is not on loopback).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The hub's certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// CA certificate(s), PEM, that sign member systems' client certificates: enables mutual
    /// TLS on the gRPC listener. A presented certificate must then be registered with
    /// `lienthong systems cert`.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse gRPC connections without a client certificate (otherwise a bearer token alone
    /// is enough).
    pub require_client_cert: bool,
    /// Serve HTTP (metrics, health, schema registry) over TLS as well (default when TLS is on).
    pub http: Option<bool>,
}

impl TlsConfig {
    /// True when the listeners serve TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// True when the HTTP listener serves TLS.
    pub fn http_enabled(&self) -> bool {
        self.enabled() && self.http.unwrap_or(true)
    }
}

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

/// Limits that keep one member system from hurting the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// gRPC calls per second per member system (every call, subscriptions included)...
    pub calls_per_second: NonZeroU32,
    /// ...with bursts up to this many.
    pub call_burst: NonZeroU32,
    /// Published events per second per member system (a batch counts each event)...
    pub events_per_second: NonZeroU32,
    /// ...with bursts up to this many.
    pub event_burst: NonZeroU32,
    /// Largest gRPC message the hub reads (one event, or one delivery it sends).
    pub max_message_bytes: usize,
    /// Longest a call (a PublishBatch included) may take before it is answered
    /// DEADLINE_EXCEEDED; longer than `kafka.produce_timeout_ms`.
    pub request_timeout_ms: u64,
    /// Calls one client connection may have in progress at once.
    pub concurrency_per_connection: usize,
    /// Payload bytes a subscription may hold unacknowledged before its stream pauses.
    pub subscription_buffer_bytes: usize,
    /// Events one `PublishBatch` call publishes; further ones are answered, not published.
    pub max_batch_events: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        Self {
            calls_per_second: n(500),
            call_burst: n(1_000),
            events_per_second: n(50_000),
            event_burst: n(100_000),
            max_message_bytes: 1 << 20,
            request_timeout_ms: 60_000,
            concurrency_per_connection: 256,
            subscription_buffer_bytes: 16 << 20,
            max_batch_events: 10_000,
        }
    }
}

impl LimitsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineConfig {
    /// Refused events (which may hold personal data) are deleted after this many days.
    pub retention_days: u32,
    /// The key that seals refused events at rest: 32 bytes as 64 hexadecimal characters in a
    /// file (`openssl rand -hex 32`). Required to serve.
    pub key_file: Option<PathBuf>,
    /// The active key's name, stored with every row it seals.
    pub key_id: String,
    /// Keys rotated out, by name: rows they sealed can still be read until past retention.
    pub previous_keys: BTreeMap<String, PathBuf>,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            retention_days: 30,
            key_file: None,
            key_id: "k1".to_owned(),
            previous_keys: BTreeMap::new(),
        }
    }
}

impl QuarantineConfig {
    pub fn retention(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.retention_days))
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

impl Config {
    /// Defaults, then the file (when given and present), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid {
                    field: "--config",
                    problem: format!("the file {} does not exist", file.display()),
                });
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            .merge(
                Env::prefixed("LIENTHONG_")
                    // Other LIENTHONG_* variables (LIENTHONG_CONFIG, the CLI's) are not settings.
                    .filter(|key| {
                        SECTIONS
                            .iter()
                            .any(|s| key.as_str().to_ascii_lowercase().starts_with(s))
                    })
                    .split("__"),
            )
            .extract()
            .map_err(Box::new)?;
        config.check()?;
        Ok(config)
    }

    /// Rules that serde's types cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: &str| {
            Err(ConfigError::Invalid {
                field,
                problem: problem.to_owned(),
            })
        };
        if let Err(e) = self.database.url.parse::<tokio_postgres::Config>() {
            return invalid(
                "database.url",
                &format!("not a PostgreSQL URL ({e}); expected postgres://user@host:port/database"),
            );
        }
        if !(100..=60_000).contains(&self.access.refresh_interval_ms) {
            return invalid(
                "access.refresh_interval_ms",
                "must be 100 to 60000: revocations take effect within this interval",
            );
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid(
                "tls.cert_file",
                "tls.cert_file and tls.key_file go together: set both for TLS, or neither",
            );
        }
        if (self.tls.client_ca_file.is_some() || self.tls.require_client_cert)
            && !self.tls.enabled()
        {
            return invalid(
                "tls.client_ca_file",
                "mutual TLS needs TLS: set tls.cert_file and tls.key_file too",
            );
        }
        if self.tls.require_client_cert && self.tls.client_ca_file.is_none() {
            return invalid(
                "tls.require_client_cert",
                "needs tls.client_ca_file, the CA that signs member systems' certificates",
            );
        }
        for (field, path) in [
            ("tls.cert_file", &self.tls.cert_file),
            ("tls.key_file", &self.tls.key_file),
            ("tls.client_ca_file", &self.tls.client_ca_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return invalid(field, &format!("{} is not a readable file", path.display()));
            }
        }
        if !(1..=3650).contains(&self.access.denial_retention_days) {
            return invalid("access.denial_retention_days", "must be 1 to 3650");
        }
        if !(4096..=64 << 20).contains(&self.limits.max_message_bytes) {
            return invalid(
                "limits.max_message_bytes",
                "must be 4096 to 67108864 (a birth dossier is about 2 KB)",
            );
        }
        if self.limits.request_timeout_ms <= self.kafka.produce_timeout_ms {
            return invalid(
                "limits.request_timeout_ms",
                "must be longer than kafka.produce_timeout_ms: a call cut off while the broker \
                 is still answering loses the outcome of events already published",
            );
        }
        if self.limits.concurrency_per_connection == 0 {
            return invalid("limits.concurrency_per_connection", "must be above 0");
        }
        if !(1..=10_000).contains(&self.limits.max_batch_events) {
            return invalid(
                "limits.max_batch_events",
                "must be 1 to 10000 (the answer lists every event; use PublishStream for more)",
            );
        }
        if self.limits.subscription_buffer_bytes < self.limits.max_message_bytes {
            return invalid(
                "limits.subscription_buffer_bytes",
                "must be at least limits.max_message_bytes",
            );
        }
        if !(1..=3650).contains(&self.quarantine.retention_days) {
            return invalid(
                "quarantine.retention_days",
                "must be 1 to 3650: refused events hold personal data and cannot be kept forever",
            );
        }
        match self.database.url.parse::<tokio_postgres::Config>() {
            Ok(url)
                if url.get_ssl_mode() == tokio_postgres::config::SslMode::Require
                    && self.database.ca_file.is_none() =>
            {
                return invalid(
                    "database.ca_file",
                    "database.url asks for sslmode=require: set database.ca_file to the CA that \
                     signs PostgreSQL's certificate",
                );
            }
            _ => {}
        }
        if let Some(ca) = &self.database.ca_file
            && !ca.is_file()
        {
            return invalid(
                "database.ca_file",
                &format!("{} is not a readable file", ca.display()),
            );
        }
        if self.database.pool_max_size == 0 {
            return invalid("database.pool_max_size", "must be at least 1");
        }
        if self.database.statement_timeout_ms == 0 {
            return invalid(
                "database.statement_timeout_ms",
                "must be above 0 (0 would let a query run forever)",
            );
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return invalid(
                "kafka.bootstrap_servers",
                "must list at least one broker, e.g. 127.0.0.1:9092",
            );
        }
        if !self
            .kafka
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return invalid(
                "kafka.topic_prefix",
                "may only hold ASCII letters, digits, '.', '_' and '-' (Kafka topic rules)",
            );
        }
        if self.kafka.replication_factor < 1 {
            return invalid("kafka.replication_factor", "must be at least 1");
        }
        for key in ["bootstrap.servers", "enable.idempotence", "acks"] {
            if self.kafka.properties.contains_key(key) {
                return invalid(
                    "kafka.properties",
                    &format!("`{key}` is set by the hub itself and cannot be overridden"),
                );
            }
        }
        if !self.schemas.dir.join("topics.toml").is_file() {
            return invalid(
                "schemas.dir",
                &format!(
                    "{} has no topics.toml; point it at the repository's schemas/ folder",
                    self.schemas.dir.display()
                ),
            );
        }
        Ok(())
    }

    /// The effective security settings, one line each, as `config check` shows them.
    pub fn security_summary(&self) -> Vec<String> {
        let tls = &self.tls;
        let grpc = if !tls.enabled() {
            "plain text".to_owned()
        } else if tls.require_client_cert {
            "TLS, client certificate required (mutual TLS)".to_owned()
        } else if tls.client_ca_file.is_some() {
            "TLS, client certificate accepted (mutual TLS) or bearer token".to_owned()
        } else {
            "TLS, bearer token".to_owned()
        };
        let http = if tls.http_enabled() {
            "TLS"
        } else {
            "plain text"
        };
        let kafka = self
            .kafka
            .properties
            .get("security.protocol")
            .map_or("PLAINTEXT (librdkafka's default)", String::as_str);
        let database = if self.database.ca_file.is_some() {
            "TLS, server verified against database.ca_file"
        } else {
            "plain text"
        };
        vec![
            format!("PostgreSQL: {database}"),
            format!("gRPC {}: {grpc}", self.grpc.listen),
            format!("HTTP {}: {http}", self.http.listen),
            format!("Kafka: security.protocol = {kafka}"),
            format!(
                "access: changes take effect within {} ms; refusals kept {} days",
                self.access.refresh_interval_ms, self.access.denial_retention_days
            ),
            format!(
                "quarantine: refused events kept {} days",
                self.quarantine.retention_days
            ),
        ]
    }

    /// Settings that work but should not reach production.
    pub fn security_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (field, addr, tls) in [
            ("grpc.listen", self.grpc.listen, self.tls.enabled()),
            ("http.listen", self.http.listen, self.tls.http_enabled()),
        ] {
            if !tls && !addr.ip().is_loopback() {
                warnings.push(format!(
                    "{field} {addr} is reachable from other machines and serves plain text: \
                     set tls.cert_file and tls.key_file (plain text is for local development)"
                ));
            }
        }
        let kafka_plain = self
            .kafka
            .properties
            .get("security.protocol")
            .is_none_or(|p| p.eq_ignore_ascii_case("plaintext"));
        let kafka_local = self
            .kafka
            .bootstrap_servers
            .split(',')
            .all(|server| server.trim().starts_with("127.0.0.1:"));
        if kafka_plain && !kafka_local {
            warnings.push(
                "kafka.properties has no security.protocol: the broker is reached in plain text \
                 without authentication (set SASL_SSL with SCRAM, or SSL with a client certificate)"
                    .to_owned(),
            );
        }
        warnings
    }

    /// The configuration as TOML with every secret replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = redact_url_password(&shown.database.url);
        for (key, value) in &mut shown.kafka.properties {
            if is_secret_key(key) {
                *value = "***".to_owned();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "key"]
        .iter()
        .any(|word| key.contains(word) && !key.ends_with(".location"))
}

/// Replaces the password of `scheme://user:password@host/...` (and `password=` parameters).
fn redact_url_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            let user_info = &rest[..at];
            if let Some(colon) = user_info.find(':') {
                let start = scheme_end + 3 + colon + 1;
                let end = scheme_end + 3 + at;
                out.replace_range(start..end, "***");
            }
        }
    }
    if let Some(pos) = out.find("password=") {
        let start = pos + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://hub:s3cret@db:5432/x"),
            "postgres://hub:***@db:5432/x"
        );
        assert_eq!(
            redact_url_password("postgres://hub@db/x?password=abc&sslmode=require"),
            "postgres://hub@db/x?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url_password("postgres://hub@db/x"),
            "postgres://hub@db/x"
        );
    }

    #[test]
    fn secret_kafka_properties_are_redacted() {
        let mut config = Config::default();
        config
            .kafka
            .properties
            .insert("sasl.password".into(), "hunter2".into());
        config
            .kafka
            .properties
            .insert("ssl.key.location".into(), "/etc/hub.key".into());
        let shown = config.redacted();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("/etc/hub.key"), "{shown}");
    }

    #[test]
    fn a_zero_pool_names_the_field() {
        let mut config = Config::default();
        config.schemas.dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
        config.database.pool_max_size = 0;
        let err = config.check().unwrap_err().to_string();
        assert!(err.contains("database.pool_max_size"), "{err}");
    }
}
