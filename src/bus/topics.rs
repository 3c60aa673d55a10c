//! Creates the catalogue's topics at start-up. Brokers may not auto-create topics (the local one
//! does not, and production clusters should not), so the hub creates what it needs explicitly,
//! with the catalogue's retention; a topic that already exists is left as it is (changing the
//! retention of a live topic is an operator's deliberate act, not a side effect of a start).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `retention.ms`: set when the topic is created.
    pub retention: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot create the Kafka admin client: {0}")]
    Client(KafkaError),
    #[error("creating topics failed: {0}")]
    Request(KafkaError),
    #[error("creating topic {topic} failed: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

pub async fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = super::client_config(config)
        .create()
        .map_err(TopicError::Client)?;
    let retentions: Vec<String> = topics
        .iter()
        .map(|t| t.retention.as_millis().to_string())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&retentions)
        .map(|(t, retention)| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("retention.ms", retention)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(TopicError::Request)?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Topic { topic, code }),
        }
    }
    Ok(())
}
