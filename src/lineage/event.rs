//! One transfer ledger row as an OpenLineage run event (spec 2-0-2): the job that moved the
//! data, the run, what it read and wrote, which fields went where (column lineage), and the
//! hub's own facets, purpose and legal basis and the row's audit log position, so a lineage
//! tool can hand an auditor the entry `lienthong audit prove` proves.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::roles::{Role, RunState};
use crate::audit::TransferRow;

const RUN_EVENT: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const PARENT: &str =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
const SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const COLUMN_LINEAGE: &str = "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet";
const JOB_TYPE: &str =
    "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";

/// A dataset's identity: OpenLineage's namespace (where) and name (what).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetId {
    pub namespace: String,
    pub name: String,
}

/// What the builder needs to know about this deployment.
pub struct Deployment {
    /// The namespace of the hub's jobs.
    pub namespace: String,
    /// Where the JSON Schema of the hub's facets is published.
    pub facets_schema_url: String,
    /// The Kafka cluster as an OpenLineage namespace (`kafka://host:port`).
    pub kafka: String,
    /// The procedure engine's state, as a dataset (`postgres://host:port`, `db.public.table`).
    pub engine_state: DatasetId,
    /// The procedure engine's member system.
    pub engine_system: String,
}

impl Deployment {
    /// Whether the procedure engine published the row's event (`Some(true)`) or took it in
    /// (`Some(false)`); `None` for anyone else's transfer (the delivery of an event the engine
    /// published to a connector is the connector's).
    pub fn engine_side(&self, row: &TransferRow) -> Option<bool> {
        match row.channel.as_str() {
            "publish" if row.source_system == self.engine_system => Some(true),
            "delivery" if row.target_system == self.engine_system => Some(false),
            _ => None,
        }
    }
}

/// What the feed knows about one row beyond the row itself.
pub struct Context<'a> {
    /// The topic the row's event type lives on.
    pub topic: Option<&'a str>,
    /// Where the connector that made the row sends (a connector call's row).
    pub endpoint: Option<DatasetId>,
    /// The procedure group of the row's dossier, and the row's role in it.
    pub procedure: Option<(&'a str, Role<'a>)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    #[serde(skip)]
    key: String,
    event_type: RunState,
    event_time: String,
    producer: &'static str,
    #[serde(rename = "schemaURL")]
    schema_url: &'static str,
    run: Run,
    job: Job,
    inputs: Vec<Dataset>,
    outputs: Vec<Dataset>,
}

impl RunEvent {
    /// The Kafka key: the dossier's run where the row has a dossier, so a dossier's lineage
    /// keeps its order on one partition; the run's own id otherwise.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Who produced the events: the hub, at this version.
const PRODUCER: &str = concat!("urn:lienthong:hub:", env!("CARGO_PKG_VERSION"));

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    run_id: Uuid,
    facets: RunFacets,
}

#[derive(Serialize)]
struct RunFacets {
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<ParentFacet>,
    lienthong_audit: AuditFacet,
    lienthong_purpose: PurposeFacet,
}

/// The facets' common fields.
#[derive(Serialize)]
struct FacetHead {
    #[serde(rename = "_producer")]
    producer: &'static str,
    #[serde(rename = "_schemaURL")]
    schema_url: String,
}

impl FacetHead {
    fn standard(schema_url: &str) -> Self {
        Self {
            producer: PRODUCER,
            schema_url: schema_url.to_owned(),
        }
    }

    fn ours(deployment: &Deployment, definition: &str) -> Self {
        Self::standard(&format!(
            "{}#/$defs/{definition}",
            deployment.facets_schema_url
        ))
    }
}

#[derive(Serialize)]
struct ParentFacet {
    #[serde(flatten)]
    head: FacetHead,
    run: ParentRun,
    job: JobId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ParentRun {
    run_id: Uuid,
}

#[derive(Serialize)]
struct JobId {
    namespace: String,
    name: String,
}

/// Where the row stands in the audit log (`lienthong audit prove POSITION`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditFacet {
    #[serde(flatten)]
    head: FacetHead,
    position: i64,
    channel: String,
    source_system: String,
    target_system: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dossier_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PurposeFacet {
    #[serde(flatten)]
    head: FacetHead,
    purpose: String,
    legal_basis: String,
    classification: String,
}

#[derive(Serialize)]
struct Job {
    namespace: String,
    name: String,
    facets: JobFacets,
}

#[derive(Serialize)]
struct JobFacets {
    #[serde(rename = "jobType")]
    job_type: JobTypeFacet,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobTypeFacet {
    #[serde(flatten)]
    head: FacetHead,
    processing_type: &'static str,
    integration: &'static str,
    job_type: &'static str,
}

#[derive(Serialize)]
struct Dataset {
    #[serde(flatten)]
    id: DatasetId,
    #[serde(skip_serializing_if = "DatasetFacets::is_empty")]
    facets: DatasetFacets,
}

#[derive(Serialize, Default)]
struct DatasetFacets {
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<SchemaFacet>,
    #[serde(rename = "columnLineage", skip_serializing_if = "Option::is_none")]
    column_lineage: Option<ColumnLineageFacet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lienthong_schema: Option<EventSchemaFacet>,
}

impl DatasetFacets {
    fn is_empty(&self) -> bool {
        self.schema.is_none() && self.column_lineage.is_none() && self.lienthong_schema.is_none()
    }
}

#[derive(Serialize)]
struct SchemaFacet {
    #[serde(flatten)]
    head: FacetHead,
    fields: Vec<SchemaField>,
}

#[derive(Serialize)]
struct SchemaField {
    name: String,
}

#[derive(Serialize)]
struct ColumnLineageFacet {
    #[serde(flatten)]
    head: FacetHead,
    fields: BTreeMap<String, FieldLineage>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FieldLineage {
    input_fields: Vec<InputField>,
}

#[derive(Serialize)]
struct InputField {
    namespace: String,
    name: String,
    field: String,
    transformations: [Transformation; 1],
}

#[derive(Serialize)]
struct Transformation {
    #[serde(rename = "type")]
    kind: &'static str,
    subtype: &'static str,
}

/// The event type and registered schema version a topic record carried.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventSchemaFacet {
    #[serde(flatten)]
    head: FacetHead,
    event_type: String,
    subject: String,
    version: i32,
}

/// A run id that is the same each time the same thing is described, so an event sent again
/// after a crash names the same run: a version 8 UUID from SHA-256 of the kind and the name.
fn run_id(kind: &str, name: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The run of a whole dossier, which the runs of its steps and transfers name as parent.
fn dossier_run(deployment: &Deployment, code: &str) -> Uuid {
    run_id("dossier", &format!("{}/{code}", deployment.namespace))
}

/// The run of one crossing that is a run of its own: its log position, with the time it was
/// recorded, so a log started afresh (a test, a reset demo) does not name the same runs again.
fn transfer_run(deployment: &Deployment, row: &TransferRow) -> Uuid {
    run_id(
        "transfer",
        &format!(
            "{}/{}/{}",
            deployment.namespace,
            row.position,
            row.recorded_at.timestamp_micros()
        ),
    )
}

/// Who moved the data of one row, as which run, from where to where.
struct Mover {
    job: String,
    job_type: &'static str,
    state: RunState,
    run_id: Uuid,
    parent: Option<ParentFacet>,
    input: Option<DatasetId>,
    output: Option<DatasetId>,
}

fn mover(deployment: &Deployment, row: &TransferRow, context: &Context<'_>) -> Mover {
    let topic = context.topic.map(|topic| DatasetId {
        namespace: deployment.kafka.clone(),
        name: topic.to_owned(),
    });
    let system = |code: &str| DatasetId {
        namespace: format!("member-system://{code}"),
        name: row
            .event_type
            .clone()
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    let code = row.dossier_code.as_deref();
    let group = context.procedure.as_ref().map(|(group, _)| *group);
    let parent = group.zip(code).map(|(group, code)| ParentFacet {
        head: FacetHead::standard(PARENT),
        run: ParentRun {
            run_id: dossier_run(deployment, code),
        },
        job: JobId {
            namespace: deployment.namespace.clone(),
            name: format!("procedure.{group}"),
        },
    });
    // The engine's own events: its runs are the dossier's and its steps'.
    if let (Some((group, role)), Some(code), Some(published)) =
        (&context.procedure, code, deployment.engine_side(row))
    {
        let state = Some(deployment.engine_state.clone());
        let (input, output) = if published {
            (state, topic)
        } else {
            (topic, state)
        };
        return match *role {
            Role::Other => Mover {
                job: format!(
                    "procedure.{group}.{}",
                    if published { "status" } else { "inputs" }
                ),
                job_type: "PROCEDURE",
                state: RunState::Complete,
                run_id: transfer_run(deployment, row),
                parent,
                input,
                output,
            },
            Role::Dossier(state) => Mover {
                job: format!("procedure.{group}"),
                job_type: "PROCEDURE",
                state,
                run_id: dossier_run(deployment, code),
                parent: None,
                input,
                output,
            },
            Role::Step {
                step,
                compensation,
                state,
            } => {
                let step = if compensation {
                    format!("{step}.compensation")
                } else {
                    step.to_owned()
                };
                Mover {
                    job: format!("procedure.{group}.{step}"),
                    job_type: "PROCEDURE_STEP",
                    state,
                    run_id: run_id("step", &format!("{}/{code}/{step}", deployment.namespace)),
                    parent,
                    input,
                    output,
                }
            }
        };
    }
    // Any other crossing is a run of its own.
    let run_id = transfer_run(deployment, row);
    let (job, job_type, input, output) = match row.channel.as_str() {
        "connector-call" => (
            format!("connector.{}", row.target_system),
            "CONNECTOR",
            topic,
            Some(
                context
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| system(&row.source_system)),
            ),
        ),
        "publish" => (
            format!("publish.{}", row.source_system),
            "PUBLISH",
            Some(system(&row.source_system)),
            topic,
        ),
        _ => (
            format!("delivery.{}", row.target_system),
            "DELIVERY",
            topic,
            Some(system(&row.target_system)),
        ),
    };
    Mover {
        job,
        job_type,
        state: RunState::Complete,
        run_id,
        parent,
        input,
        output,
    }
}

/// Describes `row` as OpenLineage sees it.
pub fn run_event(deployment: &Deployment, row: &TransferRow, context: &Context<'_>) -> RunEvent {
    let Mover {
        job,
        job_type,
        state,
        run_id,
        parent,
        input,
        output,
    } = mover(deployment, row, context);
    let schema = |fields: &[String]| SchemaFacet {
        head: FacetHead::standard(SCHEMA),
        fields: fields
            .iter()
            .map(|name| SchemaField { name: name.clone() })
            .collect(),
    };
    let event_schema = || {
        Some(EventSchemaFacet {
            head: FacetHead::ours(deployment, "EventSchemaDatasetFacet"),
            event_type: row.event_type.clone()?,
            subject: row.schema_subject.clone()?,
            version: row.schema_version?,
        })
    };
    // Only a record's fields cross: the engine's state is read and written, not copied field
    // for field, so its side has no field lineage.
    let copied = |id: &DatasetId| *id != deployment.engine_state;
    let inputs: Vec<Dataset> = input
        .iter()
        .map(|id| Dataset {
            id: id.clone(),
            facets: DatasetFacets {
                schema: copied(id).then(|| schema(&row.fields)),
                lienthong_schema: event_schema().filter(|_| context.topic == Some(&id.name)),
                ..DatasetFacets::default()
            },
        })
        .collect();
    let outputs: Vec<Dataset> = output
        .into_iter()
        .map(|id| {
            let column_lineage = input
                .as_ref()
                .filter(|i| copied(i) && copied(&id))
                .map(|from| ColumnLineageFacet {
                    head: FacetHead::standard(COLUMN_LINEAGE),
                    fields: row
                        .fields
                        .iter()
                        .map(|field| {
                            let source = InputField {
                                namespace: from.namespace.clone(),
                                name: from.name.clone(),
                                field: field.clone(),
                                transformations: [Transformation {
                                    kind: "DIRECT",
                                    subtype: "IDENTITY",
                                }],
                            };
                            (
                                field.clone(),
                                FieldLineage {
                                    input_fields: vec![source],
                                },
                            )
                        })
                        .collect(),
                });
            let topic_schema = event_schema().filter(|_| context.topic == Some(&id.name));
            Dataset {
                facets: DatasetFacets {
                    schema: copied(&id).then(|| schema(&row.fields)),
                    column_lineage,
                    lienthong_schema: topic_schema,
                },
                id,
            }
        })
        .collect();
    RunEvent {
        key: row
            .dossier_code
            .as_deref()
            .map_or(run_id, |code| dossier_run(deployment, code))
            .to_string(),
        event_type: state,
        event_time: row.recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        producer: PRODUCER,
        schema_url: RUN_EVENT,
        run: Run {
            run_id,
            facets: RunFacets {
                parent,
                lienthong_audit: AuditFacet {
                    head: FacetHead::ours(deployment, "AuditRunFacet"),
                    position: row.position,
                    channel: row.channel.clone(),
                    source_system: row.source_system.clone(),
                    target_system: row.target_system.clone(),
                    event_id: row.event_id,
                    dossier_code: row.dossier_code.clone(),
                    trace_id: row.trace_id.clone(),
                },
                lienthong_purpose: PurposeFacet {
                    head: FacetHead::ours(deployment, "PurposeRunFacet"),
                    purpose: row.purpose.clone(),
                    legal_basis: row.legal_basis.clone(),
                    classification: row.classification.clone(),
                },
            },
        },
        job: Job {
            namespace: deployment.namespace.clone(),
            name: job,
            facets: JobFacets {
                job_type: JobTypeFacet {
                    head: FacetHead::standard(JOB_TYPE),
                    processing_type: "STREAMING",
                    integration: "LIENTHONG",
                    job_type,
                },
            },
        },
        inputs,
        outputs,
    }
}
