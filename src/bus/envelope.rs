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

/// A record whose headers do not hold a whole envelope: written by something other than the
/// hub, or damaged. Names the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record header {header}: {problem}")]
pub struct EnvelopeError {
    pub header: &'static str,
    pub problem: &'static str,
}

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
    /// Reads the envelope back from a record's headers (see [`header_map`]): the one way every
    /// consumer of the bus (subscriptions, connectors) learns what a record is.
    pub fn from_headers(headers: &HashMap<String, String>) -> Result<Self, EnvelopeError> {
        let required = |header: &'static str| {
            headers
                .get(header)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or(EnvelopeError {
                    header,
                    problem: "is missing",
                })
        };
        let invalid =
            |header: &'static str, problem: &'static str| EnvelopeError { header, problem };
        let optional = |header: &str| headers.get(header).filter(|v| !v.is_empty());
        Ok(Self {
            event_id: Uuid::parse_str(required(ID)?).map_err(|_| invalid(ID, "is not a UUID"))?,
            event_type: required(TYPE)?.to_owned(),
            schema_subject: required(SCHEMA_SUBJECT)?.to_owned(),
            schema_version: required(SCHEMA_VERSION)?
                .parse()
                .map_err(|_| invalid(SCHEMA_VERSION, "is not a number"))?,
            occurred_at: DateTime::parse_from_rfc3339(required(TIME)?)
                .map_err(|_| invalid(TIME, "is not an RFC 3339 date-time"))?,
            recorded_at: DateTime::parse_from_rfc3339(required(RECORDED_AT)?)
                .map_err(|_| invalid(RECORDED_AT, "is not an RFC 3339 date-time"))?
                .with_timezone(&Utc),
            producer_system: SystemId::parse(required(SOURCE)?)
                .map_err(|_| invalid(SOURCE, "is not a system id"))?,
            correlation_id: optional(CORRELATION_ID)
                .map(|v| DossierCode::parse(v))
                .transpose()
                .map_err(|_| invalid(CORRELATION_ID, "is not a dossier code"))?,
            causation_id: optional(CAUSATION_ID).cloned(),
            purpose: headers.get(PURPOSE).cloned().unwrap_or_default(),
            legal_basis: headers.get(LEGAL_BASIS).cloned().unwrap_or_default(),
            warnings: optional(WARNINGS).cloned(),
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: "birth.dossier-submitted".into(),
            schema_subject: "lienthong.birth-birth.dossier-submitted".into(),
            schema_version: 3,
            occurred_at: DateTime::parse_from_rfc3339("2026-11-20T09:15:00+07:00").unwrap(),
            recorded_at: Utc::now(),
            producer_system: SystemId::parse("one-stop-79").unwrap(),
            correlation_id: Some(DossierCode::parse("000.00.15.H29-261120-0001").unwrap()),
            causation_id: None,
            purpose: "civil-registration".into(),
            legal_basis: "Decree 63/2024/ND-CP".into(),
            warnings: None,
        }
    }

    #[test]
    fn headers_read_back_as_the_envelope_written() {
        let written = envelope();
        let trace = HashMap::from([("traceparent".to_owned(), "00-ab-cd-01".to_owned())]);
        let headers = header_map(Some(&written.to_headers(&trace)));
        let read = Envelope::from_headers(&headers).unwrap();
        assert_eq!(read.event_id, written.event_id);
        assert_eq!(read.schema_version, 3);
        assert_eq!(read.correlation_id, written.correlation_id);
        assert_eq!(read.occurred_at, written.occurred_at);
        assert_eq!(read.producer_system, written.producer_system);
    }

    #[test]
    fn a_missing_or_bad_header_is_named() {
        let mut headers = header_map(Some(&envelope().to_headers(&HashMap::new())));
        headers.insert(SCHEMA_VERSION.into(), "three".into());
        let error = Envelope::from_headers(&headers).unwrap_err();
        assert_eq!(error.header, SCHEMA_VERSION);
        headers.remove(ID);
        assert_eq!(Envelope::from_headers(&headers).unwrap_err().header, ID);
    }
}
