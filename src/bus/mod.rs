//! The bus: Kafka through rdkafka. The envelope and its headers, trace-context propagation,
//! topic creation, the idempotent producer and acknowledgement-driven subscriptions.
//! Nothing here may depend on the local broker's (Tansu's) particular behaviour: the same code
//! runs against Apache Kafka in production, and every librdkafka setting can be configured.

pub mod envelope;
mod fetch;
pub mod offsets;
mod producer;
pub mod subscription;
mod topics;
pub mod trace;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

pub use envelope::Envelope;
pub use fetch::{FetchError, fetch};
pub use producer::{InFlight, ProduceError, Produced, Producer};
pub use subscription::{
    Assignment, Received, StartFrom, Subscription, SubscriptionError, SubscriptionOptions,
};
pub use topics::{TopicError, TopicSpec, ensure_topics};

/// The settings every client shares: the brokers, then the operator's extra properties
/// (security protocol, SASL, TLS files), which the hub's own safety settings then override.
fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap_servers);
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}
