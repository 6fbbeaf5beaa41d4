//! Bulk building of a B-tree, bottom-up, from entries in increasing key
//! order: leaves are packed full and written as they fill, then each
//! internal level the same way. Only a few nodes' worth of entries per level
//! is held in memory.
//!
//! Every level emits a full node once it holds two nodes' worth, so at the
//! end it holds between one and two nodes' worth (or less, if it never
//! emitted): split into two halves when more than one, every non-root node
//! keeps at least `max / 3` entries, as the checkers require.

use super::node::{
    max_entries, NodeMut, HEADER_SIZE, INTERNAL_NODE, INTERNAL_VALUE_SIZE, LEAF_NODE,
};
use crate::block_manager::Validator;
use crate::btree::node::NODE_VALIDATOR;
use crate::io::BatchWriter;
use crate::{Error, Result};

/// Entries waiting to be written at one level of the tree.
struct Level {
    flags: u32,
    max: usize,
    value_size: usize,
    keys: Vec<u64>,
    values: Vec<u8>,
    /// Nodes already written at this level.
    written: u64,
}

impl Level {
    fn new(flags: u32, value_size: usize) -> Self {
        let max = max_entries(value_size) as usize;
        Level {
            flags,
            max,
            value_size,
            keys: Vec::with_capacity(2 * max),
            values: Vec::with_capacity(2 * max * value_size),
            written: 0,
        }
    }

    /// Writes entries `[from, from + n)` as one node; gives (first key, location).
    fn write_node(&mut self, w: &mut BatchWriter, from: usize, n: usize) -> Result<(u64, u64)> {
        let (loc, block) = w.alloc()?;
        let mut node = NodeMut(block);
        node.init(self.flags, self.max as u32, self.value_size);
        node.set_nr_entries(n);
        for (j, &k) in self.keys[from..from + n].iter().enumerate() {
            node.set_key(j, k);
        }
        let vs = self.value_size;
        let vbase = HEADER_SIZE + 8 * self.max;
        block[vbase..vbase + n * vs].copy_from_slice(&self.values[from * vs..(from + n) * vs]);
        NODE_VALIDATOR.prepare_for_write(loc, block)?;
        self.written += 1;
        Ok((self.keys.get(from).copied().unwrap_or(0), loc))
    }
}

/// Builds one tree; see the module comment.
pub struct TreeBuilder {
    /// `levels[0]` holds leaf entries, `levels[i]` children of level i-1.
    levels: Vec<Level>,
    last_key: Option<u64>,
    len: u64,
}

impl TreeBuilder {
    /// A tree whose leaves hold values of `value_size` bytes.
    pub fn new(value_size: usize) -> Self {
        TreeBuilder {
            levels: vec![Level::new(LEAF_NODE, value_size)],
            last_key: None,
            len: 0,
        }
    }

    /// Entries pushed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an entry; keys must strictly increase.
    #[inline]
    pub fn push(&mut self, w: &mut BatchWriter, key: u64, value: &[u8]) -> Result<()> {
        if self.last_key.is_some_and(|last| key <= last) {
            return Err(Error::invalid(format!(
                "tree builder: key {key} after {}",
                self.last_key.unwrap_or(0)
            )));
        }
        if value.len() != self.levels[0].value_size {
            return Err(Error::invalid(format!(
                "tree builder: value of {} bytes in a tree of {}-byte values",
                value.len(),
                self.levels[0].value_size
            )));
        }
        self.last_key = Some(key);
        self.len += 1;
        self.push_at(w, 0, key, value)
    }

    #[inline]
    pub fn push_u64(&mut self, w: &mut BatchWriter, key: u64, value: u64) -> Result<()> {
        self.push(w, key, &value.to_le_bytes())
    }

    fn push_at(&mut self, w: &mut BatchWriter, level: usize, key: u64, value: &[u8]) -> Result<()> {
        let l = &mut self.levels[level];
        l.keys.push(key);
        l.values.extend_from_slice(value);
        if l.keys.len() == 2 * l.max {
            // Emit one full node, keep the second for the tail.
            let max = l.max;
            let vs = l.value_size;
            let (first, loc) = l.write_node(w, 0, max)?;
            l.keys.copy_within(max.., 0);
            l.keys.truncate(max);
            l.values.copy_within(max * vs.., 0);
            l.values.truncate(max * vs);
            self.push_child(w, level, first, loc)?;
        }
        Ok(())
    }

    /// Records a node written at `level` in the level above.
    fn push_child(&mut self, w: &mut BatchWriter, level: usize, key: u64, loc: u64) -> Result<()> {
        if self.levels.len() == level + 1 {
            self.levels
                .push(Level::new(INTERNAL_NODE, INTERNAL_VALUE_SIZE));
        }
        self.push_at(w, level + 1, key, &loc.to_le_bytes())
    }

    /// Writes what is left; returns the root. An empty tree is one empty leaf.
    pub fn finish(mut self, w: &mut BatchWriter) -> Result<u64> {
        let mut level = 0;
        loop {
            let l = &mut self.levels[level];
            let n = l.keys.len();
            if l.written == 0 && n <= l.max {
                // The only node of the top level: the root.
                return Ok(l.write_node(w, 0, n)?.1);
            }
            let halves = if n <= l.max {
                [(0, n), (n, 0)]
            } else {
                [(0, n / 2), (n / 2, n - n / 2)]
            };
            for (from, count) in halves {
                if count > 0 {
                    let (first, loc) = self.levels[level].write_node(w, from, count)?;
                    self.push_child(w, level, first, loc)?;
                }
            }
            level += 1;
        }
    }
}

/// Blocks a [`TreeBuilder`] writes for `n` entries of `value_size` bytes.
pub fn nodes_for(n: u64, value_size: usize) -> u64 {
    let mut total = 0;
    let mut n = n;
    let mut max = max_entries(value_size) as u64;
    loop {
        if n <= max {
            return total + 1;
        }
        let nodes = if n < 2 * max {
            2
        } else {
            // Full nodes emitted while pushing, then the tail's one or two.
            let emitted = n / max - 1;
            let tail = n - emitted * max;
            emitted + if tail == max { 1 } else { 2 }
        };
        total += nodes;
        n = nodes;
        max = max_entries(INTERNAL_VALUE_SIZE) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_manager::BlockManager;
    use crate::btree::node::{Node, NODE_VALIDATOR};
    use crate::io::{BlockDevice, MemoryDevice};
    use std::sync::Arc;

    /// Walks the tree, checking shape and fill; gives the entries.
    fn collect(bm: &BlockManager, root: u64, is_root: bool, out: &mut Vec<(u64, u64)>) -> u64 {
        let b = bm.read_lock(root, &NODE_VALIDATOR).unwrap();
        let n = Node(&b);
        n.check_key_order().unwrap();
        if !is_root {
            assert!(n.nr_entries() >= n.max_entries() / 3, "underfull node");
        }
        let mut count = 1;
        for i in 0..n.nr_entries() {
            if n.is_leaf() {
                out.push((n.key(i), n.value_u64(i)));
            } else {
                let before = out.len();
                count += collect(bm, n.value_u64(i), false, out);
                assert_eq!(out[before].0, n.key(i));
            }
        }
        count
    }

    #[test]
    fn builds_valid_trees_of_any_size() {
        for n in [
            0u64, 1, 84, 252, 253, 300, 504, 505, 756, 1000, 63_504, 63_505, 130_000,
        ] {
            let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(1200));
            let mut w = BatchWriter::new(dev.clone(), 5, 1200, 7);
            let mut b = TreeBuilder::new(8);
            for k in 0..n {
                b.push_u64(&mut w, k * 3, k).unwrap();
            }
            let root = b.finish(&mut w).unwrap();
            w.flush_batch().unwrap();
            let bm = BlockManager::new(dev, 64, false);
            let mut out = Vec::new();
            let blocks = collect(&bm, root, true, &mut out);
            assert_eq!(out.len() as u64, n);
            assert!(out
                .iter()
                .enumerate()
                .all(|(i, &(k, v))| k == 3 * i as u64 && v == i as u64));
            assert_eq!(blocks, w.next_location() - 5, "n = {n}");
            assert_eq!(nodes_for(n, 8), blocks, "n = {n}");
        }
    }

    #[test]
    fn refuses_keys_out_of_order() {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(4));
        let mut w = BatchWriter::new(dev, 0, 4, 2);
        let mut b = TreeBuilder::new(8);
        b.push_u64(&mut w, 5, 0).unwrap();
        assert!(b.push_u64(&mut w, 5, 0).is_err());
        assert!(b.push(&mut w, 6, &[0u8; 4]).is_err());
    }
}
