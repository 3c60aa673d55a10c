//! Reading the access policy from PostgreSQL into one [`Snapshot`].

use std::collections::HashMap;

use deadpool_postgres::Pool;

use super::policy::{CredentialEntry, RIGHT_COLUMNS, Right, Snapshot, SystemEntry};
use crate::db::DbError;
use crate::domain::SystemId;

/// The generation the database is at now.
pub(super) async fn current_generation(pool: &Pool) -> Result<i64, DbError> {
    Ok(pool
        .get()
        .await?
        .query_one("SELECT generation FROM access_generation", &[])
        .await?
        .get(0))
}

/// Reads systems, credentials and rights as of one moment.
pub(super) async fn read_snapshot(pool: &Pool) -> Result<Snapshot, DbError> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let generation: i64 = tx
        .query_one("SELECT generation FROM access_generation", &[])
        .await?
        .get(0);
    let mut systems = HashMap::new();
    for row in tx
        .query(
            "SELECT id, operator, disabled_at IS NOT NULL FROM member_system",
            &[],
        )
        .await?
    {
        // Ids were parsed on the way in; a row that no longer parses grants nothing.
        if let Ok(id) = SystemId::parse(row.get(0)) {
            systems.insert(
                id,
                SystemEntry {
                    operator: row.get(1),
                    disabled: row.get(2),
                },
            );
        }
    }
    let mut tokens = HashMap::new();
    let mut certificates = HashMap::new();
    let mut credentials = HashMap::new();
    for row in tx
        .query(
            "SELECT id, system_id, token_hash, expires_at, revoked_at IS NOT NULL,
                    kind = 'certificate'
             FROM system_credential",
            &[],
        )
        .await?
    {
        if let Ok(system) = SystemId::parse(row.get(1)) {
            let id: i64 = row.get(0);
            let by_kind = if row.get(5) {
                &mut certificates
            } else {
                &mut tokens
            };
            by_kind.insert(row.get::<_, String>(2), id);
            credentials.insert(
                id,
                CredentialEntry {
                    id,
                    system,
                    expires_at: row.get(3),
                    revoked: row.get(4),
                },
            );
        }
    }
    let mut rights: HashMap<SystemId, Vec<Right>> = HashMap::new();
    let in_force = format!("SELECT {RIGHT_COLUMNS} FROM access_right WHERE revoked_at IS NULL");
    for row in tx.query(&in_force, &[]).await? {
        if let Some(right) = Right::from_row(&row) {
            rights.entry(right.system.clone()).or_default().push(right);
        }
    }
    tx.commit().await?;
    Ok(Snapshot {
        generation,
        tokens,
        certificates,
        credentials,
        systems,
        rights,
    })
}
