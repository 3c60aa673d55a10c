//! The Confluent Schema Registry REST API on the hub's HTTP port, so standard Kafka tooling
//! (Confluent serializers in any language, Kafka UIs, Connect) reads the hub's schemas as they
//! are. Same paths, bodies, content type and error shape (`{"error_code", "message"}`) as
//! Confluent's. Reading is open, like the schemas themselves; registering a schema and changing
//! a compatibility level need the bearer token of an operator system.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::HttpState;
use crate::access::bearer_token;
use crate::registry::RegistryError;
use crate::registry::compatibility::Compatibility;
use crate::registry::store::{self, SchemaType, VersionSelector};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A JSON body, or why it is not one: handlers answer a bad body with Confluent's error shape
/// instead of axum's plain-text rejection.
type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        // Clients and UIs ask for the mode before writing; this registry is always read-write
        // (the hub's own subjects are protected per subject, not by a mode).
        .route("/mode", get(read_write))
        .route("/mode/{subject}", get(read_write))
        .route(
            "/schemas/types",
            get(|| async { reply(StatusCode::OK, json!(["AVRO", "JSON"])) }),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_compatibility),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_compatibility_with_all),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config).put(set_subject_config),
        )
}

/// A Confluent-style error: HTTP status plus `error_code` and `message`.
pub struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::SubjectNotFound(_) => Self::new(StatusCode::NOT_FOUND, 40401, message),
            RegistryError::VersionNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, 40402, message)
            }
            RegistryError::SchemaNotFound => Self::new(StatusCode::NOT_FOUND, 40403, message),
            RegistryError::SubjectSoftDeleted(_) => {
                Self::new(StatusCode::NOT_FOUND, 40404, message)
            }
            RegistryError::SubjectNotSoftDeleted(_) => {
                Self::new(StatusCode::NOT_FOUND, 40405, message)
            }
            RegistryError::VersionSoftDeleted { .. } => {
                Self::new(StatusCode::NOT_FOUND, 40406, message)
            }
            RegistryError::VersionNotSoftDeleted { .. } => {
                Self::new(StatusCode::NOT_FOUND, 40407, message)
            }
            RegistryError::InvalidSchema(_) | RegistryError::UnsupportedSchemaType(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, message)
            }
            RegistryError::InvalidVersion(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42202, message)
            }
            RegistryError::Incompatible { .. } => Self::new(StatusCode::CONFLICT, 409, message),
            RegistryError::Db(_)
            | RegistryError::Catalogue(_)
            | RegistryError::JsonSchema { .. } => {
                tracing::error!(error = %e, "schema registry request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    50001,
                    "error in the backend data store",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        reply(
            self.status,
            json!({"error_code": self.code, "message": self.message}),
        )
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Result<Response, ApiError> {
    Ok(reply(StatusCode::OK, body))
}

/// A registration or lookup request body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

impl SchemaBody {
    /// The schema's type and text.
    fn schema(&self) -> Result<(SchemaType, &str), ApiError> {
        let schema_type = SchemaType::parse(self.schema_type.as_deref())?;
        if !self.references.is_empty() {
            return Err(
                RegistryError::InvalidSchema("schema references are not supported".into()).into(),
            );
        }
        Ok((schema_type, &self.schema))
    }
}

/// Confluent clients send `{"schema": ...}`; reject anything else with Confluent's 422.
fn body(raw: Body<SchemaBody>) -> Result<SchemaBody, ApiError> {
    raw.map(|Json(b)| b).map_err(|e| {
        RegistryError::InvalidSchema(format!(
            "the request body must be {{\"schema\": \"...\"}}: {e}"
        ))
        .into()
    })
}

/// Confluent leaves `schemaType` out for Avro, its default.
fn with_type(mut body: Value, schema_type: SchemaType) -> Value {
    if schema_type != SchemaType::Avro {
        body["schemaType"] = json!(schema_type.as_str());
    }
    body
}

fn version_json(v: &store::SubjectVersion) -> Value {
    with_type(
        json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema}),
        v.schema_type,
    )
}

async fn authorize(state: &HttpState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            40101,
            "changing the registry needs `Authorization: Bearer <token>`",
        ));
    };
    match state.access.authenticate(Some(token), None).await {
        Ok(caller) if caller.operator => Ok(()),
        Ok(caller) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            40301,
            format!(
                "{} is not an operator: only operators change the registry",
                caller.system
            ),
        )),
        Err(failure) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            40101,
            failure.to_string(),
        )),
    }
}

/// `?deleted=true`: soft-deleted subjects and versions are listed too.
#[derive(Deserialize, Default)]
struct Deleted {
    #[serde(default)]
    deleted: bool,
}

/// `?permanent=true`: a delete removes what a soft delete hid.
#[derive(Deserialize, Default)]
struct Permanent {
    #[serde(default)]
    permanent: bool,
}

async fn subjects(
    State(state): State<HttpState>,
    Query(deleted): Query<Deleted>,
) -> Result<Response, ApiError> {
    ok(json!(store::subjects(&state.pool, deleted.deleted).await?))
}

async fn versions(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    Query(deleted): Query<Deleted>,
) -> Result<Response, ApiError> {
    let versions: Vec<i32> = store::versions(&state.pool, &subject, deleted.deleted)
        .await?
        .iter()
        .map(|v| v.version)
        .collect();
    ok(json!(versions))
}

async fn version(
    State(state): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
    Query(deleted): Query<Deleted>,
) -> Result<Response, ApiError> {
    let selector = VersionSelector::parse(&version)?;
    ok(version_json(
        &store::version(&state.pool, &subject, selector, deleted.deleted).await?,
    ))
}

/// Confluent's `DELETE /subjects/{subject}`: the version numbers deleted.
async fn delete_subject(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    Query(permanent): Query<Permanent>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    writable(&state, &subject)?;
    ok(json!(
        store::delete_subject(&state.pool, &subject, permanent.permanent).await?
    ))
}

/// Confluent's `DELETE /subjects/{subject}/versions/{version}`: the version number deleted.
async fn delete_version(
    State(state): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
    Query(permanent): Query<Permanent>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    writable(&state, &subject)?;
    let selector = VersionSelector::parse(&version)?;
    ok(json!(
        store::delete_version(&state.pool, &subject, selector, permanent.permanent).await?
    ))
}

async fn version_schema(
    State(state): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let selector = VersionSelector::parse(&version)?;
    let found = store::version(&state.pool, &subject, selector, false).await?;
    Ok(reply(
        StatusCode::OK,
        serde_json::from_str(&found.schema).unwrap_or(Value::String(found.schema)),
    ))
}

/// A schema id from the path; anything but a number names no schema (Confluent's 40403).
fn schema_id(raw: &str) -> Result<u32, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::from(RegistryError::SchemaNotFound))
}

async fn schema_text(state: &HttpState, id: u32) -> Result<(SchemaType, String), ApiError> {
    Ok(store::schema_text(&state.pool, id)
        .await?
        .ok_or(RegistryError::SchemaNotFound)?)
}

async fn schema_by_id(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = schema_id(&id)?;
    let (schema_type, schema) = schema_text(&state, id).await?;
    ok(with_type(json!({"schema": schema}), schema_type))
}

async fn raw_schema_by_id(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = schema_id(&id)?;
    let (_, schema) = schema_text(&state, id).await?;
    Ok(reply(
        StatusCode::OK,
        serde_json::from_str(&schema).unwrap_or(Value::String(schema)),
    ))
}

async fn read_write() -> Response {
    reply(StatusCode::OK, json!({"mode": "READWRITE"}))
}

async fn subjects_of_id(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = schema_id(&id)?;
    let mut subjects: Vec<String> = store::subject_versions_of(&state.pool, id)
        .await?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    if subjects.is_empty() {
        return Err(RegistryError::SchemaNotFound.into());
    }
    subjects.sort();
    subjects.dedup();
    ok(json!(subjects))
}

async fn versions_of_id(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = schema_id(&id)?;
    let pairs = store::subject_versions_of(&state.pool, id).await?;
    if pairs.is_empty() {
        return Err(RegistryError::SchemaNotFound.into());
    }
    ok(json!(
        pairs
            .into_iter()
            .map(|(subject, version)| json!({"subject": subject, "version": version}))
            .collect::<Vec<_>>()
    ))
}

/// Refuses a change to one of the hub's own subjects, naming the way to make it.
fn writable(state: &HttpState, subject: &str) -> Result<(), ApiError> {
    if state.registry.owns_subject(subject) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42205,
            format!(
                "subject {subject} is one of the hub's own event types, defined by schemas/ in \
                 git: change the .avsc there, check it with `lienthong schemas check`, and deploy; \
                 it is read-only here"
            ),
        ));
    }
    Ok(())
}

async fn register(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    raw: Body<SchemaBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    writable(&state, &subject)?;
    let body = body(raw)?;
    let (schema_type, schema) = body.schema()?;
    let registered = store::register(&state.pool, &subject, schema_type, schema).await?;
    ok(json!({"id": registered.id}))
}

async fn lookup(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    raw: Body<SchemaBody>,
) -> Result<Response, ApiError> {
    let body = body(raw)?;
    // Confluent answers 40401 for an unknown subject before looking at the schema.
    store::versions(&state.pool, &subject, false).await?;
    let (schema_type, schema) = body.schema()?;
    let found = store::lookup(&state.pool, &subject, schema_type, schema)
        .await?
        .ok_or(RegistryError::SchemaNotFound)?;
    ok(version_json(&found))
}

#[derive(Deserialize)]
struct Verbose {
    #[serde(default)]
    verbose: bool,
}

async fn check_compatibility(
    State(state): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
    Query(verbose): Query<Verbose>,
    raw: Body<SchemaBody>,
) -> Result<Response, ApiError> {
    let selector = VersionSelector::parse(&version)?;
    compatibility_answer(&state, &subject, Some(selector), verbose, raw).await
}

/// Against every version the subject's level names, as registration would check.
async fn check_compatibility_with_all(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    Query(verbose): Query<Verbose>,
    raw: Body<SchemaBody>,
) -> Result<Response, ApiError> {
    compatibility_answer(&state, &subject, None, verbose, raw).await
}

async fn compatibility_answer(
    state: &HttpState,
    subject: &str,
    selector: Option<VersionSelector>,
    verbose: Verbose,
    raw: Body<SchemaBody>,
) -> Result<Response, ApiError> {
    let body = body(raw)?;
    let (schema_type, schema) = body.schema()?;
    let problems =
        store::compatibility_problems(&state.pool, subject, selector, schema_type, schema).await?;
    let mut answer = json!({"is_compatible": problems.is_empty()});
    if verbose.verbose {
        answer["messages"] = json!(problems);
    }
    ok(answer)
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: String,
}

fn level(raw: Body<ConfigBody>) -> Result<Compatibility, ApiError> {
    let Json(body) = raw.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            format!("the body must be {{\"compatibility\": \"BACKWARD\"}}: {e}"),
        )
    })?;
    body.compatibility
        .parse()
        .map_err(|e: crate::registry::compatibility::UnknownCompatibility| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, 42203, e.to_string())
        })
}

async fn global_config(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let level = store::configured_compatibility(&state.pool, None)
        .await?
        .unwrap_or_default();
    ok(json!({"compatibilityLevel": level.as_str()}))
}

async fn set_global_config(
    State(state): State<HttpState>,
    headers: HeaderMap,
    raw: Body<ConfigBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let level = level(raw)?;
    store::set_compatibility(&state.pool, None, level).await?;
    ok(json!({"compatibility": level.as_str()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefaultToGlobal {
    #[serde(default)]
    default_to_global: bool,
}

async fn subject_config(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    Query(query): Query<DefaultToGlobal>,
) -> Result<Response, ApiError> {
    let level = match store::configured_compatibility(&state.pool, Some(&subject)).await? {
        Some(level) => level,
        None if query.default_to_global => store::configured_compatibility(&state.pool, None)
            .await?
            .unwrap_or_default(),
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                40408,
                format!(
                    "subject {subject:?} does not have a subject-level compatibility configured"
                ),
            ));
        }
    };
    ok(json!({"compatibilityLevel": level.as_str()}))
}

async fn set_subject_config(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    raw: Body<ConfigBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    writable(&state, &subject)?;
    let level = level(raw)?;
    store::set_compatibility(&state.pool, Some(&subject), level).await?;
    ok(json!({"compatibility": level.as_str()}))
}
