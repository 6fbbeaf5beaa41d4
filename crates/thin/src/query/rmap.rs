//! Reverse map: which thin blocks of which devices map the data blocks of
//! some regions (`thin_rmap`).
//!
//! Devices are walked in id order and each one's mappings in thin-block
//! order, as the established tool does, so the runs come out in the same
//! order. A sub-tree shared by several devices (its node's reference count
//! is above one) is read once: the in-region mappings found under it are
//! kept and replayed for the next device that reaches it.
//!
//! The established tools (0.9.0 and 1.x) visit a shared sub-tree only for
//! the first device that reaches it, so the snapshots sharing it are left
//! out of their answer; [`Sharers::FirstOnly`] reproduces that.

use super::{device_roots, read_mapping_node, too_deep, MAX_TREE_DEPTH};
use crate::format::block_time::BlockTime;
use crate::Result;
use pdata::btree::node::Node;
use pdata::transaction_manager::TransactionManager;
use rustc_hash::{FxHashMap, FxHashSet};
use std::ops::Range;

/// Data blocks [data_begin, data_end) are mapped by thin blocks from
/// `thin_begin` of device `dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmapRun {
    pub data_begin: u64,
    pub data_end: u64,
    pub dev: u64,
    pub thin_begin: u64,
}

/// Who is reported for mappings under a sub-tree several devices share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharers {
    /// Every device that maps the data.
    All,
    /// Only the first device (in id order) whose walk reaches the sub-tree.
    FirstOnly,
}

/// The runs of mappings into `regions` of every device under the top-level
/// tree `mapping_root`, in device order then thin-block order.
pub fn rmap(
    tm: &TransactionManager,
    mapping_root: u64,
    regions: &[Range<u64>],
    sharers: Sharers,
) -> Result<Vec<RmapRun>> {
    let mut w = Walker {
        tm,
        regions,
        sharers,
        seen: FxHashSet::default(),
        out: Vec::new(),
        current: None,
        dev: 0,
        kept: Vec::new(),
        sealed: 0,
        replays: FxHashMap::default(),
        recording: 0,
    };
    for (dev, root) in device_roots(tm, mapping_root)? {
        w.dev = dev;
        w.node(root, 0)?;
    }
    if let Some(r) = w.current.take() {
        w.out.push(r);
    }
    Ok(w.out)
}

/// `len` in-region mappings: thin block `thin + i` to data block `data + i`.
#[derive(Clone, Copy)]
struct Kept {
    thin: u64,
    data: u64,
    len: u64,
}

struct Walker<'a> {
    tm: &'a TransactionManager,
    regions: &'a [Range<u64>],
    sharers: Sharers,
    /// Nodes walked so far (FirstOnly).
    seen: FxHashSet<u64>,
    out: Vec<RmapRun>,
    current: Option<RmapRun>,
    dev: u64,
    /// In-region mappings found under shared nodes, as runs.
    kept: Vec<Kept>,
    /// Runs of `kept` below this index belong to a finished (or enclosing)
    /// node's slice and are not extended any more.
    sealed: usize,
    /// Shared node -> its slice of `kept`.
    replays: FxHashMap<u64, Range<usize>>,
    /// Shared nodes being walked for the first time, from the root down.
    recording: usize,
}

impl Walker<'_> {
    fn node(&mut self, loc: u64, depth: usize) -> Result<()> {
        if self.sharers == Sharers::FirstOnly {
            return self.node_once(loc, depth);
        }
        if let Some(range) = self.replays.get(&loc).cloned() {
            for i in range.clone() {
                let k = self.kept[i];
                self.emit(k.thin, k.data, k.len);
            }
            if self.recording > 0 {
                self.kept.extend_from_within(range);
            }
            return Ok(());
        }
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep(loc).into());
        }
        let shared = self.tm.is_shared(loc)?;
        let start = self.kept.len();
        if shared {
            self.recording += 1;
            self.sealed = start;
        }
        let b = read_mapping_node(self.tm, loc)?;
        let n = Node(&b);
        if n.is_leaf() {
            self.leaf(n);
        } else {
            let kids: Vec<u64> = (0..n.nr_entries()).map(|i| n.value_u64(i)).collect();
            drop(b);
            for k in kids {
                self.node(k, depth + 1)?;
            }
        }
        if shared {
            self.recording -= 1;
            self.sealed = self.kept.len();
            self.replays.insert(loc, start..self.sealed);
        }
        Ok(())
    }

    /// Walks `loc` unless an earlier device's walk went through it.
    fn node_once(&mut self, loc: u64, depth: usize) -> Result<()> {
        if !self.seen.insert(loc) {
            return Ok(());
        }
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep(loc).into());
        }
        let b = read_mapping_node(self.tm, loc)?;
        let n = Node(&b);
        if n.is_leaf() {
            self.leaf(n);
            return Ok(());
        }
        let kids: Vec<u64> = (0..n.nr_entries()).map(|i| n.value_u64(i)).collect();
        drop(b);
        for k in kids {
            self.node_once(k, depth + 1)?;
        }
        Ok(())
    }

    /// Emits a leaf's in-region mappings (keeping them while recording).
    fn leaf(&mut self, n: Node<'_>) {
        for i in 0..n.nr_entries() {
            let data = BlockTime::unpack(n.value_u64(i)).block;
            if self.regions.iter().any(|r| r.contains(&data)) {
                self.emit(n.key(i), data, 1);
                if self.recording > 0 {
                    self.keep(n.key(i), data);
                }
            }
        }
    }

    /// Adds a mapping to the last kept run when it continues it.
    fn keep(&mut self, thin: u64, data: u64) {
        if self.kept.len() > self.sealed {
            if let Some(k) = self.kept.last_mut() {
                if k.thin.checked_add(k.len) == Some(thin) && k.data + k.len == data {
                    k.len += 1;
                    return;
                }
            }
        }
        self.kept.push(Kept { thin, data, len: 1 });
    }

    /// Adds `len` mappings from `thin` to `data` on: they extend the current
    /// run or start a new one.
    fn emit(&mut self, thin: u64, data: u64, len: u64) {
        if let Some(r) = &mut self.current {
            if r.dev == self.dev
                && data == r.data_end
                && Some(thin) == r.thin_begin.checked_add(r.data_end - r.data_begin)
            {
                r.data_end += len;
                return;
            }
        }
        let fresh = RmapRun {
            data_begin: data,
            data_end: data + len,
            dev: self.dev,
            thin_begin: thin,
        };
        if let Some(r) = self.current.replace(fresh) {
            self.out.push(r);
        }
    }
}
