//! What the event service answers, in its protocol's terms: requests to the `events` part's
//! inputs, its outcomes to responses, deliveries and statuses. A refusal lists every violation in
//! the message and as `google.rpc.BadRequest` details; a denial carries `google.rpc.ErrorInfo`
//! with its reason; nothing here decides anything.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::convert::{json_to_struct, struct_to_json};
use crate::access::{Denied, Withdrawn};
use crate::bus::Envelope;
use crate::bus::envelope as headers;
use crate::events::{
    Accepted, DecodedEvent, PublishError, PublishInput, RawPayload, SubscribeError,
};
use crate::proto::{self, Delivery, PublishRequest, PublishResponse, batch_item_result::Outcome};
use crate::registry::{Severity, Violation};

/// Violations spelled out in the status message.
const VIOLATIONS_IN_MESSAGE: usize = 20;
/// Violations in the `BadRequest` details: all of a huge list would overflow HTTP/2 headers.
const VIOLATIONS_IN_DETAILS: usize = 100;

/// The request as the publish path reads it. A payload given in more than one form is
/// refused by the publish path, as one it cannot read.
pub(super) fn input(request: PublishRequest) -> PublishInput {
    let raw_payload = match (
        request.payload.is_some(),
        request.payload_json.is_empty(),
        request.payload_avro.is_empty(),
    ) {
        (false, false, true) => Some(RawPayload::Json(request.payload_json)),
        (false, true, false) => Some(RawPayload::Avro(request.payload_avro)),
        (_, true, true) => None,
        _ => Some(RawPayload::Ambiguous),
    };
    PublishInput {
        event_type: request.event_type,
        event_id: request.event_id,
        occurred_at: request.occurred_at,
        correlation_id: request.correlation_id,
        causation_id: request.causation_id,
        purpose: request.purpose,
        legal_basis: request.legal_basis,
        payload: request
            .payload
            .map_or(serde_json::Value::Null, struct_to_json),
        raw_payload,
    }
}

impl From<Accepted> for PublishResponse {
    fn from(a: Accepted) -> Self {
        Self {
            event_id: a.event_id.to_string(),
            topic: a.topic,
            partition: a.partition,
            offset: a.offset,
            schema_subject: a.schema_subject,
            schema_version: a.schema_version,
            schema_id: a.schema_id as i32,
            warnings: a.warnings.into_iter().map(proto_violation).collect(),
        }
    }
}

pub(super) fn proto_violation(v: Violation) -> proto::Violation {
    proto::Violation {
        pointer: v.pointer,
        rule: v.rule,
        message: v.message,
        severity: v.severity.as_str().to_owned(),
    }
}

pub(super) fn publish_status(error: PublishError) -> Status {
    match error {
        PublishError::Rejected(rejected) => {
            let mut message = format!(
                "event refused: {} violation(s), kept in quarantine as #{}",
                rejected.violations.len(),
                rejected.quarantine_id
            );
            // Warnings are listed too, marked: fixing them is not needed to be accepted.
            let marked = |v: &Violation| match v.severity {
                Severity::Error => format!("[{}]", v.rule),
                Severity::Warning => format!("[{}, warning]", v.rule),
            };
            for v in rejected.violations.iter().take(VIOLATIONS_IN_MESSAGE) {
                message.push_str(&format!("; {} {} {}", v.pointer, marked(v), v.message));
            }
            let details = ErrorDetails::with_bad_request(
                rejected
                    .violations
                    .iter()
                    .take(VIOLATIONS_IN_DETAILS)
                    .map(|v| {
                        tonic_types::FieldViolation::new(
                            v.pointer.clone(),
                            format!("{} {}", marked(v), v.message),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        error @ (PublishError::NotQueued(_) | PublishError::Unread(_)) => {
            Status::unavailable(error.to_string())
        }
        PublishError::Produce { event_id, source } => {
            tracing::error!(%event_id, error = %source, "produce failed");
            Status::unavailable(format!(
                "the broker did not acknowledge the event; retry with event_id {event_id} so \
                 consumers can deduplicate ({source})"
            ))
        }
        PublishError::Quarantine(e) => {
            tracing::error!(error = %e, "quarantine failed");
            Status::unavailable("the event is invalid but could not be quarantined; retry")
        }
        PublishError::Unrecorded { event_id, source } => Status::unavailable(format!(
            "the event reached the bus but its transfer was not recorded; retry with event_id \
             {event_id} so consumers can deduplicate ({source})"
        )),
        PublishError::Denied(denied) => denied_status(&denied),
        PublishError::Throttled(throttled) => throttled.into(),
    }
}

pub(super) fn denied_status(denied: &Denied) -> Status {
    Status::with_error_details(
        Code::PermissionDenied,
        denied.message.clone(),
        ErrorDetails::with_error_info(denied.code, "lienthong", HashMap::new()),
    )
}

/// How a subscription stream ends when its access is withdrawn.
pub(super) fn withdrawn_status(withdrawn: Withdrawn) -> Status {
    match withdrawn {
        Withdrawn::Credential(failure) => {
            Status::unauthenticated(format!("subscription ended: {failure}"))
        }
        Withdrawn::Right(denied) => Status::permission_denied(format!(
            "subscription ended: the right was withdrawn: {}",
            denied.message
        )),
    }
}

pub(super) fn subscribe_status(error: SubscribeError) -> Status {
    match error {
        SubscribeError::UnknownEventType(_)
        | SubscribeError::NoEventType
        | SubscribeError::TopicsDiffer { .. }
        | SubscribeError::InvalidGroup
        | SubscribeError::InvalidPurpose
        | SubscribeError::InvalidLegalBasis => Status::invalid_argument(error.to_string()),
        SubscribeError::Denied(denied) => denied_status(&denied),
        SubscribeError::UnknownSubscription(_) => Status::not_found(error.to_string()),
        SubscribeError::TooMany => Status::resource_exhausted(error.to_string()),
        SubscribeError::Bus(e) => {
            tracing::error!(error = %e, "subscription failed");
            Status::unavailable(e.to_string())
        }
        SubscribeError::Receipt(ref e) => {
            tracing::error!(error = %e, "an acknowledgement's receipt was not recorded");
            Status::unavailable(error.to_string())
        }
    }
}

fn proto_envelope(envelope: Envelope, traceparent: String) -> proto::Envelope {
    let time = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    proto::Envelope {
        event_id: envelope.event_id.to_string(),
        event_type: envelope.event_type,
        schema_subject: envelope.schema_subject,
        schema_version: envelope.schema_version,
        occurred_at: time(envelope.occurred_at),
        recorded_at: time(envelope.recorded_at.fixed_offset()),
        producer_system: envelope.producer_system.to_string(),
        correlation_id: envelope
            .correlation_id
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        causation_id: envelope.causation_id.unwrap_or_default(),
        purpose: envelope.purpose,
        legal_basis: envelope.legal_basis,
        traceparent,
        // Written by the hub itself; a header it cannot read shows as no warnings.
        warnings: envelope
            .warnings
            .and_then(|json| serde_json::from_str::<Vec<Violation>>(&json).ok())
            .unwrap_or_default()
            .into_iter()
            .map(proto_violation)
            .collect(),
    }
}

pub(super) fn delivery(subscription_id: &str, decoded: DecodedEvent) -> Delivery {
    let DecodedEvent {
        received,
        envelope,
        payload,
        decode_error,
        withheld,
        ..
    } = decoded;
    let traceparent = received
        .headers
        .get(headers::TRACEPARENT)
        .cloned()
        .unwrap_or_default();
    // Every record the hub wrote has a whole envelope; one that does not is reported like an
    // undecodable payload, so the subscriber can acknowledge it and move on.
    let (envelope, envelope_error) = match envelope {
        Ok(envelope) => (Some(proto_envelope(envelope, traceparent)), None),
        Err(error) => (None, Some(error)),
    };
    let decode_error = decode_error.or(envelope_error);
    Delivery {
        subscription_id: subscription_id.to_owned(),
        envelope,
        payload: payload.map(json_to_struct),
        topic: received.topic,
        partition: received.partition,
        offset: received.offset,
        decode_error: decode_error.unwrap_or_default(),
        withheld_fields: withheld,
    }
}

/// One event's outcome in a batch or a publishing stream.
pub(super) fn batch_outcome(outcome: Result<Accepted, PublishError>) -> Outcome {
    match outcome {
        Ok(accepted) => Outcome::Accepted(accepted.into()),
        // Capped like a single refusal's details: 10 000 results must fit one answer.
        Err(PublishError::Rejected(rejected)) => Outcome::Rejected(proto::Rejection {
            violations: rejected
                .violations
                .into_iter()
                .take(VIOLATIONS_IN_DETAILS)
                .map(proto_violation)
                .collect(),
            quarantine_id: rejected.quarantine_id,
        }),
        // The broker or the database failed for this event only: the others keep their
        // outcome, and the caller retries this one with the event id given here.
        Err(PublishError::Produce { event_id, source }) => Outcome::Failed(proto::Failure {
            event_id: event_id.to_string(),
            message: format!("the broker did not acknowledge it: {source}"),
        }),
        Err(PublishError::Throttled(throttled)) => Outcome::Failed(proto::Failure {
            event_id: String::new(),
            message: throttled.to_string(),
        }),
        Err(error @ (PublishError::NotQueued(_) | PublishError::Unread(_))) => {
            Outcome::Failed(proto::Failure {
                event_id: String::new(),
                message: error.to_string(),
            })
        }
        Err(PublishError::Unrecorded { event_id, source }) => Outcome::Failed(proto::Failure {
            event_id: event_id.to_string(),
            message: format!("on the bus, but its transfer was not recorded: {source}"),
        }),
        Err(PublishError::Denied(denied)) => Outcome::Denied(proto::Denial {
            reason: denied.code.to_owned(),
            message: denied.message,
        }),
        Err(PublishError::Quarantine(e)) => {
            tracing::error!(error = %e, "quarantine failed");
            Outcome::Failed(proto::Failure {
                event_id: String::new(),
                message: "invalid, and could not be quarantined; retry".to_owned(),
            })
        }
    }
}
