//! The catalogue in `schemas/`: `topics.toml` lists the event types and their topics; each type
//! has a JSON Schema (content rules) and an Avro schema (wire format) in `schemas/events/`.
//! Loading only reads and parses files; registration and compilation happen in `Registry`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML for the catalogue: {source}")]
    Topics {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicsFile {
    topic: Vec<TopicDefinition>,
    event: Vec<EventEntry>,
}

/// One topic as the catalogue describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDefinition {
    /// Topic name without the deployment's prefix.
    pub name: String,
    pub partitions: i32,
    /// How long the broker keeps records: they carry personal data.
    pub retention_days: u32,
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventEntry {
    r#type: String,
    topic: String,
    description: String,
    /// Only the hub itself produces this type (audit records): no member may be granted it.
    #[serde(default)]
    hub_only: bool,
    /// The payload field that keys records of this type, when not the dossier code.
    key: Option<String>,
}

/// One event type as the catalogue describes it.
#[derive(Debug, Clone)]
pub struct EventDefinition {
    pub event_type: String,
    /// Topic name without the deployment's prefix.
    pub topic: String,
    pub description: String,
    /// Only the hub itself produces events of this type.
    pub hub_only: bool,
    /// The required payload field that keys its records; `None`: the dossier code (the
    /// envelope's correlation id, then required).
    pub key: Option<String>,
    pub json_schema: Value,
    /// The Avro schema exactly as written in the `.avsc` file.
    pub avro_text: String,
}

impl EventDefinition {
    /// Its schema subject on `topic` (the full topic name): `<topic>-<record full name>`,
    /// Confluent's TopicRecordNameStrategy, as several event types share a topic. `None` when
    /// the Avro schema is not a record.
    pub fn subject_on(&self, topic: &str) -> Option<String> {
        match apache_avro::Schema::parse_str(&self.avro_text).ok()? {
            apache_avro::Schema::Record(record) => {
                Some(format!("{topic}-{}", record.name.fullname(None)))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Catalogue {
    pub topics: Vec<TopicDefinition>,
    pub events: Vec<EventDefinition>,
}

impl Catalogue {
    /// The event type `name` names: an event type, or the schema subject of one on its topic
    /// under `topic_prefix`.
    pub fn event_named(&self, name: &str, topic_prefix: &str) -> Option<&EventDefinition> {
        self.events.iter().find(|e| {
            e.event_type == name
                || e.subject_on(&format!("{topic_prefix}{}", e.topic))
                    .as_deref()
                    == Some(name)
        })
    }

    pub fn load(dir: &Path) -> Result<Self, CatalogueError> {
        let topics_path = dir.join("topics.toml");
        let topics: TopicsFile =
            toml::from_str(&read(&topics_path)?).map_err(|source| CatalogueError::Topics {
                path: topics_path.clone(),
                source: Box::new(source),
            })?;
        let mut events = Vec::with_capacity(topics.event.len());
        for entry in topics.event {
            let invalid = |problem: String| CatalogueError::Invalid {
                path: topics_path.clone(),
                problem,
            };
            if !topics.topic.iter().any(|t| t.name == entry.topic) {
                return Err(invalid(format!(
                    "event type {} names topic {}, which no [[topic]] defines",
                    entry.r#type, entry.topic
                )));
            }
            if events
                .iter()
                .any(|e: &EventDefinition| e.event_type == entry.r#type)
            {
                return Err(invalid(format!(
                    "event type {} is listed twice",
                    entry.r#type
                )));
            }
            let json_path = dir
                .join("events")
                .join(format!("{}.schema.json", entry.r#type));
            let json_schema: Value =
                serde_json::from_str(&read(&json_path)?).map_err(|source| {
                    CatalogueError::Json {
                        path: json_path.clone(),
                        source,
                    }
                })?;
            if let Some(key) = &entry.key {
                let required = json_schema["required"]
                    .as_array()
                    .is_some_and(|fields| fields.iter().any(|f| f == key.as_str()));
                let string = json_schema["properties"][key]["type"] == "string";
                if !(required && string) {
                    return Err(invalid(format!(
                        "event type {}: key {key} must be a required string field of its payload",
                        entry.r#type
                    )));
                }
            }
            let avro_path = dir.join("events").join(format!("{}.avsc", entry.r#type));
            events.push(EventDefinition {
                event_type: entry.r#type,
                topic: entry.topic,
                description: entry.description,
                hub_only: entry.hub_only,
                key: entry.key,
                json_schema,
                avro_text: read(&avro_path)?,
            });
        }
        if let Some(t) = topics.topic.iter().find(|t| t.partitions < 1) {
            return Err(CatalogueError::Invalid {
                path: topics_path,
                problem: format!("topic {}: partitions must be at least 1", t.name),
            });
        }
        if let Some(t) = topics
            .topic
            .iter()
            .find(|t| !(1..=3650).contains(&t.retention_days))
        {
            return Err(CatalogueError::Invalid {
                path: topics_path,
                problem: format!("topic {}: retention_days must be 1 to 3650", t.name),
            });
        }
        Ok(Self {
            topics: topics.topic,
            events,
        })
    }
}

fn read(path: &Path) -> Result<String, CatalogueError> {
    std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
        path: path.to_owned(),
        source,
    })
}
