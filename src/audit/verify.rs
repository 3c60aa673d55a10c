//! `lienthong audit verify`: the whole log against its signed checkpoints. Every entry is
//! checked where it stands (digest, position, chain to the one before), and the tree is
//! rebuilt from the bodies as stored: at each checkpoint's size its root must be the signed
//! one, and each checkpoint must be consistent with the one before (an RFC 6962 consistency
//! proof, checked against both signed roots). A row changed with its digest and chain
//! recomputed is still caught by the next checkpoint, and named as the range it covers.

use deadpool_postgres::Pool;

use super::checkpoint::{Checkpoint, Verifier};
use super::log::{Walk, checkpoints, page};
use super::merkle::{Tree, root_of};
use crate::db::DbError;

/// One thing wrong, with the entry it concerns where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub position: Option<i64>,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub entries: i64,
    pub checkpoints: usize,
    /// The latest checkpoint that verified.
    pub latest: Option<Checkpoint>,
    /// Entries after the latest checkpoint: checked one by one, not yet signed.
    pub unsigned: i64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

pub async fn verify(pool: &Pool, verifier: &Verifier) -> Result<Report, DbError> {
    let client = pool.get().await?;
    let mut report = Report::default();
    let mut signed = Vec::new();
    for stored in checkpoints(&client).await? {
        match verifier.open(&stored.note) {
            Ok(checkpoint) if i64::try_from(checkpoint.tree_size) == Ok(stored.tree_size) => {
                signed.push(checkpoint);
            }
            Ok(checkpoint) => report.problems.push(Problem {
                position: None,
                what: format!(
                    "the checkpoint stored at tree size {} is signed for size {}",
                    stored.tree_size, checkpoint.tree_size
                ),
            }),
            Err(error) => report.problems.push(Problem {
                position: None,
                what: format!("the checkpoint at tree size {}: {error}", stored.tree_size),
            }),
        }
    }
    report.checkpoints = signed.len();
    let mut pending = signed.iter().peekable();
    let mut tree = Tree::new();
    let mut walk = Walk::default();
    let mut covered_from = 0u64;
    let mut last_good: Option<&Checkpoint> = None;
    let mut from = 0;
    loop {
        let entries = page(&client, from).await?;
        let Some(last) = entries.last() else { break };
        from = last.position + 1;
        for entry in &entries {
            let (flaws, real) = walk.check(entry);
            report.problems.extend(flaws.iter().map(|flaw| Problem {
                position: Some(entry.position),
                what: flaw.describe(entry.position),
            }));
            tree.push(real);
            report.entries += 1;
            while let Some(checkpoint) = pending.next_if(|c| c.tree_size == tree.len()) {
                if root_of(&tree) != checkpoint.root {
                    report.problems.push(Problem {
                        position: None,
                        what: format!(
                            "entries {covered_from} to {} do not match the checkpoint signed for \
                             {} entries: one of them was rewritten together with its digest",
                            tree.len() - 1,
                            checkpoint.tree_size
                        ),
                    });
                } else if let Some(before) = last_good
                    && !consistent(&tree, before, checkpoint)
                {
                    report.problems.push(Problem {
                        position: None,
                        what: format!(
                            "the checkpoint for {} entries is not consistent with the one for {}",
                            checkpoint.tree_size, before.tree_size
                        ),
                    });
                } else {
                    last_good = Some(checkpoint);
                }
                covered_from = tree.len();
            }
        }
    }
    for checkpoint in pending {
        report.problems.push(Problem {
            position: None,
            what: format!(
                "a checkpoint was signed for {} entries, the log holds {}: entries were deleted \
                 from its end",
                checkpoint.tree_size,
                tree.len()
            ),
        });
    }
    report.latest = last_good.cloned();
    report.unsigned =
        report.entries - last_good.map_or(0, |c| i64::try_from(c.tree_size).unwrap_or(i64::MAX));
    Ok(report)
}

/// True when the tree `now` (at `newer`'s size) proves itself an extension of `older`, both
/// as signed.
fn consistent(now: &Tree, older: &Checkpoint, newer: &Checkpoint) -> bool {
    use ct_merkle::RootHash;
    let Some(added) = newer
        .tree_size
        .checked_sub(older.tree_size)
        .and_then(|n| usize::try_from(n).ok())
    else {
        return false;
    };
    if added == 0 {
        return older.root == newer.root;
    }
    let proof = now.prove_consistency(added);
    let old_root = RootHash::<sha2::Sha256>::new(older.root.into(), older.tree_size);
    let new_root = RootHash::<sha2::Sha256>::new(newer.root.into(), newer.tree_size);
    new_root.verify_consistency(&old_root, &proof).is_ok()
}
