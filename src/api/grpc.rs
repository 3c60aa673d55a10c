//! `lienthong.v1.EventService` over gRPC: hands each call to the `events` part, continues the
//! caller's trace (W3C `traceparent` metadata) and streams what comes back. The conversions and
//! status codes live in `status`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::status::{
    batch_outcome, delivery, input, publish_status, subscribe_status, withdrawn_status,
};
use crate::access::Caller;
use crate::bus::{StartFrom, trace};
use crate::events::{Events, SubscribeInput};
use crate::proto::event_service_server::EventService;
use crate::proto::streaming_subscribe_request::Request as StreamingRequest;
use crate::proto::{
    self, AcknowledgeRequest, AcknowledgeResponse, BatchItemResult, Delivery, PublishBatchResponse,
    PublishRequest, PublishResponse, StreamingSubscribeRequest, SubscribeRequest,
    batch_item_result::Outcome,
};

pub struct EventApi {
    events: Arc<Events>,
    /// Events one `PublishBatch` call publishes (`limits.max_batch_events`).
    max_batch: usize,
}

/// What the first message of a `StreamingSubscribe` must be.
/// Deliveries of one subscription decoded and recorded at once, handed over in order.
const DELIVERIES_IN_FLIGHT: usize = 64;
const OPEN_FIRST: &str = "the first message must open the subscription (`open`)";

/// The subscription a stream belongs to.
struct OpenedStream {
    id: String,
    /// Cancelled when the subscription ends.
    ended: tokio_util::sync::CancellationToken,
}

impl EventApi {
    pub fn new(events: Arc<Events>, max_batch: usize) -> Self {
        Self { events, max_batch }
    }

    /// Starts a subscription and the stream of its deliveries. The stream ends when the
    /// subscription does; if access was withdrawn, its last item is the reason as a status.
    /// Dropping the stream (the client went) ends the subscription, committing what was
    /// acknowledged.
    async fn open(
        &self,
        caller: &Caller,
        request: SubscribeRequest,
    ) -> Result<(OpenedStream, DeliveryStream), Status> {
        let start = match proto::StartFrom::try_from(request.start_from) {
            Ok(proto::StartFrom::Latest) => StartFrom::Latest,
            Ok(proto::StartFrom::Earliest | proto::StartFrom::Unspecified) => StartFrom::Earliest,
            Err(_) => return Err(Status::invalid_argument("start_from: unknown value")),
        };
        let event_type = request.event_type.clone();
        let opened = self
            .events
            .subscribe(
                caller,
                SubscribeInput {
                    event_types: vec![request.event_type],
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
        let handle = OpenedStream {
            id: id.clone(),
            ended: opened.ended.clone(),
        };
        let guard = opened.ended.clone().drop_guard();
        let recipient = opened.recipient(&event_type).map_err(subscribe_status)?;
        let withdrawn = opened.withdrawn;
        let last = futures::stream::once(async move {
            let _guard = guard;
            withdrawn.await.ok().map(|why| Err(withdrawn_status(why)))
        })
        .filter_map(std::future::ready);
        let ended = opened.ended.cancelled_owned();
        // Several deliveries are decoded and recorded at once (each waits for the ledger's
        // commit), and handed over in the order they came.
        let stream = ReceiverStream::new(opened.deliveries)
            .map(move |received| {
                let events = events.clone();
                let id = id.clone();
                let event_type = event_type.clone();
                let recipient = recipient.clone();
                let span = tracing::info_span!("deliver", otel.kind = "consumer", event_type = %event_type);
                let _ = span.set_parent(trace::extract(&received.headers));
                async move {
                    let decoded = events.decode(received, &event_type, &recipient).await;
                    if decoded.decode_transient {
                        // Not the event's fault: it stays unacknowledged and comes again.
                        return Err(Status::unavailable(
                            "the hub cannot decode or record this delivery for now; subscribe \
                             again to receive it",
                        ));
                    }
                    Ok(delivery(&id, decoded))
                }
                .instrument(span)
            })
            .buffered(DELIVERIES_IN_FLIGHT);
        Ok((handle, Box::pin(stream.take_until(ended).chain(last))))
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

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<Delivery, Status>> + Send>>;
type ResultStream = Pin<Box<dyn Stream<Item = Result<BatchItemResult, Status>> + Send>>;

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
        let (_, stream) = self.open(&caller, request.into_inner()).await?;
        Ok(Response::new(stream))
    }

    type StreamingSubscribeStream = DeliveryStream;

    async fn streaming_subscribe(
        &self,
        request: Request<Streaming<StreamingSubscribeRequest>>,
    ) -> Result<Response<Self::StreamingSubscribeStream>, Status> {
        let caller = caller(&request)?;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .and_then(|m| m.request)
            .ok_or_else(|| Status::invalid_argument(OPEN_FIRST))?;
        let StreamingRequest::Open(open) = first else {
            return Err(Status::invalid_argument(OPEN_FIRST));
        };
        let (opened, deliveries) = self.open(&caller, open).await?;
        // Acknowledgements are read beside the deliveries, until the client stops sending or
        // the subscription ends. A protocol error ends the stream with its status.
        let (refusal, refused) = tokio::sync::mpsc::channel::<Result<Delivery, Status>>(1);
        let events = self.events.clone();
        tokio::spawn(async move {
            let OpenedStream { id, ended } = opened;
            loop {
                let message = tokio::select! {
                    () = ended.cancelled() => return,
                    message = inbound.message() => message,
                };
                let request = match message {
                    Ok(Some(message)) => message.request,
                    Ok(None) | Err(_) => return,
                };
                let positions = match request {
                    Some(StreamingRequest::Acknowledge(ack)) => ack
                        .positions
                        .into_iter()
                        .map(|p| (p.partition, p.offset))
                        .collect(),
                    Some(StreamingRequest::Open(_)) | None => {
                        let _ = refusal
                            .send(Err(Status::invalid_argument(
                                "only the first message opens the subscription; later ones acknowledge",
                            )))
                            .await;
                        return;
                    }
                };
                // An acknowledgement the hub could not take (the subscription ended, or its
                // receipt could not be recorded) ends the stream with why: what was not
                // acknowledged comes again when the client subscribes again.
                if let Err(error) = events.acknowledge(&caller, &id, positions).await {
                    let _ = refusal.send(Err(subscribe_status(error))).await;
                    return;
                }
            }
        });
        let refused = ReceiverStream::new(refused);
        Ok(Response::new(Box::pin(futures::stream::select(
            deliveries, refused,
        ))))
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
