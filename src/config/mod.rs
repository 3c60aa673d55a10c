//! The hub's configuration: one TOML file plus `LIENTHONG_*` environment overrides
//! (`LIENTHONG_DATABASE__URL` sets `database.url`). Loaded and checked once at start-up, so a bad
//! value stops the hub with a message naming the field, never later in the middle of work.
//! Secrets must never be printed: [`Config::redacted`] is the only way to show a configuration.

use std::path::Path;

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
const SECTIONS: [&str; 13] = [
    "access__",
    "audit__",
    "connectors__",
    "procedures__",
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
    pub audit: AuditConfig,
    pub connectors: ConnectorsConfig,
    pub procedures: ProceduresConfig,
    pub lineage: LineageConfig,
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

mod sections;
mod security;

pub use sections::{
    ConnectorsConfig, DatabaseConfig, GrpcConfig, HttpConfig, KafkaConfig, LineageConfig,
    LogConfig, LogFormat, ProceduresConfig, ProceduresStart, SchemasConfig,
};
pub use security::{AccessConfig, AuditConfig, LimitsConfig, QuarantineConfig, TlsConfig};

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
        if let Some(url) = &self.lineage.http_url
            && !matches!(reqwest::Url::parse(url), Ok(u) if matches!(u.scheme(), "http" | "https"))
        {
            return invalid(
                "lineage.http_url",
                "must be an http(s) URL, e.g. http://marquez:5000/api/v1/lineage",
            );
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
        if !(100..=3_600_000).contains(&self.audit.checkpoint_interval_ms) {
            return invalid(
                "audit.checkpoint_interval_ms",
                "must be 100 to 3600000: entries after the last checkpoint are not yet signed",
            );
        }
        let origin = &self.audit.origin;
        if origin.is_empty()
            || origin.len() > 200
            || origin.chars().any(|c| c.is_whitespace() || c == '+')
        {
            return invalid(
                "audit.origin",
                "must be 1 to 200 characters without spaces or '+', e.g. lienthong.dongnai.gov.vn/audit",
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
        if let Err(e) = crate::domain::SystemId::parse(&self.procedures.system) {
            return invalid("procedures.system", &e.to_string());
        }
        if !(1..=10_000).contains(&self.procedures.max_in_flight) {
            return invalid("procedures.max_in_flight", "must be 1 to 10000");
        }
        if self.procedures.max_transactions == 0
            || self.procedures.max_transactions >= self.database.pool_max_size
        {
            return invalid(
                "procedures.max_transactions",
                "must be at least 1 and below database.pool_max_size, which the rest of the hub \
                 shares",
            );
        }
        Ok(())
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
    use std::path::PathBuf;

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
