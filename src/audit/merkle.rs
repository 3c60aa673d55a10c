//! The Merkle tree over the audit log, as RFC 6962 (and 9162) define it: a leaf hashes as
//! SHA-256(0x00 || input), a parent as SHA-256(0x01 || left || right), and a tree of n leaves
//! splits at the largest power of two below n. A leaf's input is its entry's digest (the
//! SHA-256 of the body as stored), so a proof carries the entry and the verifier hashes it.
//!
//! Whole trees, inclusion and consistency proofs are `ct-merkle`'s (an implementation of
//! RFC 6962's tree). What it lacks is a compact range: the roots of the perfect subtrees a log
//! of n leaves splits into (at most log2 n of them), from which the next root follows by
//! hashing only the new leaves. [`Frontier`] is that, so the hub signs a checkpoint every few
//! seconds without re-reading the log; `audit verify` recomputes everything with `ct-merkle`,
//! so the two implementations check each other.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use sha2::{Digest as _, Sha256};

pub type Hash = [u8; 32];

/// The whole tree in memory, for proofs and verification (96 bytes per entry).
pub type Tree = MemoryBackedTree<Sha256, Hash>;

pub fn leaf_hash(input: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(input)
        .finalize()
        .into()
}

fn parent_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The SHA-256 of an entry's body: its leaf's input.
pub fn digest(body: &[u8]) -> Hash {
    Sha256::digest(body).into()
}

/// The roots of the perfect subtrees of a tree of `size` leaves, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// Restores a frontier stored with a checkpoint of `size` leaves; `None` when the bytes
    /// cannot be one (a frontier of n leaves has one peak per bit set in n).
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 * size.count_ones() as usize {
            return None;
        }
        let peaks = bytes
            .chunks_exact(32)
            .map(|chunk| chunk.try_into().expect("chunks_exact gives 32 bytes"))
            .collect();
        Some(Self { size, peaks })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.peaks.concat()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf whose input is `digest`.
    pub fn push(&mut self, digest: &Hash) {
        let mut node = leaf_hash(digest);
        // Each trailing one bit of the size is a peak of the same height as the new node:
        // they merge, as a binary counter carries.
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self
                .peaks
                .pop()
                .expect("a frontier has a peak per bit set in its size");
            node = parent_hash(&left, &node);
            size >>= 1;
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// The tree's root: the peaks folded from the smallest; `None` for an empty tree.
    pub fn root(&self) -> Option<Hash> {
        let mut peaks = self.peaks.iter().rev();
        let last = *peaks.next()?;
        Some(peaks.fold(last, |right, left| parent_hash(left, &right)))
    }
}

/// The root of `tree` as plain bytes.
pub fn root_of(tree: &Tree) -> Hash {
    (*tree.root().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_agrees_with_ct_merkle_at_every_size() {
        let mut frontier = Frontier::default();
        let mut tree = Tree::new();
        assert_eq!(frontier.root(), None);
        for n in 0..70u32 {
            let input = digest(&n.to_be_bytes());
            frontier.push(&input);
            tree.push(input);
            assert_eq!(frontier.root(), Some(root_of(&tree)), "size {}", n + 1);
            let stored = Frontier::from_bytes(frontier.size(), &frontier.to_bytes());
            assert_eq!(stored.as_ref(), Some(&frontier));
        }
        assert_eq!(Frontier::from_bytes(3, &[0; 32]), None);
    }

    #[test]
    fn a_single_leaf_is_its_own_root_and_order_matters() {
        let a = digest(b"a");
        let b = digest(b"b");
        let mut one = Frontier::default();
        one.push(&a);
        assert_eq!(one.root(), Some(leaf_hash(&a)));
        let mut ab = one.clone();
        ab.push(&b);
        let mut ba = Frontier::default();
        ba.push(&b);
        ba.push(&a);
        assert_ne!(ab.root(), ba.root());
    }
}
