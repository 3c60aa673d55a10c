//! `lienthong audit verify`: the whole log against its signed checkpoints. Every entry is
//! checked where it stands (digest, position, chain to the one before), and the tree is
//! rebuilt from the bodies as stored: at each checkpoint's size its root must be the signed
//! one. Every root being recomputed from the same leaves, each checkpoint that matches is
//! consistent with every earlier one (a tree that only grew). A row changed with its digest
//! and chain recomputed is still caught by the next checkpoint, and named as the range it
//! covers.

use deadpool_postgres::Pool;

use super::checkpoint::{Checkpoint, Verifiers};
use super::log::{Walk, checkpoints, for_each_entry};
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
    /// Checkpoints whose signature checked out.
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

pub async fn verify(pool: &Pool, verifiers: &Verifiers) -> Result<Report, DbError> {
    let client = pool.get().await?;
    let mut report = Report::default();
    let mut signed = Vec::new();
    for stored in checkpoints(&client).await? {
        match verifiers.open(&stored.note) {
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
    for_each_entry(&client, 0, |entry| {
        let (flaws, real) = walk.check(&entry);
        report.problems.extend(flaws.iter().map(|flaw| Problem {
            position: Some(entry.position),
            what: flaw.describe(entry.position),
        }));
        tree.push(real);
        report.entries += 1;
        while let Some(checkpoint) = pending.next_if(|c| c.tree_size == tree.len()) {
            if root_of(&tree) == checkpoint.root {
                last_good = Some(checkpoint);
                covered_from = tree.len();
            } else {
                report.problems.push(Problem {
                    position: None,
                    what: format!(
                        "entries {covered_from} to {} do not match the checkpoint signed for {} \
                         entries: one of them was rewritten together with its digest",
                        tree.len() - 1,
                        checkpoint.tree_size
                    ),
                });
            }
        }
        Ok::<_, DbError>(true)
    })
    .await?;
    for checkpoint in pending {
        report.problems.push(Problem {
            position: None,
            what: format!(
                "a checkpoint was signed for {} entries, the log holds {}: entries were deleted",
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
