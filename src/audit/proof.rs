//! Inclusion proofs an outside party checks without our database: the entry as stored, its
//! position, the hashes on its path to the root, and the signed checkpoint whose root they
//! reach (`lienthong audit prove`). `lienthong audit check-proof` (or any RFC 6962 verifier
//! with the published key) checks one offline.

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, NoteError, Verifier};
use super::log::{for_each_entry, latest_checkpoint};
use super::merkle::{Tree, digest, root_of};
use crate::db::DbError;

/// Names the format, so a reader knows what it holds.
pub const FORMAT: &str = "lienthong-audit-inclusion-proof/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    pub format: String,
    pub position: u64,
    /// The entry's body, exactly as hashed.
    pub entry: String,
    pub tree_size: u64,
    /// The audit path, leaf to root, hexadecimal.
    pub path: Vec<String>,
    /// The signed checkpoint (C2SP signed note) the path reaches.
    pub checkpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("there is no entry {0}")]
    NoEntry(i64),
    #[error(
        "entry {0} is not under a signed checkpoint yet (one is signed every \
         audit.checkpoint_interval_ms; `lienthong audit checkpoint` signs one now)"
    )]
    NotSigned(i64),
    #[error("the log does not match its latest checkpoint: run `lienthong audit verify`")]
    Mismatch,
}

/// The proof that entry `position` is in the log, against the latest checkpoint.
pub async fn prove(pool: &Pool, position: i64) -> Result<Proof, ProveError> {
    let client = pool.get().await.map_err(DbError::from)?;
    let latest = latest_checkpoint(&client)
        .await?
        .ok_or(ProveError::NotSigned(position))?;
    if position < 0 {
        return Err(ProveError::NoEntry(position));
    }
    if position >= latest.tree_size {
        let exists = client
            .query_opt("SELECT 1 FROM audit_log WHERE position = $1", &[&position])
            .await
            .map_err(DbError::from)?;
        return Err(match exists {
            Some(_) => ProveError::NotSigned(position),
            None => ProveError::NoEntry(position),
        });
    }
    let mut tree = Tree::new();
    let mut entry = None;
    for_each_entry(&client, 0, |stored| {
        if stored.position >= latest.tree_size {
            return Ok::<_, DbError>(false);
        }
        tree.push(digest(stored.body.as_bytes()));
        if stored.position == position {
            entry = Some(stored.body);
        }
        Ok(true)
    })
    .await?;
    let entry = entry.ok_or(ProveError::Mismatch)?;
    let size = u64::try_from(latest.tree_size).unwrap_or_default();
    if tree.len() != size {
        return Err(ProveError::Mismatch);
    }
    let index = usize::try_from(position).map_err(|_| ProveError::NoEntry(position))?;
    let path = tree
        .prove_inclusion(index)
        .as_bytes()
        .chunks(32)
        .map(hex::encode)
        .collect();
    let proof = Proof {
        format: FORMAT.to_owned(),
        position: index as u64,
        entry,
        tree_size: size,
        path,
        checkpoint: latest.note,
    };
    // What the proof's reader will check, checked here first (without the signature, which
    // the reader checks with the published key).
    let root = root_of(&tree);
    let expected = super::checkpoint::body_root(&proof.checkpoint);
    if expected != Some(root) {
        return Err(ProveError::Mismatch);
    }
    Ok(proof)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("not a {FORMAT} document")]
    Format,
    #[error(transparent)]
    Checkpoint(#[from] NoteError),
    #[error("the proof is for {proof} entries, its checkpoint for {checkpoint}")]
    SizeMismatch { proof: u64, checkpoint: u64 },
    #[error("the entry says it is entry {says}, the proof is for entry {position}")]
    WrongEntry { says: i64, position: u64 },
    #[error("the entry is not in the log the checkpoint signs: the entry or its path was altered")]
    NotIncluded,
}

/// Checks `proof` with the published verifier key; returns the checkpoint it rests on.
pub fn check(proof: &Proof, verifier: &Verifier) -> Result<Checkpoint, CheckError> {
    use ct_merkle::{InclusionProof, RootHash};
    if proof.format != FORMAT {
        return Err(CheckError::Format);
    }
    let checkpoint = verifier.open(&proof.checkpoint)?;
    if checkpoint.tree_size != proof.tree_size {
        return Err(CheckError::SizeMismatch {
            proof: proof.tree_size,
            checkpoint: checkpoint.tree_size,
        });
    }
    let says = serde_json::from_str::<serde_json::Value>(&proof.entry)
        .ok()
        .and_then(|body| body["position"].as_i64())
        .ok_or(CheckError::NotIncluded)?;
    if u64::try_from(says) != Ok(proof.position) {
        return Err(CheckError::WrongEntry {
            says,
            position: proof.position,
        });
    }
    let path = proof
        .path
        .iter()
        .map(hex::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CheckError::NotIncluded)?
        .concat();
    let root = RootHash::<sha2::Sha256>::new(checkpoint.root.into(), checkpoint.tree_size);
    let path = InclusionProof::try_from_bytes(path).map_err(|_| CheckError::NotIncluded)?;
    root.verify_inclusion(&digest(proof.entry.as_bytes()), proof.position, &path)
        .map_err(|_| CheckError::NotIncluded)?;
    Ok(checkpoint)
}
