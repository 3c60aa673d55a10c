//! The envelope of a publish as the caller sent it ([`PublishInput`]) and its checks: event id,
//! time, dossier code, causation, purpose and legal basis. Every broken rule is reported, not
//! the first; what the event type requires beyond these (its key, its payload) is checked by
//! the publish path, which knows the type.

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access::{MAX_LEGAL_BASIS, is_legal_basis, is_purpose_code};
use crate::domain::DossierCode;
use crate::registry::Violation;

/// How far ahead of the hub's clock `occurred_at` may be (clock skew between systems).
const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// A publish as the caller sent it, before any check.
#[derive(Debug, Clone, Default)]
pub struct PublishInput {
    pub event_type: String,
    pub event_id: String,
    pub occurred_at: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub purpose: String,
    pub legal_basis: String,
    pub payload: Value,
    /// The payload as sent in another form than a JSON value, read by the publish path
    /// (`payload` is then unused).
    pub raw_payload: Option<RawPayload>,
}

/// A payload sent as text or bytes rather than as a JSON value.
#[derive(Debug, Clone)]
pub enum RawPayload {
    /// JSON text, one object.
    Json(String),
    /// Avro in Confluent's wire format, written with a version of the event type's subject.
    Avro(Vec<u8>),
    /// Given in more than one form: which to believe is not guessed.
    Ambiguous,
}

impl RawPayload {
    /// Where a request carries it, for the violation that says it could not be read.
    pub fn pointer(&self) -> &'static str {
        match self {
            Self::Json(_) => "/payload_json",
            Self::Avro(_) => "/payload_avro",
            Self::Ambiguous => "/payload",
        }
    }

    /// As the quarantine keeps it: the text, or the bytes in base64.
    fn kept(&self) -> Value {
        match self {
            Self::Json(text) => Value::String(text.clone()),
            Self::Avro(bytes) => {
                use base64::Engine as _;
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Self::Ambiguous => Value::Null,
        }
    }
}

impl PublishInput {
    /// The request as kept in quarantine.
    pub(super) fn to_json(&self) -> Value {
        let mut kept = json!({
            "event_type": self.event_type,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "payload": self.payload,
        });
        // What was sent, in the field it was sent in.
        if let Some(raw @ (RawPayload::Json(_) | RawPayload::Avro(_))) = &self.raw_payload {
            kept[raw.pointer().trim_start_matches('/')] = raw.kept();
        }
        kept
    }
}

/// An event the hub's own parts publish (connectors, procedures): typed, so only what types
/// cannot say is checked (a time in the future, the purpose and legal basis).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<FixedOffset>,
    pub correlation_id: Option<DossierCode>,
    /// The event this one answers or follows from.
    pub causation_id: Option<Uuid>,
    pub purpose: String,
    pub legal_basis: String,
    pub payload: Value,
}

impl From<&NewEvent> for PublishInput {
    /// The event as the quarantine keeps it, should it be refused.
    fn from(event: &NewEvent) -> Self {
        Self {
            event_type: event.event_type.clone(),
            event_id: event.event_id.to_string(),
            occurred_at: event.occurred_at.to_rfc3339(),
            correlation_id: event
                .correlation_id
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            causation_id: event
                .causation_id
                .map(|c| c.to_string())
                .unwrap_or_default(),
            purpose: event.purpose.clone(),
            legal_basis: event.legal_basis.clone(),
            payload: event.payload.clone(),
            raw_payload: None,
        }
    }
}

pub(super) struct CheckedEnvelope {
    pub event_id: Uuid,
    pub occurred_at: DateTime<FixedOffset>,
    /// Empty in the request: the event type decides whether that is allowed.
    pub correlation_id: Option<DossierCode>,
    pub causation_id: Option<String>,
}

/// Checks the envelope fields, adding a violation per broken rule.
pub(super) fn check_envelope(
    input: &PublishInput,
    violations: &mut Vec<Violation>,
) -> Option<CheckedEnvelope> {
    let now = Utc::now();
    let event_id = if input.event_id.is_empty() {
        Some(Uuid::now_v7())
    } else {
        match Uuid::parse_str(&input.event_id) {
            Ok(id) if id.get_version_num() == 7 => Some(id),
            _ => {
                violations.push(Violation::new(
                    "/event_id",
                    "envelope.event_id",
                    "must be a UUIDv7, or empty to let the hub generate one",
                ));
                None
            }
        }
    };
    let occurred_at = if input.occurred_at.is_empty() {
        Some(now.fixed_offset())
    } else {
        match DateTime::parse_from_rfc3339(&input.occurred_at) {
            Ok(t) if t.with_timezone(&Utc) <= now + MAX_CLOCK_SKEW => Some(t),
            Ok(_) => {
                violations.push(Violation::new(
                    "/occurred_at",
                    "envelope.occurred_at",
                    "is in the future",
                ));
                None
            }
            Err(e) => {
                violations.push(Violation::new(
                    "/occurred_at",
                    "envelope.occurred_at",
                    format!("must be an RFC 3339 date-time with offset, e.g. 2026-11-20T09:15:00+07:00 ({e})"),
                ));
                None
            }
        }
    };
    let correlation_id = if input.correlation_id.is_empty() {
        Some(None)
    } else {
        match DossierCode::parse(&input.correlation_id) {
            Ok(code) => Some(Some(code)),
            Err(e) => {
                violations.push(Violation::new(
                    "/correlation_id",
                    "envelope.correlation_id",
                    e.to_string(),
                ));
                None
            }
        }
    };
    let causation_id = if input.causation_id.is_empty() {
        None
    } else if Uuid::parse_str(&input.causation_id).is_ok() {
        Some(input.causation_id.clone())
    } else {
        violations.push(Violation::new(
            "/causation_id",
            "envelope.causation_id",
            "must be the event id (a UUID) of the event that caused this one",
        ));
        None
    };
    check_purpose(&input.purpose, &input.legal_basis, violations);
    Some(CheckedEnvelope {
        event_id: event_id?,
        occurred_at: occurred_at?,
        correlation_id: correlation_id?,
        causation_id,
    })
}

/// Checks what the types of a [`NewEvent`] leave open, adding a violation per broken rule.
pub(super) fn check_new_event(
    event: &NewEvent,
    violations: &mut Vec<Violation>,
) -> Option<CheckedEnvelope> {
    let before = violations.len();
    if event.occurred_at.with_timezone(&Utc) > Utc::now() + MAX_CLOCK_SKEW {
        violations.push(Violation::new(
            "/occurred_at",
            "envelope.occurred_at",
            "is in the future",
        ));
    }
    check_purpose(&event.purpose, &event.legal_basis, violations);
    (violations.len() == before).then(|| CheckedEnvelope {
        event_id: event.event_id,
        occurred_at: event.occurred_at,
        correlation_id: event.correlation_id.clone(),
        causation_id: event.causation_id.map(|c| c.to_string()),
    })
}

/// Both travel as Kafka headers on every record: codes and citations, never free text that
/// could carry personal data.
fn check_purpose(purpose: &str, legal_basis: &str, violations: &mut Vec<Violation>) {
    if !is_purpose_code(purpose) {
        violations.push(Violation::new(
            "/purpose",
            "envelope.purpose",
            "is required: a purpose code of 2 to 63 characters a-z, 0-9 and '-', e.g. civil-registration",
        ));
    }
    if !is_legal_basis(legal_basis.trim()) {
        violations.push(Violation::new(
            "/legal_basis",
            "envelope.legal_basis",
            format!(
                "is required: the legal basis in 1 to {MAX_LEGAL_BASIS} characters on one line, e.g. Decree 63/2024/ND-CP"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> PublishInput {
        PublishInput {
            event_type: "birth.dossier-submitted".into(),
            correlation_id: "G22.99.08-261120-0042".into(),
            purpose: "civil-registration".into(),
            legal_basis: "Decree 63/2024/ND-CP".into(),
            ..PublishInput::default()
        }
    }

    #[test]
    fn a_complete_envelope_passes_and_gets_an_id() {
        let mut violations = Vec::new();
        let checked = check_envelope(&valid(), &mut violations).expect("valid envelope");
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(checked.event_id.get_version_num(), 7);
    }

    #[test]
    fn every_broken_envelope_rule_is_reported() {
        let input = PublishInput {
            event_id: "not-a-uuid".into(),
            occurred_at: "2999-01-01T00:00:00+07:00".into(),
            correlation_id: "123".into(),
            causation_id: "x".into(),
            purpose: String::new(),
            legal_basis: " ".into(),
            ..valid()
        };
        let mut violations = Vec::new();
        assert!(check_envelope(&input, &mut violations).is_none());
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/event_id",
                "/occurred_at",
                "/correlation_id",
                "/causation_id",
                "/purpose",
                "/legal_basis"
            ]
        );
    }

    #[test]
    fn a_uuid_of_another_version_is_refused() {
        let input = PublishInput {
            event_id: "67e55044-10b1-426f-9247-bb680e5fe0c8".into(),
            ..valid()
        };
        let mut violations = Vec::new();
        assert!(check_envelope(&input, &mut violations).is_none());
        assert_eq!(violations[0].rule, "envelope.event_id");
    }
}
