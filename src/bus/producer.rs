//! The idempotent producer: `acks=all` and `enable.idempotence=true` are fixed, so a retried
//! send never writes a record twice and an answer means every in-sync replica has the record.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// How long to wait before retrying when librdkafka's local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the Kafka producer: {0}")]
    Client(KafkaError),
    #[error("the broker did not acknowledge the record: {0}")]
    Delivery(KafkaError),
}

/// Where the broker stored a record, and how long it took to say so.
#[derive(Debug, Clone, Copy)]
pub struct Produced {
    pub partition: i32,
    pub offset: i64,
    pub latency: Duration,
}

/// A record in the producer's queue, not yet acknowledged.
pub struct InFlight {
    delivery: DeliveryFuture,
    started: Instant,
}

impl InFlight {
    /// Waits for the broker's acknowledgement (bounded by `message.timeout.ms`).
    pub async fn acknowledged(self) -> Result<Produced, ProduceError> {
        match self.delivery.await {
            Ok(Ok(delivery)) => Ok(Produced {
                partition: delivery.partition,
                offset: delivery.offset,
                latency: self.started.elapsed(),
            }),
            Ok(Err((error, _))) => Err(ProduceError::Delivery(error)),
            Err(_) => Err(ProduceError::Delivery(KafkaError::Canceled)),
        }
    }
}

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self, ProduceError> {
        let mut client = super::client_config(config);
        // How long records wait to share a request: short, for latency, unless the deployment
        // says otherwise in kafka.properties (a broker that commits each request to disk does
        // more with fuller requests).
        if !config.properties.contains_key("linger.ms") {
            client.set("linger.ms", "5");
        }
        let inner = client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.produce_timeout_ms.to_string())
            .create()
            .map_err(ProduceError::Client)?;
        Ok(Self { inner })
    }

    /// Hands one record to the producer's queue, in call order, waiting only while the queue
    /// is full. Records of one key keep this order on their partition.
    pub async fn enqueue(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<InFlight, ProduceError> {
        let started = Instant::now();
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => return Ok(InFlight { delivery, started }),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((error, _)) => return Err(ProduceError::Delivery(error)),
            }
        }
    }

    /// Produces one record and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Produced, ProduceError> {
        self.enqueue(topic, key, payload, headers)
            .await?
            .acknowledged()
            .await
    }

    /// Waits until every queued record is acknowledged, or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.flush(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }

    /// True when the cluster answers a metadata request within `timeout`.
    pub async fn is_reachable(&self, timeout: Duration) -> bool {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.client().fetch_metadata(None, timeout).is_ok())
            .await
            .unwrap_or(false)
    }
}
