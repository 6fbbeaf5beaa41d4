//! A reference-count audit of committed metadata, for the clients' tests
//! until their checkers exist: the caller lists what refers to what (the
//! superblock, the space map's own blocks, trees, arrays), and every
//! metadata block's count must equal the references found. Shared nodes
//! count their children once, however many parents they have.

use crate::block_manager::BlockRead;
use crate::btree::node::{Node, NODE_VALIDATOR};
use crate::space_map::format::{nr_bitmaps, unpack_metadata_index, SmRoot, INDEX_VALIDATOR};
use crate::transaction_manager::TransactionManager;
use crate::{Error, Result};
use rustc_hash::{FxHashMap, FxHashSet};

/// Counts what one leaf value refers to: `(audit, key, value)`.
pub type LeafRefs<'a> = dyn FnMut(&mut RefAudit, u64, &[u8]) -> Result<()> + 'a;

#[derive(Default)]
pub struct RefAudit {
    expected: FxHashMap<u64, u32>,
    /// Nodes and array blocks whose children are already counted.
    seen: FxHashSet<u64>,
}

impl RefAudit {
    pub fn new() -> Self {
        Self::default()
    }

    /// One reference to `b`.
    pub fn add(&mut self, b: u64) {
        *self.expected.entry(b).or_default() += 1;
    }

    /// The references the metadata space map holds on its own blocks: the
    /// index block, the bitmaps, the overflow tree.
    pub fn space_map(&mut self, r: &impl BlockRead, sm: &SmRoot) -> Result<()> {
        self.add(sm.bitmap_root);
        {
            let index = r.read_lock(sm.bitmap_root, &INDEX_VALIDATOR)?;
            for ie in unpack_metadata_index(&index, nr_bitmaps(sm.nr_blocks)) {
                self.add(ie.blocknr);
            }
        }
        if sm.ref_count_root != 0 {
            self.btree(r, sm.ref_count_root, &mut |_, _, _| Ok(()))?;
        }
        Ok(())
    }

    /// One reference to `root`, and, the first time the tree is seen, one
    /// per child pointer of its distinct nodes; `leaf(self, key, value)` is
    /// called once for every value of every distinct leaf, to count what
    /// the values refer to.
    pub fn btree<R: BlockRead>(&mut self, r: &R, root: u64, leaf: &mut LeafRefs<'_>) -> Result<()> {
        self.add(root);
        let mut stack = vec![root];
        while let Some(loc) = stack.pop() {
            if !self.seen.insert(loc) {
                continue;
            }
            let b = r.read_lock(loc, &NODE_VALIDATOR)?;
            let n = Node(&b);
            for i in 0..n.nr_entries() {
                if n.is_internal() {
                    let child = n.value_u64(i);
                    self.add(child);
                    stack.push(child);
                } else {
                    leaf(self, n.key(i), n.value(i))?;
                }
            }
        }
        Ok(())
    }

    /// A dm-array (or dm-bitset): its spine, and one reference per pointer
    /// to an array block.
    pub fn array<R: BlockRead>(&mut self, r: &R, root: u64) -> Result<()> {
        self.btree(r, root, &mut |a, _, v| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[..8]);
            a.add(u64::from_le_bytes(b));
            Ok(())
        })
    }

    /// Compares every block's count with the references found; the error
    /// names the first block that differs.
    pub fn verify(&self, tm: &TransactionManager) -> Result<()> {
        for b in 0..tm.nr_metadata_blocks() {
            let want = self.expected.get(&b).copied().unwrap_or(0);
            let got = tm.ref_count(b)?;
            if got != want {
                return Err(Error::corrupt(
                    b,
                    "reference count",
                    format!("the space map counts {got}, the metadata holds {want} references"),
                ));
            }
        }
        Ok(())
    }
}
