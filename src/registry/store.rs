//! The registry's PostgreSQL tables: global schema ids, per-subject versions and compatibility
//! levels. Registration is idempotent (the same schema keeps its id and version) and serialised
//! per subject with an advisory lock, so several hubs starting together agree on ids.

use apache_avro::Schema;
use deadpool_postgres::Pool;
use sha2::{Digest as _, Sha256};
use tokio_postgres::GenericClient;

use super::RegistryError;
use super::compatibility::Compatibility;
use crate::db::DbError;

/// A schema as registered under a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub version: i32,
}

/// The kinds of schema kept (Confluent's `schemaType`): Avro, which the hub's own events use,
/// and JSON Schema, which member systems may register for their own subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaType {
    #[default]
    Avro,
    Json,
}

impl SchemaType {
    /// Confluent's `schemaType` field; absent means AVRO.
    pub fn parse(raw: Option<&str>) -> Result<Self, RegistryError> {
        match raw {
            None | Some("AVRO") => Ok(Self::Avro),
            Some("JSON") => Ok(Self::Json),
            Some(other) => Err(RegistryError::UnsupportedSchemaType(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Json => "JSON",
        }
    }

    fn from_db(raw: &str) -> Self {
        if raw == "JSON" {
            Self::Json
        } else {
            Self::Avro
        }
    }
}

/// One version of a subject, with its schema text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub id: u32,
    pub schema_type: SchemaType,
    pub schema: String,
}

/// Which version of a subject: a number or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(i32),
}

impl VersionSelector {
    /// Parses Confluent's `{version}` path segment: a positive number, `latest` or `-1`.
    pub fn parse(raw: &str) -> Result<Self, RegistryError> {
        match raw {
            "latest" | "-1" => Ok(Self::Latest),
            n => match n.parse::<i32>() {
                Ok(v) if v >= 1 => Ok(Self::Number(v)),
                _ => Err(RegistryError::InvalidVersion(raw.to_owned())),
            },
        }
    }
}

fn query(e: tokio_postgres::Error) -> RegistryError {
    RegistryError::Db(DbError::Query(e))
}

fn id_from_db(id: i32) -> u32 {
    u32::try_from(id).expect("SERIAL ids are positive")
}

/// Parses an Avro schema text and computes its fingerprint: SHA-256 of its JSON with keys sorted
/// and no spaces, so formatting does not create new ids, but any change of meaning (doc,
/// default, logical type) does.
pub fn parse(schema_text: &str) -> Result<(Schema, String), RegistryError> {
    let value: serde_json::Value = serde_json::from_str(schema_text)
        .map_err(|e| RegistryError::InvalidSchema(format!("not JSON: {e}")))?;
    let schema = Schema::parse(&value).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    Ok((
        schema,
        hex::encode(Sha256::digest(value.to_string().as_bytes())),
    ))
}

/// A JSON Schema checked against its draft's meta-schema, and its fingerprint (apart from
/// Avro's: the same text may be both). Only the bundled drafts are accepted: a `$schema` naming
/// another would have the hub fetch it from wherever it points.
fn parse_json_schema(schema_text: &str) -> Result<String, RegistryError> {
    let value: serde_json::Value = serde_json::from_str(schema_text)
        .map_err(|e| RegistryError::InvalidSchema(format!("not JSON: {e}")))?;
    if value.get("$schema").is_some()
        && jsonschema::Draft::default().detect(&value) == jsonschema::Draft::Unknown
    {
        return Err(RegistryError::InvalidSchema(
            "$schema must name a JSON Schema draft: 4, 6, 7, 2019-09 or 2020-12".to_owned(),
        ));
    }
    jsonschema::meta::validate(&value)
        .map_err(|e| RegistryError::InvalidSchema(format!("not a valid JSON Schema: {e}")))?;
    Ok(hex::encode(Sha256::digest(
        format!("JSON\n{value}").as_bytes(),
    )))
}

/// A schema of `schema_type` checked, with its fingerprint; the Avro schema for compatibility
/// checks (none for JSON Schema).
fn parse_typed(
    schema_type: SchemaType,
    schema_text: &str,
) -> Result<(Option<Schema>, String), RegistryError> {
    match schema_type {
        SchemaType::Avro => {
            parse(schema_text).map(|(schema, fingerprint)| (Some(schema), fingerprint))
        }
        SchemaType::Json => parse_json_schema(schema_text).map(|fingerprint| (None, fingerprint)),
    }
}

/// Why `new` (of `schema_type`) cannot follow `earlier` at `level`; empty when it can.
fn problems_with(
    subject: &str,
    level: Compatibility,
    schema_type: SchemaType,
    new: Option<&Schema>,
    earlier: &[SubjectVersion],
) -> Result<Vec<String>, RegistryError> {
    if let Some(other) = earlier.iter().find(|v| v.schema_type != schema_type) {
        return Ok(vec![format!(
            "subject {subject} holds {} schemas: a {} schema cannot follow them",
            other.schema_type.as_str(),
            schema_type.as_str()
        )]);
    }
    match new {
        Some(new) => Ok(level.check(new, &parse_all(earlier)?)),
        // Confluent's JSON Schema compatibility rules are not implemented: say so rather than
        // let an incompatible version through.
        None if earlier.is_empty() || level == Compatibility::None => Ok(Vec::new()),
        None => Ok(vec![format!(
            "this registry does not check the compatibility of JSON schemas: set subject \
             {subject}'s compatibility to NONE (PUT /config/{subject}) to register another version"
        )]),
    }
}

/// Registers `schema_text` under `subject`, or returns the existing registration. A new version
/// must satisfy the subject's compatibility level (BACKWARD unless configured otherwise).
pub async fn register(
    pool: &Pool,
    subject: &str,
    schema_type: SchemaType,
    schema_text: &str,
) -> Result<Registered, RegistryError> {
    let (new_schema, fingerprint) = parse_typed(schema_type, schema_text)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(query)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&subject])
        .await
        .map_err(query)?;
    if let Some(found) = find(&*tx, subject, &fingerprint).await? {
        return Ok(Registered {
            id: found.id,
            version: found.version,
        });
    }
    let earlier = all_versions(&*tx, subject, false).await?;
    let level = effective_compatibility(&*tx, subject).await?;
    let problems = problems_with(subject, level, schema_type, new_schema.as_ref(), &earlier)?;
    if !problems.is_empty() {
        return Err(RegistryError::Incompatible {
            subject: subject.to_owned(),
            level,
            reason: problems.join("; "),
        });
    }
    // A soft-deleted version keeps its number (a reader holding it must not find another
    // schema under it); one deleted for good frees it, as in Confluent.
    let version: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) + 1 FROM registry_subject_version WHERE subject = $1",
            &[&subject],
        )
        .await
        .map_err(query)?
        .get(0);
    tx.execute(
        "INSERT INTO registry_schema (schema_type, schema_text, fingerprint) VALUES ($1, $2, $3)
         ON CONFLICT (fingerprint) DO NOTHING",
        &[&schema_type.as_str(), &schema_text, &fingerprint],
    )
    .await
    .map_err(query)?;
    let id: i32 = tx
        .query_one(
            "SELECT id FROM registry_schema WHERE fingerprint = $1",
            &[&fingerprint],
        )
        .await
        .map_err(query)?
        .get(0);
    tx.execute(
        "INSERT INTO registry_subject_version (subject, version, schema_id) VALUES ($1, $2, $3)",
        &[&subject, &version, &id],
    )
    .await
    .map_err(query)?;
    tx.commit().await.map_err(query)?;
    tracing::info!(subject, version, schema_id = id, "schema registered");
    Ok(Registered {
        id: id_from_db(id),
        version,
    })
}

fn parse_all(versions: &[SubjectVersion]) -> Result<Vec<Schema>, RegistryError> {
    versions
        .iter()
        .map(|v| parse(&v.schema).map(|(schema, _)| schema))
        .collect()
}

async fn find(
    client: &impl GenericClient,
    subject: &str,
    fingerprint: &str,
) -> Result<Option<SubjectVersion>, RegistryError> {
    let row = client
        .query_opt(
            "SELECT v.version, v.schema_id, s.schema_text, s.schema_type
             FROM registry_subject_version v JOIN registry_schema s ON s.id = v.schema_id
             WHERE v.subject = $1 AND s.fingerprint = $2 AND v.deleted_at IS NULL",
            &[&subject, &fingerprint],
        )
        .await
        .map_err(query)?;
    Ok(row.map(|row| subject_version(subject, &row)))
}

/// A row of (version, schema id, schema text, schema type) as a subject's version.
fn subject_version(subject: &str, row: &tokio_postgres::Row) -> SubjectVersion {
    SubjectVersion {
        subject: subject.to_owned(),
        version: row.get(0),
        id: id_from_db(row.get(1)),
        schema: row.get(2),
        schema_type: SchemaType::from_db(row.get(3)),
    }
}

/// The subject's versions, oldest first: the live ones, and the soft-deleted ones too when
/// `deleted`.
async fn all_versions(
    client: &impl GenericClient,
    subject: &str,
    deleted: bool,
) -> Result<Vec<SubjectVersion>, RegistryError> {
    let rows = client
        .query(
            "SELECT v.version, v.schema_id, s.schema_text, s.schema_type
             FROM registry_subject_version v JOIN registry_schema s ON s.id = v.schema_id
             WHERE v.subject = $1 AND ($2 OR v.deleted_at IS NULL) ORDER BY v.version",
            &[&subject, &deleted],
        )
        .await
        .map_err(query)?;
    Ok(rows
        .iter()
        .map(|row| subject_version(subject, row))
        .collect())
}

/// The registration of exactly this schema under `subject`, if any.
pub async fn lookup(
    pool: &Pool,
    subject: &str,
    schema_type: SchemaType,
    schema_text: &str,
) -> Result<Option<SubjectVersion>, RegistryError> {
    let (_, fingerprint) = parse_typed(schema_type, schema_text)?;
    find(&**pool.get().await?, subject, &fingerprint).await
}

/// The subjects with a live version, or with any version when `deleted`.
pub async fn subjects(pool: &Pool, deleted: bool) -> Result<Vec<String>, RegistryError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT DISTINCT subject FROM registry_subject_version
             WHERE $1 OR deleted_at IS NULL ORDER BY subject",
            &[&deleted],
        )
        .await
        .map_err(query)?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// Every version of `subject`, oldest first (with the soft-deleted ones when `deleted`); an
/// unknown subject is an error.
pub async fn versions(
    pool: &Pool,
    subject: &str,
    deleted: bool,
) -> Result<Vec<SubjectVersion>, RegistryError> {
    let versions = all_versions(&**pool.get().await?, subject, deleted).await?;
    if versions.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    Ok(versions)
}

pub async fn version(
    pool: &Pool,
    subject: &str,
    selector: VersionSelector,
    deleted: bool,
) -> Result<SubjectVersion, RegistryError> {
    let versions = versions(pool, subject, deleted).await?;
    let found = match selector {
        VersionSelector::Latest => versions.last(),
        VersionSelector::Number(n) => versions.iter().find(|v| v.version == n),
    };
    found
        .cloned()
        .ok_or_else(|| RegistryError::VersionNotFound {
            subject: subject.to_owned(),
        })
}

/// The type and text of schema `id`, if registered.
pub async fn schema_text(
    pool: &Pool,
    id: u32,
) -> Result<Option<(SchemaType, String)>, RegistryError> {
    let Ok(id) = i32::try_from(id) else {
        return Ok(None);
    };
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT schema_type, schema_text FROM registry_schema WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(query)?;
    Ok(row.map(|r| (SchemaType::from_db(r.get(0)), r.get(1))))
}

/// The (subject, version) pairs that use schema `id`.
pub async fn subject_versions_of(
    pool: &Pool,
    id: u32,
) -> Result<Vec<(String, i32)>, RegistryError> {
    let Ok(id) = i32::try_from(id) else {
        return Ok(Vec::new());
    };
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT subject, version FROM registry_subject_version
             WHERE schema_id = $1 AND deleted_at IS NULL ORDER BY subject, version",
            &[&id],
        )
        .await
        .map_err(query)?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Problems that would stop `schema_text` from becoming a new version: checked against one
/// version (`Some`, as Confluent's `/compatibility/subjects/{s}/versions/{v}` does) or against
/// the versions the subject's level names (`None`, as registration would).
pub async fn compatibility_problems(
    pool: &Pool,
    subject: &str,
    selector: Option<VersionSelector>,
    schema_type: SchemaType,
    schema_text: &str,
) -> Result<Vec<String>, RegistryError> {
    let (new_schema, _) = parse_typed(schema_type, schema_text)?;
    let client = pool.get().await?;
    let level = effective_compatibility(&**client, subject).await?;
    drop(client);
    let versions = versions(pool, subject, false).await?;
    let against: Vec<SubjectVersion> = match selector {
        None => versions,
        Some(VersionSelector::Latest) => versions.into_iter().last().into_iter().collect(),
        Some(VersionSelector::Number(n)) => {
            let one = versions
                .into_iter()
                .find(|v| v.version == n)
                .ok_or_else(|| RegistryError::VersionNotFound {
                    subject: subject.to_owned(),
                })?;
            vec![one]
        }
    };
    problems_with(subject, level, schema_type, new_schema.as_ref(), &against)
}

const GLOBAL: &str = "";

/// The level configured for `subject` (or the global level for `None`), if any.
pub async fn configured_compatibility(
    pool: &Pool,
    subject: Option<&str>,
) -> Result<Option<Compatibility>, RegistryError> {
    configured(&**pool.get().await?, subject.unwrap_or(GLOBAL)).await
}

async fn configured(
    client: &impl GenericClient,
    key: &str,
) -> Result<Option<Compatibility>, RegistryError> {
    let row = client
        .query_opt(
            "SELECT compatibility FROM registry_config WHERE subject = $1",
            &[&key],
        )
        .await
        .map_err(query)?;
    // Only valid levels are ever written, so a value that does not parse is not expected; it
    // falls back to the default rather than blocking every registration.
    Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
}

async fn effective_compatibility(
    client: &impl GenericClient,
    subject: &str,
) -> Result<Compatibility, RegistryError> {
    if let Some(level) = configured(client, subject).await? {
        return Ok(level);
    }
    Ok(configured(client, GLOBAL).await?.unwrap_or_default())
}

pub async fn set_compatibility(
    pool: &Pool,
    subject: Option<&str>,
    level: Compatibility,
) -> Result<(), RegistryError> {
    pool.get()
        .await?
        .execute(
            "INSERT INTO registry_config (subject, compatibility) VALUES ($1, $2)
             ON CONFLICT (subject) DO UPDATE SET compatibility = $2, updated_at = now()",
            &[&subject.unwrap_or(GLOBAL), &level.as_str()],
        )
        .await
        .map_err(query)?;
    Ok(())
}

/// Every version of `subject` and whether it is soft-deleted, oldest first, read under the
/// subject's lock (the one registration takes) for the rest of `tx`; an unknown subject is an
/// error.
async fn deletion_states(
    tx: &tokio_postgres::Transaction<'_>,
    subject: &str,
) -> Result<Vec<(i32, bool)>, RegistryError> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&subject])
        .await
        .map_err(query)?;
    let states: Vec<(i32, bool)> = tx
        .query(
            "SELECT version, deleted_at IS NOT NULL FROM registry_subject_version
             WHERE subject = $1 ORDER BY version",
            &[&subject],
        )
        .await
        .map_err(query)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if states.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    Ok(states)
}

/// Deletes every version of `subject`: soft (hidden, schema ids kept) or, after a soft delete,
/// `permanent`. Returns the version numbers deleted.
pub async fn delete_subject(
    pool: &Pool,
    subject: &str,
    permanent: bool,
) -> Result<Vec<i32>, RegistryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(query)?;
    let states = deletion_states(&tx, subject).await?;
    let all_soft_deleted = states.iter().all(|(_, deleted)| *deleted);
    let deleted = match (permanent, all_soft_deleted) {
        (false, true) => return Err(RegistryError::SubjectSoftDeleted(subject.to_owned())),
        (true, false) => return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned())),
        (false, false) => {
            tx.query(
                "UPDATE registry_subject_version SET deleted_at = now()
                 WHERE subject = $1 AND deleted_at IS NULL RETURNING version",
                &[&subject],
            )
            .await
        }
        (true, true) => {
            tx.query(
                "DELETE FROM registry_subject_version WHERE subject = $1 RETURNING version",
                &[&subject],
            )
            .await
        }
    }
    .map_err(query)?;
    tx.commit().await.map_err(query)?;
    let mut versions: Vec<i32> = deleted.iter().map(|r| r.get(0)).collect();
    versions.sort_unstable();
    tracing::info!(subject, ?versions, permanent, "subject deleted");
    Ok(versions)
}

/// Deletes one version of `subject`: soft or, after a soft delete, `permanent`. `latest` names
/// the newest live version (the newest soft-deleted one for a permanent delete).
pub async fn delete_version(
    pool: &Pool,
    subject: &str,
    selector: VersionSelector,
    permanent: bool,
) -> Result<i32, RegistryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(query)?;
    let states = deletion_states(&tx, subject).await?;
    let found = match selector {
        VersionSelector::Number(n) => states.iter().find(|(v, _)| *v == n),
        VersionSelector::Latest => states.iter().rfind(|(_, deleted)| *deleted == permanent),
    };
    let Some(&(version, soft_deleted)) = found else {
        return Err(RegistryError::VersionNotFound {
            subject: subject.to_owned(),
        });
    };
    match (permanent, soft_deleted) {
        (false, true) => {
            return Err(RegistryError::VersionSoftDeleted {
                subject: subject.to_owned(),
                version,
            });
        }
        (true, false) => {
            return Err(RegistryError::VersionNotSoftDeleted {
                subject: subject.to_owned(),
                version,
            });
        }
        (false, false) => {
            tx.execute(
                "UPDATE registry_subject_version SET deleted_at = now()
                 WHERE subject = $1 AND version = $2",
                &[&subject, &version],
            )
            .await
        }
        (true, true) => {
            tx.execute(
                "DELETE FROM registry_subject_version WHERE subject = $1 AND version = $2",
                &[&subject, &version],
            )
            .await
        }
    }
    .map_err(query)?;
    tx.commit().await.map_err(query)?;
    tracing::info!(subject, version, permanent, "schema version deleted");
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_schemas_are_checked_against_a_bundled_draft_without_fetching() {
        assert!(parse_json_schema(r#"{"type": "object"}"#).is_ok());
        assert!(
            parse_json_schema("true").is_ok(),
            "a boolean schema is valid"
        );
        for (text, part) in [
            (r#"{"type": 12}"#, "not a valid JSON Schema"),
            (
                r#"{"$schema": 5, "type": "object"}"#,
                "not a valid JSON Schema",
            ),
            (r#"{"$schema": "http://127.0.0.1:9/meta"}"#, "draft"),
            ("[1, 2]", "not a valid JSON Schema"),
            ("{", "not JSON"),
        ] {
            let error = parse_json_schema(text).expect_err(text).to_string();
            assert!(error.contains(part), "{text}: {error}");
        }
        // One text, two schemas: the fingerprints differ by type.
        let text = r#"{"type": "string"}"#;
        assert_ne!(
            parse_typed(SchemaType::Json, text).unwrap().1,
            parse_typed(SchemaType::Avro, text).unwrap().1
        );
    }
}
