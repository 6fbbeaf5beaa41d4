//! Which mappings of each device point at data blocks nothing else maps
//! (`thin_ls`'s EXCLUSIVE): a data block is shared when two mappings of
//! any devices point at it, counting a mapping reached through a shared
//! sub-tree once per device that reaches it.
//!
//! Every node is read once to count references (a sub-tree shared by
//! snapshots is not walked again), then the leaves no other node shares are
//! read a second time to count their exclusive entries.

use super::{read_mapping_node, too_deep, MAX_TREE_DEPTH};
use crate::format::block_time::BlockTime;
use crate::{Result, ThinError};
use pdata::block_manager::BlockRead;
use pdata::btree::node::Node;
use pdata::space_map::format::MAX_METADATA_BLOCKS;
use pdata::space_map::RefCounts;
use rustc_hash::FxHashMap;

/// For each mapping-tree root in `roots`, how many of its mappings point at
/// a data block mapped nowhere else. `nr_metadata_blocks` bounds node
/// locations, `nr_data_blocks` data blocks.
pub fn exclusive_mappings(
    r: &impl BlockRead,
    roots: &[u64],
    nr_metadata_blocks: u64,
    nr_data_blocks: u64,
) -> Result<Vec<u64>> {
    let mut c = Census {
        r,
        // Nodes lie within what a metadata space map can describe.
        refs: vec![0; nr_metadata_blocks.min(MAX_METADATA_BLOCKS) as usize],
        children: FxHashMap::default(),
        leaves: Vec::new(),
        data: DataCounts::new(nr_data_blocks)?,
    };
    for &root in roots {
        c.discover(root, 0)?;
    }
    let mut leaf_exclusive = FxHashMap::default();
    for &leaf in &c.leaves {
        if c.refs[leaf as usize] == 1 {
            leaf_exclusive.insert(leaf, c.count_exclusive(leaf)?);
        }
    }
    Ok(roots
        .iter()
        .map(|&root| c.sum_exclusive(root, &leaf_exclusive))
        .collect())
}

/// The highest mapped thin block of the tree at `root` (None when empty).
pub fn highest_mapped(r: &impl BlockRead, root: u64) -> Result<Option<u64>> {
    let mut loc = root;
    for _ in 0..=MAX_TREE_DEPTH {
        let b = read_mapping_node(r, loc)?;
        let n = Node(&b);
        let Some(last) = n.nr_entries().checked_sub(1) else {
            return Ok(None);
        };
        if n.is_leaf() {
            return Ok(Some(n.key(last)));
        }
        loc = n.value_u64(last);
    }
    Err(too_deep(loc).into())
}

struct Census<'a, R: BlockRead> {
    r: &'a R,
    /// References to each metadata block from the nodes seen (saturating).
    refs: Vec<u8>,
    /// Children of each internal node seen.
    children: FxHashMap<u64, Vec<u64>>,
    leaves: Vec<u64>,
    data: DataCounts,
}

impl<R: BlockRead> Census<'_, R> {
    /// Counts a reference to `loc`; the first one reads it and goes down.
    fn discover(&mut self, loc: u64, depth: usize) -> Result<()> {
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
        let b = read_mapping_node(self.r, loc)?;
        let n = Node(&b);
        if n.is_leaf() {
            for i in 0..n.nr_entries() {
                self.data.inc(BlockTime::unpack(n.value_u64(i)).block)?;
            }
            self.leaves.push(loc);
            return Ok(());
        }
        let kids: Vec<u64> = (0..n.nr_entries()).map(|i| n.value_u64(i)).collect();
        drop(b);
        for &k in &kids {
            self.discover(k, depth + 1)?;
        }
        self.children.insert(loc, kids);
        Ok(())
    }

    /// Entries of an unshared leaf whose data block is mapped once.
    fn count_exclusive(&self, leaf: u64) -> Result<u64> {
        let b = read_mapping_node(self.r, leaf)?;
        let n = Node(&b);
        Ok((0..n.nr_entries())
            .filter(|&i| self.data.get(BlockTime::unpack(n.value_u64(i)).block) == 1)
            .count() as u64)
    }

    /// Exclusive mappings under `loc`: none below a shared node, since all
    /// its mappings are reached by two devices (or twice by one).
    fn sum_exclusive(&self, loc: u64, leaf_exclusive: &FxHashMap<u64, u64>) -> u64 {
        if self.refs.get(loc as usize).is_none_or(|&c| c != 1) {
            return 0;
        }
        if let Some(&n) = leaf_exclusive.get(&loc) {
            return n;
        }
        self.children.get(&loc).map_or(0, |kids| {
            kids.iter()
                .map(|&k| self.sum_exclusive(k, leaf_exclusive))
                .sum()
        })
    }
}

/// The data blocks' counts, in memory that follows the blocks mapped
/// rather than the size of the data device; read as 0, 1 or 2 (many).
struct DataCounts {
    counts: RefCounts,
}

impl DataCounts {
    fn new(nr_blocks: u64) -> Result<Self> {
        Ok(DataCounts {
            counts: RefCounts::new(nr_blocks)?,
        })
    }

    fn inc(&mut self, b: u64) -> Result<()> {
        if b >= self.counts.nr_blocks() {
            return Err(ThinError::DataBlockOutOfRange {
                block: b,
                nr_blocks: self.counts.nr_blocks(),
            });
        }
        self.counts.inc(b);
        Ok(())
    }

    fn get(&self, b: u64) -> u64 {
        // None (an overflow mark) is never set here; it means many.
        self.counts.get(b).map_or(2, |c| u64::from(c.min(2)))
    }
}
