//! `lienthong.v1.EventService` over gRPC. Converts requests for the `events` part, continues the
//! caller's trace (W3C `traceparent` metadata) and maps outcomes to status codes: a refused event
//! is `INVALID_ARGUMENT` with every violation in the message and as `google.rpc.BadRequest`
//! details, so generic gRPC clients show them field by field.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt as _};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::convert::{json_to_struct, struct_to_json};
use crate::access::{Caller, Denied, Withdrawn};
use crate::bus::{StartFrom, envelope as headers, trace};
use crate::events::{
    Accepted, DecodedEvent, Events, PublishError, PublishInput, SubscribeError, SubscribeInput,
};
use crate::proto::event_service_server::EventService;
use crate::proto::{
    self, AcknowledgeRequest, AcknowledgeResponse, BatchItemResult, Delivery, PublishBatchResponse,
    PublishRequest, PublishResponse, SubscribeRequest, batch_item_result::Outcome,
};
use crate::registry::{Severity, Violation};

/// Violations spelled out in the status message.
const VIOLATIONS_IN_MESSAGE: usize = 20;
/// Violations in the `BadRequest` details: all of a huge list would overflow HTTP/2 headers.
const VIOLATIONS_IN_DETAILS: usize = 100;
pub struct EventApi {
    events: Arc<Events>,
    /// Events one `PublishBatch` call publishes (`limits.max_batch_events`).
    max_batch: usize,
}

impl EventApi {
    pub fn new(events: Arc<Events>, max_batch: usize) -> Self {
        Self { events, max_batch }
    }
}

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    // The auth layer runs before every handler; a missing caller is a wiring bug, refused anyway.
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

/// A span for this call whose parent is the caller's trace, when it sent one.
fn call_span<T>(request: &Request<T>, name: &'static str) -> tracing::Span {
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| {
            let value = request.metadata().get(key)?.to_str().ok()?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect();
    let span = tracing::info_span!("grpc", otel.name = name, otel.kind = "server");
    // Failing to attach a parent only means the trace starts here.
    let _ = span.set_parent(trace::extract(&carrier));
    span
}

fn input(request: PublishRequest) -> PublishInput {
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

fn proto_violation(v: Violation) -> proto::Violation {
    proto::Violation {
        pointer: v.pointer,
        rule: v.rule,
        message: v.message,
        severity: v.severity.as_str().to_owned(),
    }
}

fn publish_status(error: PublishError) -> Status {
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
        PublishError::Denied(denied) => denied_status(&denied),
        PublishError::Throttled(throttled) => throttled.into(),
    }
}

fn denied_status(denied: &Denied) -> Status {
    Status::with_error_details(
        Code::PermissionDenied,
        denied.message.clone(),
        ErrorDetails::with_error_info(denied.code, "lienthong", HashMap::new()),
    )
}

/// How a subscription stream ends when its access is withdrawn.
fn withdrawn_status(withdrawn: Withdrawn) -> Status {
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

fn subscribe_status(error: SubscribeError) -> Status {
    match error {
        SubscribeError::UnknownEventType(_)
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
    }
}

fn delivery(subscription_id: &str, event_type: &str, decoded: DecodedEvent) -> Delivery {
    let DecodedEvent {
        received,
        payload,
        decode_error,
        withheld,
    } = decoded;
    let h = &received.headers;
    let get = |key: &str| h.get(key).cloned().unwrap_or_default();
    Delivery {
        subscription_id: subscription_id.to_owned(),
        envelope: Some(proto::Envelope {
            event_id: get(headers::ID),
            event_type: h
                .get(headers::TYPE)
                .cloned()
                .unwrap_or_else(|| event_type.to_owned()),
            schema_subject: get(headers::SCHEMA_SUBJECT),
            schema_version: h
                .get(headers::SCHEMA_VERSION)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            occurred_at: get(headers::TIME),
            recorded_at: get(headers::RECORDED_AT),
            producer_system: get(headers::SOURCE),
            correlation_id: get(headers::CORRELATION_ID),
            causation_id: get(headers::CAUSATION_ID),
            purpose: get(headers::PURPOSE),
            legal_basis: get(headers::LEGAL_BASIS),
            traceparent: get(headers::TRACEPARENT),
            // Written by the hub itself; a header it cannot read shows as no warnings.
            warnings: h
                .get(headers::WARNINGS)
                .and_then(|json| serde_json::from_str::<Vec<Violation>>(json).ok())
                .unwrap_or_default()
                .into_iter()
                .map(proto_violation)
                .collect(),
        }),
        payload: payload.map(json_to_struct),
        topic: received.topic,
        partition: received.partition,
        offset: received.offset,
        decode_error: decode_error.unwrap_or_default(),
        withheld_fields: withheld,
    }
}

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<Delivery, Status>> + Send>>;
type ResultStream = Pin<Box<dyn Stream<Item = Result<BatchItemResult, Status>> + Send>>;

/// One event's outcome in a batch or a publishing stream.
fn batch_outcome(outcome: Result<Accepted, PublishError>) -> Outcome {
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

#[tonic::async_trait]
impl EventService for EventApi {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let caller = caller(&request)?;
        let span = call_span(&request, "lienthong.v1.EventService/Publish");
        let input = input(request.into_inner());
        self.events
            .publish(&caller, input)
            .instrument(span)
            .await
            .map(|accepted| Response::new(accepted.into()))
            .map_err(publish_status)
    }

    async fn publish_batch(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<PublishBatchResponse>, Status> {
        let caller = caller(&request)?;
        let span = call_span(&request, "lienthong.v1.EventService/PublishBatch");
        let mut stream = request.into_inner();
        // A broken client stream ends the batch; what was already read is still published.
        let inputs = (&mut stream)
            .take_while(|item| std::future::ready(item.is_ok()))
            .take(self.max_batch)
            .filter_map(|item| std::future::ready(item.ok().map(input)));
        let outcomes = self
            .events
            .publish_batch(&caller, inputs)
            .instrument(span)
            .await;
        let mut response = PublishBatchResponse::default();
        for (index, outcome) in outcomes.into_iter().enumerate() {
            let outcome = batch_outcome(outcome);
            match &outcome {
                Outcome::Accepted(_) => response.accepted += 1,
                Outcome::Rejected(_) => response.rejected += 1,
                Outcome::Failed(_) => response.failed += 1,
                Outcome::Denied(_) => response.denied += 1,
            }
            response.results.push(BatchItemResult {
                index: index as u32,
                outcome: Some(outcome),
            });
        }
        // Events past the limit are answered, not published: the caller sends them again.
        while let Some(Ok(extra)) = stream.next().await {
            if response.results.len() >= 2 * self.max_batch {
                response.truncated = true;
                break;
            }
            response.failed += 1;
            response.results.push(BatchItemResult {
                index: response.results.len() as u32,
                outcome: Some(Outcome::Failed(proto::Failure {
                    event_id: extra.event_id,
                    message: format!(
                        "not published: one PublishBatch call takes at most {} events; send \
                         this one in another call (or use PublishStream)",
                        self.max_batch
                    ),
                })),
            });
        }
        Ok(Response::new(response))
    }

    type PublishStreamStream = ResultStream;

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let caller = caller(&request)?;
        let span = call_span(&request, "lienthong.v1.EventService/PublishStream");
        let inputs = request
            .into_inner()
            .take_while(|item| std::future::ready(item.is_ok()))
            .filter_map(|item| std::future::ready(item.ok().map(input)));
        let results = self.events.spawn_publish_each(caller, inputs, span);
        Ok(Response::new(Box::pin(ReceiverStream::new(results).map(
            |(index, outcome)| {
                Ok(BatchItemResult {
                    index: index as u32,
                    outcome: Some(batch_outcome(outcome)),
                })
            },
        ))))
    }

    type SubscribeStream = DeliveryStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let start = match proto::StartFrom::try_from(request.start_from) {
            Ok(proto::StartFrom::Latest) => StartFrom::Latest,
            Ok(proto::StartFrom::Earliest | proto::StartFrom::Unspecified) => StartFrom::Earliest,
            Err(_) => return Err(Status::invalid_argument("start_from: unknown value")),
        };
        let event_type = request.event_type.clone();
        let opened = self
            .events
            .subscribe(
                &caller,
                SubscribeInput {
                    event_type: request.event_type,
                    group: request.consumer_group,
                    start,
                    max_unacknowledged: request.max_unacknowledged as usize,
                    purpose: request.purpose,
                    legal_basis: request.legal_basis,
                },
            )
            .await
            .map_err(subscribe_status)?;
        let events = self.events.clone();
        let id = opened.id.to_string();
        let fields = opened.fields;
        // The stream ends when the subscription does. If access was withdrawn, its last item
        // is the reason as a status. Dropping the stream (the client went) ends the
        // subscription through the guard, committing what was acknowledged.
        let guard = opened.ended.clone().drop_guard();
        let withdrawn = opened.withdrawn;
        let last = futures::stream::once(async move {
            let _guard = guard;
            withdrawn.await.ok().map(|why| Err(withdrawn_status(why)))
        })
        .filter_map(std::future::ready);
        let ended = opened.ended.cancelled_owned();
        let stream = ReceiverStream::new(opened.deliveries).then(move |received| {
            let events = events.clone();
            let id = id.clone();
            let event_type = event_type.clone();
            let fields = fields.clone();
            let span =
                tracing::info_span!("deliver", otel.kind = "consumer", event_type = %event_type);
            let _ = span.set_parent(trace::extract(&received.headers));
            async move {
                let decoded = events.decode(received, &event_type, &fields).await;
                Ok(delivery(&id, &event_type, decoded))
            }
            .instrument(span)
        });
        Ok(Response::new(Box::pin(
            stream.take_until(ended).chain(last),
        )))
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let positions = request
            .positions
            .into_iter()
            .map(|p| (p.partition, p.offset))
            .collect();
        let acknowledged = self
            .events
            .acknowledge(&caller, &request.subscription_id, positions)
            .await
            .map_err(subscribe_status)?;
        Ok(Response::new(AcknowledgeResponse { acknowledged }))
    }
}
