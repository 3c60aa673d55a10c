//! Where a polling source has read to, and which hub process reads it now (a lease in
//! `connector_source_position`). Every write is fenced by the lease: a process that lost it
//! (paused for longer than the lease, cut off from PostgreSQL) finds its writes refused and
//! stops, so two processes never move one position.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use crate::db::DbError;

/// A position in the origin: the cursor after the last record published, and how many records
/// of the page read at that cursor were published already.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Position {
    pub cursor: Option<String>,
    pub skip: i32,
}

/// A source's stored position, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub position: Position,
    /// The process leading the source, while its lease runs.
    pub owner: Option<String>,
    pub published: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "{owner} is reading this source now: stop the connector first \
         (lienthong connectors stop NAME), then reset its position"
    )]
    Leased { owner: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for ResetError {
    fn from(error: tokio_postgres::Error) -> Self {
        ResetError::Db(error.into())
    }
}

/// The lease is taken, renewed and kept by these; `process` names the holder.
pub struct Lease<'a> {
    pub pool: &'a Pool,
    pub name: &'a str,
    pub process: &'a str,
    pub length: Duration,
}

impl Lease<'_> {
    fn secs(&self) -> f64 {
        self.length.as_secs_f64()
    }

    /// Takes the source if nobody holds it (or its holder's lease lapsed); its position then.
    pub async fn acquire(&self) -> Result<Option<Position>, DbError> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "INSERT INTO connector_source_position AS p (name, owner, lease_until)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE
                     SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
                     WHERE p.owner IS NULL OR p.owner = EXCLUDED.owner OR p.lease_until < now()
                 RETURNING cursor, skip",
                &[&self.name, &self.process, &self.secs()],
            )
            .await?;
        Ok(row.map(|row| Position {
            cursor: row.get(0),
            skip: row.get(1),
        }))
    }

    /// Extends the lease; false when another process holds it now.
    pub async fn renew(&self) -> Result<bool, DbError> {
        let renewed = self
            .pool
            .get()
            .await?
            .execute(
                "UPDATE connector_source_position
                 SET lease_until = now() + make_interval(secs => $3)
                 WHERE name = $1 AND owner = $2",
                &[&self.name, &self.process, &self.secs()],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// The event id of the record about to be published (its SHA-256 `record`): the one it
    /// was given before if the last attempt was this record, else `fresh`. `None` when the
    /// lease was lost.
    pub async fn pending(&self, record: &[u8], fresh: Uuid) -> Result<Option<Uuid>, DbError> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "UPDATE connector_source_position
                 SET pending_event_id = CASE WHEN pending_sha256 = $3 THEN pending_event_id
                                             ELSE $4 END,
                     pending_sha256 = $3,
                     lease_until = now() + make_interval(secs => $5)
                 WHERE name = $1 AND owner = $2
                 RETURNING pending_event_id",
                &[&self.name, &self.process, &record, &fresh, &self.secs()],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Moves the position past what was published (`published` records more); false when the
    /// lease was lost.
    pub async fn advance(&self, to: &Position, published: i64) -> Result<bool, DbError> {
        let moved = self
            .pool
            .get()
            .await?
            .execute(
                "UPDATE connector_source_position
                 SET cursor = $3, skip = $4, pending_sha256 = NULL, pending_event_id = NULL,
                     published = published + $5, updated_at = now(),
                     lease_until = now() + make_interval(secs => $6)
                 WHERE name = $1 AND owner = $2",
                &[
                    &self.name,
                    &self.process,
                    &to.cursor,
                    &to.skip,
                    &published,
                    &self.secs(),
                ],
            )
            .await?;
        Ok(moved == 1)
    }

    /// Lets another process take the source at once (this one stops reading it).
    pub async fn release(&self) -> Result<(), DbError> {
        self.pool
            .get()
            .await?
            .execute(
                "UPDATE connector_source_position SET owner = NULL, lease_until = NULL
                 WHERE name = $1 AND owner = $2",
                &[&self.name, &self.process],
            )
            .await?;
        Ok(())
    }
}

/// The stored position of source `name`, if it ever ran.
pub async fn stored(pool: &Pool, name: &str) -> Result<Option<Stored>, DbError> {
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT cursor, skip, CASE WHEN lease_until > now() THEN owner END, published,
                    updated_at
             FROM connector_source_position WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|row| Stored {
        position: Position {
            cursor: row.get(0),
            skip: row.get(1),
        },
        owner: row.get(2),
        published: row.get(3),
        updated_at: row.get(4),
    }))
}

/// Sets the position of source `name`, which no process may be reading.
pub async fn reset(pool: &Pool, name: &str, to: &Position) -> Result<(), ResetError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO connector_source_position (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&name],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT CASE WHEN lease_until > now() THEN owner END
             FROM connector_source_position WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?;
    if let Some(owner) = row.get::<_, Option<String>>(0) {
        return Err(ResetError::Leased { owner });
    }
    tx.execute(
        "UPDATE connector_source_position
         SET cursor = $2, skip = $3, owner = NULL, lease_until = NULL, pending_sha256 = NULL,
             pending_event_id = NULL, updated_at = now()
         WHERE name = $1",
        &[&name, &to.cursor, &to.skip],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
