//! The configuration's security sections: access policy refresh, TLS, per-system limits and the
//! quarantine's retention and sealing key, and the summary `config check` prints of them.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Config;

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
    /// Calls one client connection may have in progress at once, also announced to clients as
    /// HTTP/2's maximum of concurrent streams (a subscription or a `PublishBatch` holds one).
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

/// The audit log's keys and checkpoints (`src/audit`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// The Ed25519 key that signs checkpoints: its 32-byte seed as 64 hexadecimal characters in
    /// a file (`openssl rand -hex 32`). Required to serve; `lienthong audit key` prints the
    /// public key auditors check proofs with.
    pub signing_key_file: Option<PathBuf>,
    /// The verifier keys (`lienthong audit key`) of signing keys rotated out: checkpoints they
    /// signed still verify, and the hub extends the latest of them.
    pub previous_verifier_keys: Vec<String>,
    /// The checkpoints' origin line and the signing key's name, unique per deployment, e.g.
    /// `lienthong.dongnai.gov.vn/audit`.
    pub origin: String,
    /// The key of the pseudonymous subject references (HMAC-SHA256 of a personal ID): 32
    /// bytes as 64 hexadecimal characters in a file. Required to serve.
    pub subject_key_file: Option<PathBuf>,
    /// The active subject key's name, stored in every reference it makes.
    pub subject_key_id: String,
    /// Subject keys rotated out, by name: lookups by personal ID still find what they made.
    pub previous_subject_keys: BTreeMap<String, PathBuf>,
    /// How often a checkpoint is signed over what was appended since the last one.
    pub checkpoint_interval_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            previous_verifier_keys: Vec::new(),
            origin: "lienthong.local/audit".to_owned(),
            subject_key_file: None,
            subject_key_id: "s1".to_owned(),
            previous_subject_keys: BTreeMap::new(),
            checkpoint_interval_ms: 10_000,
        }
    }
}

impl AuditConfig {
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }
}

impl Config {
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
            format!(
                "audit: checkpoints signed as {} every {} ms",
                self.audit.origin, self.audit.checkpoint_interval_ms
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
}
