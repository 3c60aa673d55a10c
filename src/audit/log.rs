//! Reading the audit log and signing checkpoints over it. Entries are appended under one lock
//! (V20): transfers by the ledger's writer, administrators' changes by triggers through
//! `audit_append`. Positions commit in order (every append holds the lock until its
//! transaction ends), so a reader that sees entry n has seen every entry before it.

use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::{GenericClient, Pool};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, Verifiers};
use super::keys::Signer;
use super::merkle::{Frontier, Hash, digest};
use crate::db::DbError;

/// Entries read per query when walking the log.
const PAGE: i64 = 10_000;

/// One stored entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub position: i64,
    pub body: String,
    pub stored_digest: Vec<u8>,
}

/// What an entry's body says about its place in the log.
#[derive(Deserialize)]
struct Place {
    position: i64,
    previous: String,
}

/// Why an entry does not stand where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flaw {
    /// Entries before it are missing.
    Gap { expected: i64 },
    /// Its body does not hash to its stored digest.
    Altered,
    /// Its body is not an entry the hub writes.
    Unreadable,
    /// Its body names another position.
    Moved { says: i64 },
    /// Its body does not name the digest of the entry before it.
    Unchained,
}

impl Flaw {
    pub fn describe(&self, position: i64) -> String {
        match self {
            Self::Gap { expected } if position - expected == 1 => {
                format!("entry {expected} is missing (deleted)")
            }
            Self::Gap { expected } => {
                format!(
                    "entries {expected} to {} are missing (deleted)",
                    position - 1
                )
            }
            Self::Altered => {
                format!("entry {position} was altered: its body does not match its digest")
            }
            Self::Unreadable => format!("entry {position} is not an audit entry the hub writes"),
            Self::Moved { says } => {
                format!("entry {position} was moved or inserted: its body says it is entry {says}")
            }
            Self::Unchained => format!(
                "entry {position} does not follow entry {}: an entry between them was inserted, \
                 deleted or reordered",
                position - 1
            ),
        }
    }
}

/// Checks entries one after the other, as they are read in order.
#[derive(Default)]
pub struct Walk {
    next: i64,
    previous: Option<Vec<u8>>,
}

impl Walk {
    pub fn starting_at(next: i64, previous: Option<Vec<u8>>) -> Self {
        Self { next, previous }
    }

    /// The flaws of `entry`, the next one read, and its true digest (of its body as stored).
    pub fn check(&mut self, entry: &Entry) -> (Vec<Flaw>, Hash) {
        let mut flaws = Vec::new();
        if entry.position != self.next {
            flaws.push(Flaw::Gap {
                expected: self.next,
            });
        }
        let real = digest(entry.body.as_bytes());
        if entry.stored_digest != real {
            flaws.push(Flaw::Altered);
        }
        match serde_json::from_str::<Place>(&entry.body) {
            Err(_) => flaws.push(Flaw::Unreadable),
            Ok(place) => {
                if place.position != entry.position {
                    flaws.push(Flaw::Moved {
                        says: place.position,
                    });
                }
                let expected = self.previous.as_ref().map(hex::encode).unwrap_or_default();
                let gap_reported = matches!(flaws.first(), Some(Flaw::Gap { .. }));
                if place.previous != expected && !gap_reported {
                    flaws.push(Flaw::Unchained);
                }
            }
        }
        self.next = entry.position + 1;
        self.previous = Some(entry.stored_digest.clone());
        (flaws, real)
    }
}

/// Hands the entries from position `from` on to `each`, in order, a page at a time, until
/// the log ends or `each` answers false.
pub async fn for_each_entry<E: From<DbError>>(
    client: &impl GenericClient,
    from: i64,
    mut each: impl FnMut(Entry) -> Result<bool, E>,
) -> Result<(), E> {
    let mut from = from;
    loop {
        let rows = client
            .query(
                "SELECT position, body, digest FROM audit_log
                 WHERE position >= $1 ORDER BY position LIMIT $2",
                &[&from, &PAGE],
            )
            .await
            .map_err(DbError::from)?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        from = last.get::<_, i64>(0) + 1;
        for row in &rows {
            let entry = Entry {
                position: row.get(0),
                body: row.get(1),
                stored_digest: row.get(2),
            };
            if !each(entry)? {
                return Ok(());
            }
        }
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub tree_size: i64,
    pub frontier: Vec<u8>,
    pub note: String,
}

const CHECKPOINT_COLUMNS: &str = "tree_size, frontier, note";

fn stored_checkpoint(row: &tokio_postgres::Row) -> StoredCheckpoint {
    StoredCheckpoint {
        tree_size: row.get(0),
        frontier: row.get(1),
        note: row.get(2),
    }
}

pub async fn checkpoints(client: &impl GenericClient) -> Result<Vec<StoredCheckpoint>, DbError> {
    let rows = client
        .query(
            &format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY tree_size"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(stored_checkpoint).collect())
}

pub async fn latest_checkpoint(
    client: &impl GenericClient,
) -> Result<Option<StoredCheckpoint>, DbError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY tree_size DESC LIMIT 1"
            ),
            &[],
        )
        .await?;
    Ok(row.as_ref().map(stored_checkpoint))
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("not signed: {0}; run `lienthong audit verify`")]
    Flawed(String),
}

/// What [`make_checkpoint`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointed {
    /// A checkpoint was signed for this many entries.
    Signed(i64),
    /// The latest checkpoint already covers every entry (this many; 0 for an empty log).
    Current(i64),
    /// Another process of the hub is signing one now.
    Elsewhere,
}

/// The advisory lock one checkpoint signer holds for its transaction. Small numbers: the
/// database driver's debug log prints them, and a ten-digit one reads like an ID number.
const SIGNER_LOCK: (i32, i32) = (4_242, 1);

/// Signs a checkpoint over every entry committed so far, when there are entries the latest
/// one does not cover. Entries since the latest checkpoint are
/// checked first (digest, position, chain): the hub never signs over a damaged log.
pub async fn make_checkpoint(
    pool: &Pool,
    signer: &Signer,
    verifiers: &Verifiers,
) -> Result<Checkpointed, CheckpointError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    // One signer at a time among the hub's processes: the others sign nothing this tick.
    let held: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&SIGNER_LOCK.0, &SIGNER_LOCK.1],
        )
        .await
        .map_err(DbError::from)?
        .get(0);
    if !held {
        return Ok(Checkpointed::Elsewhere);
    }
    let latest = latest_checkpoint(&tx).await?;
    let (mut frontier, mut walk) = match &latest {
        None => (Frontier::default(), Walk::default()),
        Some(stored) => {
            let size = u64::try_from(stored.tree_size).unwrap_or_default();
            // The frontier is only trusted when it gives the root the hub itself signed:
            // whoever can write the table cannot make the hub sign over a history of theirs.
            let signed = verifiers
                .open(&stored.note)
                .ok()
                .filter(|c| c.tree_size == size)
                .ok_or_else(|| {
                    CheckpointError::Flawed(format!(
                        "the checkpoint at tree size {} is not signed with this hub's key \
                         (audit.signing_key_file) nor a rotated one \
                         (audit.previous_verifier_keys): altered, or signed with another key",
                        stored.tree_size
                    ))
                })?;
            let frontier = Frontier::from_bytes(size, &stored.frontier)
                .filter(|f| f.root() == Some(signed.root))
                .ok_or_else(|| {
                    CheckpointError::Flawed(format!(
                        "the checkpoint at tree size {} does not match its signed root",
                        stored.tree_size
                    ))
                })?;
            let previous = tx
                .query_opt(
                    "SELECT digest FROM audit_log WHERE position = $1",
                    &[&(stored.tree_size - 1)],
                )
                .await
                .map_err(DbError::from)?
                .map(|row| row.get::<_, Vec<u8>>(0));
            (frontier, Walk::starting_at(stored.tree_size, previous))
        }
    };
    let start = i64::try_from(frontier.size()).unwrap_or(i64::MAX);
    for_each_entry(&tx, start, |entry| {
        let (flaws, real) = walk.check(&entry);
        if let Some(flaw) = flaws.first() {
            return Err(CheckpointError::Flawed(flaw.describe(entry.position)));
        }
        frontier.push(&real);
        Ok(true)
    })
    .await?;
    let size = i64::try_from(frontier.size()).unwrap_or(i64::MAX);
    let Some(root) = frontier.root().filter(|_| size > start) else {
        return Ok(Checkpointed::Current(size));
    };
    let at = Utc::now();
    let note = checkpoint::sign(signer, frontier.size(), &root, at);
    tx.execute(
        "INSERT INTO audit_checkpoint (tree_size, root, frontier, signed_at, note)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
        &[&size, &root.as_slice(), &frontier.to_bytes(), &at, &note],
    )
    .await
    .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Checkpointed::Signed(size))
}

/// Signs a checkpoint every `interval` until `stop`.
pub async fn keep_checkpointing(
    pool: Pool,
    signer: std::sync::Arc<Signer>,
    verifiers: Verifiers,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(error) = make_checkpoint(&pool, &signer, &verifiers).await {
            tracing::error!(%error, "audit checkpoint not signed");
        }
    }
}
