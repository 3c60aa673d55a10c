//! The registry's PostgreSQL tables: global schema ids and per-subject versions. Registration is
//! idempotent (the same schema keeps its id and version) and serialised per subject with an
//! advisory lock, so several hubs starting together agree on ids.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use deadpool_postgres::Pool;
use sha2::{Digest as _, Sha256};

use super::RegistryError;

/// A schema as registered under a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub version: i32,
}

/// A stable fingerprint of a schema text: SHA-256 of its JSON with keys sorted and no spaces,
/// so formatting changes do not create new ids, but any change of meaning (doc, default,
/// logical type) does.
fn fingerprint(schema_text: &str) -> Result<String, RegistryError> {
    let value: serde_json::Value = serde_json::from_str(schema_text)
        .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(value.to_string().as_bytes())))
}

/// Registers `schema_text` under `subject`, or returns the existing registration. A new version
/// must be BACKWARD compatible with the latest one: consumers using it can read older records.
pub async fn register(
    pool: &Pool,
    subject: &str,
    schema_text: &str,
) -> Result<Registered, RegistryError> {
    let fingerprint = fingerprint(schema_text)?;
    let new_schema =
        Schema::parse_str(schema_text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    let mut client = pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(crate::db::DbError::from)?;
    let query = |e| RegistryError::Db(crate::db::DbError::Query(e));
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&subject])
        .await
        .map_err(query)?;
    let existing = tx
        .query_opt(
            "SELECT v.schema_id, v.version FROM registry_subject_version v
             JOIN registry_schema s ON s.id = v.schema_id
             WHERE v.subject = $1 AND s.fingerprint = $2",
            &[&subject, &fingerprint],
        )
        .await
        .map_err(query)?;
    if let Some(row) = existing {
        return Ok(Registered {
            id: id_from_db(row.get(0)),
            version: row.get(1),
        });
    }
    let latest = tx
        .query_opt(
            "SELECT s.schema_text, v.version FROM registry_subject_version v
             JOIN registry_schema s ON s.id = v.schema_id
             WHERE v.subject = $1 ORDER BY v.version DESC LIMIT 1",
            &[&subject],
        )
        .await
        .map_err(query)?;
    let version = match latest {
        Some(row) => {
            let old_text: String = row.get(0);
            let old = Schema::parse_str(&old_text)
                .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
            SchemaCompatibility::can_read(&old, &new_schema).map_err(|e| {
                RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    reason: e.to_string(),
                }
            })?;
            row.get::<_, i32>(1) + 1
        }
        None => 1,
    };
    tx.execute(
        "INSERT INTO registry_schema (schema_text, fingerprint) VALUES ($1, $2)
         ON CONFLICT (fingerprint) DO NOTHING",
        &[&schema_text, &fingerprint],
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

/// The text of schema `id`, if registered.
pub async fn schema_text(pool: &Pool, id: u32) -> Result<Option<String>, RegistryError> {
    let Ok(id) = i32::try_from(id) else {
        return Ok(None);
    };
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT schema_text FROM registry_schema WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(|e| RegistryError::Db(crate::db::DbError::Query(e)))?;
    Ok(row.map(|r| r.get(0)))
}

fn id_from_db(id: i32) -> u32 {
    u32::try_from(id).expect("SERIAL ids are positive")
}
