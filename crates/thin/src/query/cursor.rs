//! A device's mappings as a pull stream, one leaf in memory at a time: no
//! allocation per mapping, so two devices can be merged side by side
//! (`thin_delta`).

use super::{read_mapping_node, too_deep, MAX_TREE_DEPTH};
use crate::format::block_time::BlockTime;
use pdata::block_manager::BlockRead;
use pdata::btree::node::Node;

/// Children of an internal node still to visit.
#[derive(Default)]
struct Frame {
    children: Vec<u64>,
    next: usize,
}

/// Yields `(thin block, data block)` in thin-block order.
pub struct MappingCursor<'a, R: BlockRead> {
    r: &'a R,
    /// Internal nodes from the root down; frames past `depth` are spare
    /// buffers kept for reuse.
    frames: Vec<Frame>,
    depth: usize,
    /// The current leaf's entries and the next one to hand out.
    leaf: Vec<(u64, u64)>,
    pos: usize,
    /// Where `leaf` came from, and the last key handed out: keys must rise
    /// strictly, which also stops a damaged tree that loops back on itself.
    leaf_loc: u64,
    last_key: Option<u64>,
    root: Option<u64>,
}

impl<'a, R: BlockRead> MappingCursor<'a, R> {
    pub fn new(r: &'a R, root: u64) -> Self {
        MappingCursor {
            r,
            frames: Vec::new(),
            depth: 0,
            leaf: Vec::new(),
            pos: 0,
            leaf_loc: root,
            last_key: None,
            root: Some(root),
        }
    }

    /// The next mapping, or None at the end.
    pub fn next_mapping(&mut self) -> pdata::Result<Option<(u64, u64)>> {
        loop {
            if let Some(&(k, v)) = self.leaf.get(self.pos) {
                self.pos += 1;
                if self.last_key.is_some_and(|last| k <= last) {
                    return Err(pdata::Error::corrupt(
                        self.leaf_loc,
                        "mapping tree node",
                        format!("key {k} out of order"),
                    ));
                }
                self.last_key = Some(k);
                return Ok(Some((k, v)));
            }
            let Some(loc) = self.next_node() else {
                return Ok(None);
            };
            self.load(loc)?;
        }
    }

    /// The next node to read: the root first, then the next unvisited child.
    fn next_node(&mut self) -> Option<u64> {
        if let Some(root) = self.root.take() {
            return Some(root);
        }
        while self.depth > 0 {
            let f = &mut self.frames[self.depth - 1];
            if let Some(&c) = f.children.get(f.next) {
                f.next += 1;
                return Some(c);
            }
            self.depth -= 1;
        }
        None
    }

    fn load(&mut self, loc: u64) -> pdata::Result<()> {
        let b = read_mapping_node(self.r, loc)?;
        let n = Node(&b);
        self.leaf.clear();
        self.pos = 0;
        self.leaf_loc = loc;
        if n.is_leaf() {
            self.leaf.extend((0..n.nr_entries()).map(|i| {
                let bt = BlockTime::unpack(n.value_u64(i));
                (n.key(i), bt.block)
            }));
            return Ok(());
        }
        if self.depth >= MAX_TREE_DEPTH {
            return Err(too_deep(loc));
        }
        if self.frames.len() == self.depth {
            self.frames.push(Frame::default());
        }
        let f = &mut self.frames[self.depth];
        f.children.clear();
        f.children
            .extend((0..n.nr_entries()).map(|i| n.value_u64(i)));
        f.next = 0;
        self.depth += 1;
        Ok(())
    }
}

/// Consecutive thin blocks mapped to consecutive data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub thin_begin: u64,
    pub data_begin: u64,
    pub len: u64,
}

/// A device's mappings joined into maximal runs (times are ignored: a run
/// is about where the data is).
pub struct RunCursor<'a, R: BlockRead> {
    mappings: MappingCursor<'a, R>,
    pending: Option<Run>,
    done: bool,
}

impl<'a, R: BlockRead> RunCursor<'a, R> {
    pub fn new(r: &'a R, root: u64) -> Self {
        RunCursor {
            mappings: MappingCursor::new(r, root),
            pending: None,
            done: false,
        }
    }

    pub fn next_run(&mut self) -> pdata::Result<Option<Run>> {
        while !self.done {
            let Some((thin, data)) = self.mappings.next_mapping()? else {
                self.done = true;
                break;
            };
            if let Some(r) = &mut self.pending {
                if r.thin_begin.checked_add(r.len) == Some(thin)
                    && r.data_begin.checked_add(r.len) == Some(data)
                {
                    r.len += 1;
                    continue;
                }
            }
            let fresh = Run {
                thin_begin: thin,
                data_begin: data,
                len: 1,
            };
            if let Some(r) = self.pending.replace(fresh) {
                return Ok(Some(r));
            }
        }
        Ok(self.pending.take())
    }
}
