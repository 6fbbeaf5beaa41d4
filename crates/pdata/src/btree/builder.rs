//! Bulk building of a B-tree, bottom-up, from entries in increasing key
//! order: leaves are packed full and written as they fill, then each
//! internal level the same way. Each level holds two node buffers: the node
//! being filled and the last full one, held back so that at the end an
//! underfull last node can take entries from it (every non-root node keeps
//! at least `max / 3` entries, as the checkers require).

use super::node::{
    max_entries, HEADER_SIZE, INTERNAL_NODE, INTERNAL_VALUE_SIZE, LEAF_NODE, MAX_ENTRIES_OFFSET,
    NR_ENTRIES_OFFSET, VALUE_SIZE_OFFSET,
};
use crate::block_manager::{put_le32, put_le64, stamp_and_seal, Validator};
use crate::btree::node::{BLOCKNR_OFFSET, FLAGS_OFFSET, NODE_VALIDATOR};
use crate::checksum::SALT_BTREE_NODE;
use crate::io::BatchWriter;
use crate::{Block, Error, Result, BLOCK_SIZE};

/// A node buffer with its header (flags, capacity, value size) set.
fn node_buffer(flags: u32, max: usize, value_size: usize) -> Box<Block> {
    let mut b = Box::new([0u8; BLOCK_SIZE]);
    put_le32(&mut b[..], FLAGS_OFFSET, flags);
    put_le32(&mut b[..], MAX_ENTRIES_OFFSET, max as u32);
    put_le32(&mut b[..], VALUE_SIZE_OFFSET, value_size as u32);
    b
}

/// One level of the tree being built.
struct Level {
    max: usize,
    value_size: usize,
    /// The last full node, not yet written.
    prev: Option<Box<Block>>,
    /// The node being filled: `nr` entries.
    cur: Box<Block>,
    nr: usize,
}

impl Level {
    fn new(flags: u32, value_size: usize) -> Self {
        let max = max_entries(value_size) as usize;
        Level {
            max,
            value_size,
            prev: None,
            cur: node_buffer(flags, max, value_size),
            nr: 0,
        }
    }

    #[inline]
    fn value_offset(&self, i: usize) -> usize {
        HEADER_SIZE + 8 * self.max + i * self.value_size
    }

    /// Appends an entry; when the current node was full it is held back and
    /// the previous one written: gives that one as (first key, location).
    #[inline]
    fn push(&mut self, w: &mut BatchWriter, key: u64, value: &[u8]) -> Result<Option<(u64, u64)>> {
        let mut written = None;
        if self.nr == self.max {
            let spare = match self.prev.take() {
                Some(p) => {
                    written = Some(write_node(w, &p, self.max)?);
                    p
                }
                None => Box::new(*self.cur),
            };
            self.prev = Some(std::mem::replace(&mut self.cur, spare));
            self.nr = 0;
        }
        let i = self.nr;
        put_le64(&mut self.cur[..], HEADER_SIZE + 8 * i, key);
        let off = self.value_offset(i);
        self.cur[off..off + value.len()].copy_from_slice(value);
        self.nr += 1;
        Ok(written)
    }

    /// Writes what the level holds: gives the nodes as (first key,
    /// location), or the root when the level has a single node.
    fn finish(&mut self, w: &mut BatchWriter) -> Result<Finished> {
        let Some(prev) = self.prev.take() else {
            return Ok(Finished::Root(write_node(w, &self.cur, self.nr)?.1));
        };
        let (max, vs) = (self.max, self.value_size);
        let mut prev_nr = max;
        if self.nr < max / 3 {
            // Move the tail of `prev` in front of `cur`'s entries.
            let keep = (max + self.nr) / 2;
            let moved = max - keep;
            let (n, cur) = (self.nr, &mut self.cur);
            cur.copy_within(HEADER_SIZE..HEADER_SIZE + 8 * n, HEADER_SIZE + 8 * moved);
            cur[HEADER_SIZE..HEADER_SIZE + 8 * moved]
                .copy_from_slice(&prev[HEADER_SIZE + 8 * keep..HEADER_SIZE + 8 * max]);
            let vbase = HEADER_SIZE + 8 * max;
            cur.copy_within(vbase..vbase + vs * n, vbase + vs * moved);
            cur[vbase..vbase + vs * moved]
                .copy_from_slice(&prev[vbase + vs * keep..vbase + vs * max]);
            prev_nr = keep;
            self.nr += moved;
        }
        let a = write_node(w, &prev, prev_nr)?;
        let b = write_node(w, &self.cur, self.nr)?;
        Ok(Finished::Nodes([a, b]))
    }
}

enum Finished {
    Root(u64),
    Nodes([(u64, u64); 2]),
}

/// Writes the first `nr` entries of `node` at the writer's next location;
/// gives (first key, location).
fn write_node(w: &mut BatchWriter, node: &Block, nr: usize) -> Result<(u64, u64)> {
    let max = crate::block_manager::le32(node, MAX_ENTRIES_OFFSET) as usize;
    let vs = crate::block_manager::le32(node, VALUE_SIZE_OFFSET) as usize;
    let (loc, block) = w.alloc()?;
    if nr == max {
        block.copy_from_slice(node);
    } else {
        let vbase = HEADER_SIZE + 8 * max;
        block[..HEADER_SIZE + 8 * nr].copy_from_slice(&node[..HEADER_SIZE + 8 * nr]);
        block[vbase..vbase + vs * nr].copy_from_slice(&node[vbase..vbase + vs * nr]);
    }
    put_le32(&mut block[..], NR_ENTRIES_OFFSET, nr as u32);
    // Sound by construction (keys checked as pushed): stamp and seal only.
    debug_assert!(NODE_VALIDATOR
        .prepare_for_write(loc, &mut block.clone())
        .is_ok());
    stamp_and_seal(block, BLOCKNR_OFFSET, loc, SALT_BTREE_NODE);
    let first = crate::block_manager::le64(node, HEADER_SIZE);
    Ok((first, loc))
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
        if let Some(last) = self.last_key {
            if key <= last {
                return Err(Error::invalid(format!(
                    "tree builder: key {key} after {last}"
                )));
            }
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
        if let Some((k, loc)) = self.levels[0].push(w, key, value)? {
            self.push_child(w, 0, k, loc)?;
        }
        Ok(())
    }

    #[inline]
    pub fn push_u64(&mut self, w: &mut BatchWriter, key: u64, value: u64) -> Result<()> {
        self.push(w, key, &value.to_le_bytes())
    }

    /// Adds `n` entries of le64 values: keys `key..key + n`, values
    /// `value, value + step, ...` (wrapping); the same as `n` calls of
    /// `push_u64`, with the checks done once.
    pub fn push_u64_run(
        &mut self,
        w: &mut BatchWriter,
        key: u64,
        n: u64,
        value: u64,
        step: u64,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let last = key
            .checked_add(n - 1)
            .ok_or_else(|| Error::invalid(format!("tree builder: keys {key}+{n} overflow")))?;
        self.push_u64(w, key, value)?;
        let (mut k, mut v, mut left) = (key, value, n - 1);
        while left > 0 {
            k += 1;
            v = v.wrapping_add(step);
            let leaf = &mut self.levels[0];
            if leaf.nr == leaf.max {
                // `push` holds the full leaf back and starts the next.
                if let Some((first, loc)) = leaf.push(w, k, &v.to_le_bytes())? {
                    self.push_child(w, 0, first, loc)?;
                }
                left -= 1;
                continue;
            }
            let take = ((leaf.max - leaf.nr) as u64).min(left);
            for j in 0..take {
                let i = leaf.nr + j as usize;
                put_le64(&mut leaf.cur[..], HEADER_SIZE + 8 * i, k + j);
                let off = leaf.value_offset(i);
                put_le64(&mut leaf.cur[..], off, v.wrapping_add(j.wrapping_mul(step)));
            }
            leaf.nr += take as usize;
            k += take - 1;
            v = v.wrapping_add((take - 1).wrapping_mul(step));
            left -= take;
        }
        self.len += n - 1;
        self.last_key = Some(last);
        Ok(())
    }

    /// Records a node written at `level` in the level above.
    fn push_child(&mut self, w: &mut BatchWriter, level: usize, key: u64, loc: u64) -> Result<()> {
        let (mut level, mut key, mut loc) = (level + 1, key, loc);
        loop {
            if self.levels.len() == level {
                self.levels
                    .push(Level::new(INTERNAL_NODE, INTERNAL_VALUE_SIZE));
            }
            match self.levels[level].push(w, key, &loc.to_le_bytes())? {
                Some((k, l)) => (level, key, loc) = (level + 1, k, l),
                None => return Ok(()),
            }
        }
    }

    /// Writes what is left; returns the root. An empty tree is one empty leaf.
    pub fn finish(mut self, w: &mut BatchWriter) -> Result<u64> {
        let mut level = 0;
        loop {
            match self.levels[level].finish(w)? {
                Finished::Root(root) => return Ok(root),
                Finished::Nodes(nodes) => {
                    for (key, loc) in nodes {
                        self.push_child(w, level, key, loc)?;
                    }
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
    while n > max {
        n = n.div_ceil(max);
        total += n;
        max = max_entries(INTERNAL_VALUE_SIZE) as u64;
    }
    total + 1
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
    fn runs_equal_single_pushes() {
        let build = |runs: bool| {
            let mem = Arc::new(MemoryDevice::new(64));
            let dev: Arc<dyn BlockDevice> = mem.clone();
            let mut w = BatchWriter::new(dev, 0, 64, 5);
            let mut b = TreeBuilder::new(8);
            let mut key = 0;
            for n in [1u64, 300, 2, 251, 252, 253, 1000, 7] {
                if runs {
                    b.push_u64_run(&mut w, key, n, key << 24, 1 << 24).unwrap();
                } else {
                    for j in 0..n {
                        b.push_u64(&mut w, key + j, (key + j) << 24).unwrap();
                    }
                }
                key += n + 10;
            }
            assert!(b.push_u64_run(&mut w, key - 11, 1, 0, 0).is_err());
            let root = b.finish(&mut w).unwrap();
            w.flush_batch().unwrap();
            (root, mem.image())
        };
        assert!(build(true) == build(false));
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
