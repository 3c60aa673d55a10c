//! The schema registry: every event type's JSON Schema (content rules, compiled once) and Avro
//! schema (wire format, registered in PostgreSQL under a global id), loaded from `schemas/` at
//! start-up. It validates payloads, listing every violation, and encodes and decodes records in
//! Confluent's wire format. It never talks to Kafka.

pub mod avro;
mod avro_plan;
mod catalogue;
pub mod compatibility;
pub mod dictionary;
pub mod lint;
mod messages_vi;
mod normalise;
mod rules;
pub mod store;
mod violation;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use serde_json::Value;

pub use catalogue::{Catalogue, CatalogueError, EventDefinition};
pub use normalise::normalised;
pub use rules::WARNINGS as WARNING_RULES;
pub use violation::{Severity, Violation};

use crate::db::DbError;
use crate::domain::ReferenceData;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    #[error("the JSON Schema of {event_type} does not compile: {reason}")]
    JsonSchema { event_type: String, reason: String },
    #[error("the schema is not {level} compatible with subject {subject}: {reason}")]
    Incompatible {
        subject: String,
        level: compatibility::Compatibility,
        reason: String,
    },
    #[error("subject {0:?} not found")]
    SubjectNotFound(String),
    #[error("version not found for subject {subject:?}")]
    VersionNotFound { subject: String },
    #[error("schema not found")]
    SchemaNotFound,
    #[error("subject {0:?} was soft deleted: set permanent=true to delete it permanently")]
    SubjectSoftDeleted(String),
    #[error("subject {0:?} was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "subject {subject:?} version {version} was soft deleted: set permanent=true to delete it permanently"
    )]
    VersionSoftDeleted { subject: String, version: i32 },
    #[error(
        "subject {subject:?} version {version} was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: i32 },
    #[error("the version must be a positive integer, `latest` or -1, not {0:?}")]
    InvalidVersion(String),
    #[error("only AVRO and JSON schemas are supported, not {0}")]
    UnsupportedSchemaType(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<deadpool_postgres::PoolError> for RegistryError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(DbError::Pool(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("schema id {0} is not registered")]
    UnknownSchema(u32),
    #[error("schema id {id} is no version of {subject}")]
    OtherSubject { id: u32, subject: String },
    #[error("schema id {id}: {reason}")]
    Avro { id: u32, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// One event type, ready to validate and encode.
pub struct EventSchema {
    pub event_type: String,
    /// Full topic name, with the deployment's prefix.
    pub topic: String,
    /// `<topic>-<record full name>`, Confluent's TopicRecordNameStrategy: several event types
    /// share a topic.
    pub subject: String,
    pub schema_id: u32,
    pub version: i32,
    /// The payload field that keys records; `None`: the dossier code.
    pub key: Option<String>,
    /// Each field's classification, by dotted path, for the transfer ledger.
    pub classes: HashMap<String, String>,
    validator: jsonschema::Validator,
    avro: Schema,
    names: avro::Names,
    /// The encoding compiled once (`None`: the schema holds a type only apache-avro writes).
    plan: Option<avro_plan::Plan>,
    reference: Arc<ReferenceData>,
}

impl EventSchema {
    /// Compiles an event type's validator and encoder. Its schema id and version are 0 until it
    /// is registered.
    pub fn compile(
        def: &EventDefinition,
        reference: Arc<ReferenceData>,
        topic_prefix: &str,
    ) -> Result<Self, RegistryError> {
        let topic = format!("{topic_prefix}{}", def.topic);
        let invalid =
            |e: String| RegistryError::InvalidSchema(format!("{}.avsc: {e}", def.event_type));
        let avro = Schema::parse_str(&def.avro_text).map_err(|e| invalid(e.to_string()))?;
        let subject = def
            .subject_on(&topic)
            .ok_or_else(|| invalid("an event schema must be a record".into()))?;
        let names = avro::Names::of(&avro).map_err(|e| invalid(e.to_string()))?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&def.json_schema)
            .map_err(|e| RegistryError::JsonSchema {
                event_type: def.event_type.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            event_type: def.event_type.clone(),
            topic,
            subject,
            schema_id: 0,
            version: 0,
            key: def.key.clone(),
            classes: dictionary::classifications(&def.json_schema),
            validator,
            plan: avro_plan::Plan::compile(&avro, &names),
            avro,
            names,
            reference,
        })
    }

    /// Every violation of `payload`: JSON Schema first, then the semantic rules (checked against
    /// reference data valid on `event_date`), with pointers under `/payload`. Empty when valid.
    pub fn validate(&self, payload: &Value, event_date: NaiveDate) -> Vec<Violation> {
        let mut violations = self.schema_violations(payload);
        violations.extend(rules::check(
            payload,
            &rules::RuleContext {
                reference: &self.reference,
                event_date,
            },
        ));
        violations
    }

    fn schema_violations(&self, payload: &Value) -> Vec<Violation> {
        if self.validator.is_valid(payload) {
            return Vec::new();
        }
        let mut violations = Vec::new();
        for error in self.validator.iter_errors(payload) {
            collect_violations(&error, &mut violations);
        }
        violations
    }

    /// Encodes a valid payload as an Avro record in Confluent's wire format: through the
    /// compiled plan, or, where it has none or the payload does not fit it, through apache-avro,
    /// which then names the problem.
    pub fn encode(&self, payload: &Value) -> Result<Vec<u8>, Violation> {
        if let Some(plan) = &self.plan {
            let mut framed = wire::header(self.schema_id, ENCODED_ROOM);
            if plan.write(payload, &mut framed).is_ok() {
                return Ok(framed);
            }
        }
        self.encode_with_apache_avro(payload)
    }

    /// [`Self::encode`] through apache-avro alone: the reference the compiled plan is held to
    /// (the bench measures both).
    pub fn encode_with_apache_avro(&self, payload: &Value) -> Result<Vec<u8>, Violation> {
        let value = avro::json_to_avro(payload, &self.avro, &self.names).map_err(|e| {
            Violation::new(
                format!("/payload{}", e.pointer.trim_end_matches('/')),
                "avro",
                e.problem,
            )
        })?;
        // apache-avro's errors quote the value; the violation must not (personal data).
        let datum = apache_avro::to_avro_datum(&self.avro, value).map_err(|_| {
            Violation::new(
                "/payload",
                "avro",
                "cannot be written with the event type's Avro schema",
            )
        })?;
        Ok(wire::frame(self.schema_id, &datum))
    }
}

/// Room made for an encoded event up front: a birth dossier takes about 700 bytes.
const ENCODED_ROOM: usize = 1024;

/// Whether `branch` (one alternative's errors) only says "not null": the null alternative of a
/// nullable field, which a present value fails trivially.
fn only_not_null(branch: &[jsonschema::ValidationError<'_>]) -> bool {
    use jsonschema::error::{TypeKind, ValidationErrorKind};
    matches!(branch, [error] if matches!(
        error.kind(),
        ValidationErrorKind::Type { kind: TypeKind::Single(jsonschema::JsonType::Null) }
    ))
}

/// The violations `error` stands for. A present value of a nullable field (`oneOf: [null, …]`)
/// that breaks the other alternative gets that alternative's own errors, each at its field,
/// rather than one "matches no allowed shape" at the whole object.
fn collect_violations(error: &jsonschema::ValidationError<'_>, out: &mut Vec<Violation>) {
    use jsonschema::error::ValidationErrorKind;
    if let ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } =
        error.kind()
        && let [first, second] = context.as_slice()
    {
        let other = if only_not_null(first) {
            Some(second)
        } else if only_not_null(second) {
            Some(first)
        } else {
            None
        };
        if let Some(branch) = other.filter(|branch| !branch.is_empty()) {
            for inner in branch {
                collect_violations(inner, out);
            }
            return;
        }
    }
    let mut pointer = format!("/payload{}", error.instance_path());
    let rule = error.kind().keyword().to_owned();
    if let ValidationErrorKind::Required { property } = error.kind() {
        // Point at the missing field, not at its parent.
        if let Some(name) = property.as_str() {
            pointer.push('/');
            pointer.push_str(name);
        }
    }
    // `masked` leaves the value out: messages may reach logs and must not carry personal data.
    let message = messages_vi::bilingual(&rule, error.masked().to_string());
    out.push(Violation::new(pointer, rule, message));
}

pub struct Registry {
    events: HashMap<String, Arc<EventSchema>>,
    /// Writer schemas by id, for decoding; filled from PostgreSQL on a miss.
    writers: RwLock<HashMap<u32, Arc<Schema>>>,
    pool: Pool,
}

impl Registry {
    /// Registers every catalogue schema (idempotently) and compiles its validator.
    pub async fn load(
        catalogue: &Catalogue,
        reference: Arc<ReferenceData>,
        topic_prefix: &str,
        pool: Pool,
    ) -> Result<Self, RegistryError> {
        let mut events = HashMap::new();
        let mut writers = HashMap::new();
        for def in &catalogue.events {
            let mut schema = EventSchema::compile(def, reference.clone(), topic_prefix)?;
            let registered = store::register(
                &pool,
                &schema.subject,
                store::SchemaType::Avro,
                &def.avro_text,
            )
            .await?;
            schema.schema_id = registered.id;
            schema.version = registered.version;
            writers.insert(registered.id, Arc::new(schema.avro.clone()));
            events.insert(def.event_type.clone(), Arc::new(schema));
        }
        Ok(Self {
            events,
            writers: RwLock::new(writers),
            pool,
        })
    }

    pub fn event(&self, event_type: &str) -> Option<&Arc<EventSchema>> {
        self.events.get(event_type)
    }

    /// True for a subject of the hub's own event types: defined by `schemas/` in git, so not
    /// changed over REST (a version registered there would be ignored by the running hub and
    /// could stop its next start).
    pub fn owns_subject(&self, subject: &str) -> bool {
        self.events.values().any(|e| e.subject == subject)
    }

    /// Decodes a wire-format record with the schema it was written with.
    pub async fn decode(&self, record: &[u8]) -> Result<Value, DecodeError> {
        let (id, datum) = wire::unframe(record)?;
        let writer = self.writer(id).await?;
        let value = apache_avro::from_avro_datum(&writer, &mut &datum[..], None).map_err(|e| {
            DecodeError::Avro {
                id,
                reason: e.to_string(),
            }
        })?;
        Ok(avro::avro_to_json(value))
    }

    /// Decodes a wire-format payload sent for `event`: written with its current version (read
    /// with the schema at hand) or with an earlier version of its subject (read with that
    /// version, looked up once); any other schema id is refused.
    pub async fn decode_for(
        &self,
        event: &EventSchema,
        record: &[u8],
    ) -> Result<Value, DecodeError> {
        let (id, datum) = wire::unframe(record)?;
        let writer = if id == event.schema_id {
            None
        } else {
            let versions = store::subject_versions_of(&self.pool, id).await?;
            if !versions
                .iter()
                .any(|(subject, _)| *subject == event.subject)
            {
                return Err(DecodeError::OtherSubject {
                    id,
                    subject: event.subject.clone(),
                });
            }
            Some(self.writer(id).await?)
        };
        let mut rest = datum;
        let value = apache_avro::from_avro_datum(
            writer.as_deref().unwrap_or(&event.avro),
            &mut rest,
            writer.is_some().then_some(&event.avro),
        )
        .map_err(|e| DecodeError::Avro {
            id,
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(DecodeError::Avro {
                id,
                reason: format!("{} bytes follow the record", rest.len()),
            });
        }
        Ok(avro::avro_to_json(value))
    }

    async fn writer(&self, id: u32) -> Result<Arc<Schema>, DecodeError> {
        if let Some(schema) = self.cached_writer(id) {
            return Ok(schema);
        }
        let (schema_type, text) = store::schema_text(&self.pool, id)
            .await?
            .ok_or(DecodeError::UnknownSchema(id))?;
        if schema_type != store::SchemaType::Avro {
            return Err(DecodeError::Avro {
                id,
                reason: format!("schema {id} is a {} schema", schema_type.as_str()),
            });
        }
        let schema = Arc::new(Schema::parse_str(&text).map_err(|e| DecodeError::Avro {
            id,
            reason: e.to_string(),
        })?);
        self.writers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, schema.clone());
        Ok(schema)
    }

    fn cached_writer(&self, id: u32) -> Option<Arc<Schema>> {
        self.writers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn violations(schema: &Value, payload: &Value) -> Vec<(String, String)> {
        let validator = jsonschema::validator_for(schema).expect("a valid schema");
        let mut out = Vec::new();
        for error in validator.iter_errors(payload) {
            collect_violations(&error, &mut out);
        }
        out.into_iter().map(|v| (v.pointer, v.rule)).collect()
    }

    #[test]
    fn a_present_nullable_value_is_reported_at_its_own_fields() {
        let schema = json!({
            "type": "object",
            "properties": {
                "father": {"oneOf": [
                    {"type": "null"},
                    {"type": "object", "properties": {"name": {"type": "string"}}}
                ]},
                "date": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            }
        });
        assert_eq!(
            violations(&schema, &json!({"father": {"name": 7}})),
            [("/payload/father/name".to_owned(), "type".to_owned())],
            "the field that is wrong, not the whole father"
        );
        assert!(violations(&schema, &json!({"father": null})).is_empty());
        assert_eq!(
            violations(&schema, &json!({"date": true})),
            [("/payload/date".to_owned(), "oneOf".to_owned())],
            "a choice between two shapes stays one violation"
        );
    }
}
