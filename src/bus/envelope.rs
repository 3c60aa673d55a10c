//! The envelope every event carries, as Kafka headers in the CloudEvents Kafka binding's binary
//! mode (`ce_id`, `ce_type`, `ce_source`, `ce_time`, plus lienthong extensions), beside the Avro
//! payload. Headers let consumers route and trace without decoding, and standard tools read them.
//! A personal ID number is never a header value: only identifiers of events, dossiers and systems.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use uuid::Uuid;

use crate::domain::{DossierCode, SystemId};

pub const SPEC_VERSION: &str = "ce_specversion";
pub const ID: &str = "ce_id";
pub const TYPE: &str = "ce_type";
pub const SOURCE: &str = "ce_source";
pub const TIME: &str = "ce_time";
pub const RECORDED_AT: &str = "ce_recordedat";
pub const SCHEMA_SUBJECT: &str = "ce_schemasubject";
pub const SCHEMA_VERSION: &str = "ce_schemaversion";
pub const CORRELATION_ID: &str = "ce_correlationid";
pub const CAUSATION_ID: &str = "ce_causationid";
pub const PURPOSE: &str = "ce_purpose";
pub const LEGAL_BASIS: &str = "ce_legalbasis";
/// Rules the event broke that only warn, as a JSON array of violations (no values).
pub const WARNINGS: &str = "ce_warnings";
pub const CONTENT_TYPE: &str = "content-type";
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone)]
pub struct Envelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_subject: String,
    pub schema_version: i32,
    pub occurred_at: DateTime<FixedOffset>,
    pub recorded_at: DateTime<Utc>,
    pub producer_system: SystemId,
    /// The dossier code, if the event belongs to one yet (the record's key unless its type
    /// declares another).
    pub correlation_id: Option<DossierCode>,
    pub causation_id: Option<String>,
    pub purpose: String,
    pub legal_basis: String,
    /// The JSON of [`WARNINGS`], when the event was accepted with warnings.
    pub warnings: Option<String>,
}

impl Envelope {
    /// The record headers: the envelope, then the trace context (`traceparent`, `tracestate`).
    pub fn to_headers(&self, trace_context: &HashMap<String, String>) -> OwnedHeaders {
        let time = |t: &DateTime<FixedOffset>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let id = self.event_id.to_string();
        let occurred = time(&self.occurred_at);
        let recorded = self
            .recorded_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let version = self.schema_version.to_string();
        let mut fields: Vec<(&str, &str)> = vec![
            (SPEC_VERSION, "1.0"),
            (ID, &id),
            (TYPE, &self.event_type),
            (SOURCE, self.producer_system.as_str()),
            (TIME, &occurred),
            (RECORDED_AT, &recorded),
            (SCHEMA_SUBJECT, &self.schema_subject),
            (SCHEMA_VERSION, &version),
            (PURPOSE, &self.purpose),
            (LEGAL_BASIS, &self.legal_basis),
            (CONTENT_TYPE, "application/avro"),
        ];
        if let Some(correlation) = &self.correlation_id {
            fields.push((CORRELATION_ID, correlation.as_str()));
        }
        if let Some(causation) = &self.causation_id {
            fields.push((CAUSATION_ID, causation));
        }
        if let Some(warnings) = &self.warnings {
            fields.push((WARNINGS, warnings));
        }
        let mut headers = OwnedHeaders::new_with_capacity(fields.len() + trace_context.len());
        for (key, value) in fields {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        for (key, value) in trace_context {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        headers
    }
}

/// A record's headers as text; headers that are not UTF-8 are left out.
pub fn header_map<H: rdkafka::message::Headers>(headers: Option<&H>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(headers) = headers {
        for header in headers.iter() {
            if let Some(value) = header.value.and_then(|v| std::str::from_utf8(v).ok()) {
                map.insert(header.key.to_owned(), value.to_owned());
            }
        }
    }
    map
}
