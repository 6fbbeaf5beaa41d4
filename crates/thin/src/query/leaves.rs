//! The mapping leaves of some trees and the data blocks they point at,
//! counted window by window within a memory budget
//! ([`RefCounts::window`]): the first window while the trees are walked,
//! each later one in a pass over the leaves that walk found that refer
//! into it ([`LeafSpans`]), read again in block order. Memory then follows
//! the budget and the metadata device (a byte and a bit per metadata
//! block, four bytes per leaf), never the size of the data device nor the
//! number of data blocks in use.

use super::{read_mapping_node, too_deep, MAX_TREE_DEPTH};
use crate::format::block_time::BlockTime;
use crate::{Result, ThinError};
use pdata::block_manager::BlockRead;
use pdata::btree::node::{Node, NODE_VALIDATOR};
use pdata::space_map::format::MAX_METADATA_BLOCKS;
use pdata::space_map::spans::{next_window_end, LeafSpans};
use pdata::space_map::RefCounts;

/// Leaves read ahead at a time when a later window reads them again.
const PREFETCH: usize = 256;

/// The nodes of the trees walked, each read once.
pub struct MappingLeaves {
    /// References to each metadata block from the roots and the nodes
    /// walked (saturating): 1 for a node reached once.
    pub refs: Vec<u8>,
    /// Where each leaf's data blocks lie, roughly.
    spans: LeafSpans,
    nr_data_blocks: u64,
    budget: usize,
}

impl MappingLeaves {
    /// Walks the trees at `roots` (a node shared by several, or twice by
    /// one, is read once), counting the references to data blocks of the
    /// first window that `budget` bytes of counts hold. Fails on a node
    /// that does not validate, beyond `nr_metadata_blocks` or too deep, and
    /// on a data block beyond `nr_data_blocks`.
    pub fn walk(
        r: &impl BlockRead,
        roots: &[u64],
        nr_metadata_blocks: u64,
        nr_data_blocks: u64,
        budget: usize,
    ) -> Result<(Self, RefCounts)> {
        // Nodes lie within what a metadata space map can describe.
        let nr_metadata_blocks = nr_metadata_blocks.min(MAX_METADATA_BLOCKS);
        let mut w = MappingLeaves {
            refs: vec![0; nr_metadata_blocks as usize],
            spans: LeafSpans::new(nr_data_blocks, 0..nr_metadata_blocks),
            nr_data_blocks,
            budget,
        };
        let mut data = RefCounts::window(nr_data_blocks, 0, budget)?;
        let mut blocks = Vec::new();
        for &root in roots {
            w.discover(r, root, 0, &mut data, &mut blocks)?;
        }
        Ok((w, data))
    }

    /// Counts a reference to `loc`; the first one reads it and goes down.
    fn discover(
        &mut self,
        r: &impl BlockRead,
        loc: u64,
        depth: usize,
        data: &mut RefCounts,
        blocks: &mut Vec<u64>,
    ) -> Result<()> {
        let nr_blocks = self.refs.len() as u64;
        let count = self
            .refs
            .get_mut(loc as usize)
            .ok_or(pdata::Error::OutOfBounds {
                block: loc,
                nr_blocks,
            })?;
        *count = count.saturating_add(1);
        if *count > 1 {
            return Ok(());
        }
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep(loc).into());
        }
        let b = read_mapping_node(r, loc)?;
        let n = Node(&b);
        if n.is_leaf() {
            self.leaf_blocks(&n, blocks)?;
            data.inc_all(blocks);
            self.spans.record_all(loc, blocks);
            return Ok(());
        }
        let kids: Vec<u64> = (0..n.nr_entries()).map(|i| n.value_u64(i)).collect();
        drop(b);
        // Read the children not seen yet together, in runs.
        let new: Vec<u64> = kids.iter().copied().filter(|&k| !self.seen(k)).collect();
        r.prefetch(&new, &NODE_VALIDATOR);
        for k in kids {
            self.discover(r, k, depth + 1, data, blocks)?;
        }
        Ok(())
    }

    /// The data blocks of leaf `n`'s entries, into `out`; an error for one
    /// beyond the data device.
    pub fn leaf_blocks(&self, n: &Node, out: &mut Vec<u64>) -> Result<()> {
        out.clear();
        for i in 0..n.nr_entries() {
            let block = BlockTime::unpack(n.value_u64(i)).block;
            if block >= self.nr_data_blocks {
                return Err(ThinError::DataBlockOutOfRange {
                    block,
                    nr_blocks: self.nr_data_blocks,
                });
            }
            out.push(block);
        }
        Ok(())
    }

    fn seen(&self, loc: u64) -> bool {
        self.refs.get(loc as usize).is_some_and(|&c| c > 0)
    }

    /// Whether `loc` is a leaf that refers to data blocks.
    pub fn is_leaf(&self, loc: u64) -> bool {
        self.spans.contains(loc)
    }

    /// Whether `loc` was reached once (its parent may be shared still).
    pub fn once(&self, loc: u64) -> bool {
        self.refs.get(loc as usize) == Some(&1)
    }

    /// Calls `f` with each leaf (ascending) that may refer into `data`'s
    /// window and `want` keeps, and its data blocks; the leaves are read
    /// ahead in batches.
    pub fn each_leaf(
        &self,
        r: &impl BlockRead,
        data: &RefCounts,
        want: impl Fn(u64) -> bool,
        f: &mut dyn FnMut(u64, &[u64]) -> Result<()>,
    ) -> Result<()> {
        let mut batch = Vec::with_capacity(PREFETCH);
        let mut blocks = Vec::new();
        let mut leaves = self
            .spans
            .leaves()
            .filter(|&l| self.spans.refers_into(l, data) && want(l))
            .peekable();
        while leaves.peek().is_some() {
            batch.clear();
            batch.extend(leaves.by_ref().take(PREFETCH));
            r.prefetch(&batch, &NODE_VALIDATOR);
            for &leaf in &batch {
                let b = read_mapping_node(r, leaf)?;
                self.leaf_blocks(&Node(&b), &mut blocks)?;
                f(leaf, &blocks)?;
            }
        }
        Ok(())
    }

    /// Moves `data` to the window after its own (the old counts dropped
    /// first, then the leaves that refer into the new one read again):
    /// as long as the last one and half again, or less if the budget says
    /// so. False, leaving it, when it reached the end of the data device.
    pub fn next_window(&self, r: &impl BlockRead, data: &mut RefCounts) -> Result<bool> {
        let (from, len) = (data.window_end(), data.window_end() - data.window_start());
        let nr = self.nr_data_blocks;
        if from >= nr {
            return Ok(false);
        }
        *data = RefCounts::window(nr, from, self.budget)?.ending_by(next_window_end(from, len, nr));
        let (mut blocks, mut start) = (Vec::new(), 0);
        loop {
            // The window may end earlier as it fills: chosen batch by batch.
            let batch = self.spans.next_piece(&mut start, data, PREFETCH);
            if batch.is_empty() {
                break;
            }
            r.prefetch(&batch, &NODE_VALIDATOR);
            for &leaf in &batch {
                let b = read_mapping_node(r, leaf)?;
                self.leaf_blocks(&Node(&b), &mut blocks)?;
                let n = data.keep_window(&mut blocks);
                data.inc_all(&blocks[..n]);
            }
        }
        Ok(true)
    }
}
