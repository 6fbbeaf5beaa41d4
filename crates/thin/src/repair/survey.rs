//! Validated walks that survive damage: a tree is cut into the sub-trees
//! that read cleanly ("whole") and the key ranges whose nodes are lost
//! ("gaps"). Summaries of mapping sub-trees are memoised, so trees shared
//! by snapshots are read once.

use super::reader::Reader;
use crate::format::block_time::BlockTime;
use pdata::btree::node::Node;
use rustc_hash::{FxHashMap, FxHashSet};

/// Deeper than any real tree: a cycle or garbage.
const MAX_DEPTH: usize = 32;

/// Keys `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub lo: u64,
    pub hi: u64,
}

impl KeyRange {
    pub const ALL: KeyRange = KeyRange {
        lo: 0,
        hi: u64::MAX,
    };

    pub fn contains(&self, r: &KeyRange) -> bool {
        self.lo <= r.lo && r.hi <= self.hi
    }

    pub fn overlaps(&self, r: &KeyRange) -> bool {
        self.lo <= r.hi && r.lo <= self.hi
    }

    /// The bounds of child `i` of an internal node with `keys`, inside `self`.
    fn child(&self, keys: &[u64], i: usize) -> Option<KeyRange> {
        let lo = keys[i].max(self.lo);
        let hi = match keys.get(i + 1) {
            Some(&next) => (next - 1).min(self.hi),
            None => self.hi,
        };
        (lo <= hi).then_some(KeyRange { lo, hi })
    }
}

/// A mapping sub-tree as it reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    /// Every node below validates and keeps its keys inside its parent's.
    pub whole: bool,
    /// First and last key, None when empty.
    pub keys: Option<KeyRange>,
    pub mappings: u64,
    pub max_block: u64,
    pub max_time: u32,
}

/// A piece of a device's mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A sub-tree that reads cleanly, with its first and last key.
    Whole { loc: u64, keys: KeyRange },
    /// Keys whose nodes are lost.
    Gap(KeyRange),
}

pub(crate) struct Survey<'r> {
    pub r: &'r Reader,
    memo: FxHashMap<u64, Option<Summary>>,
}

impl<'r> Survey<'r> {
    pub fn new(r: &'r Reader) -> Self {
        Survey {
            r,
            memo: FxHashMap::default(),
        }
    }

    /// The summary of the mapping sub-tree at `loc`; None when `loc` is not
    /// a valid mapping-tree node.
    pub fn summary(&mut self, loc: u64) -> Option<Summary> {
        self.summary_at(loc, 0)
    }

    fn summary_at(&mut self, loc: u64, depth: usize) -> Option<Summary> {
        if let Some(s) = self.memo.get(&loc) {
            return *s;
        }
        let (s, leaf) = if depth > MAX_DEPTH {
            (None, false)
        } else {
            self.compute(loc, depth)
        };
        // Leaves below a root are not kept: a shared sub-tree is met again
        // at its root, and leaves are most of the nodes.
        if !(leaf && depth > 0) {
            self.memo.insert(loc, s);
        }
        s
    }

    /// The summary, and whether `loc` is a leaf.
    fn compute(&mut self, loc: u64, depth: usize) -> (Option<Summary>, bool) {
        let Some(b) = self.r.node(loc, 8) else {
            return (None, false);
        };
        let n = Node(&b);
        let nr = n.nr_entries();
        let keys = (nr > 0).then(|| KeyRange {
            lo: n.key(0),
            hi: n.key(nr - 1),
        });
        if n.is_leaf() {
            let (mut max_block, mut max_time) = (0, 0);
            for i in 0..nr {
                let bt = BlockTime::unpack(n.value_u64(i));
                max_block = max_block.max(bt.block);
                max_time = max_time.max(bt.time);
            }
            let s = Summary {
                whole: true,
                keys,
                mappings: nr as u64,
                max_block,
                max_time,
            };
            return (Some(s), true);
        }
        if nr == 0 {
            return (None, false);
        }
        let node_keys: Vec<u64> = n.keys().collect();
        let children: Vec<u64> = (0..nr).map(|i| n.value_u64(i)).collect();
        drop(b);
        let mut s = Summary {
            whole: true,
            keys: None,
            mappings: 0,
            max_block: 0,
            max_time: 0,
        };
        let mut first = None;
        let mut last = None;
        for (i, &child) in children.iter().enumerate() {
            let bounds = KeyRange::ALL.child(&node_keys, i);
            match self.summary_at(child, depth + 1) {
                None => s.whole = false,
                Some(c) => {
                    let inside = match (c.keys, bounds) {
                        (None, _) => true,
                        (Some(k), Some(b)) => b.contains(&k),
                        (Some(_), None) => false,
                    };
                    s.whole &= c.whole && inside;
                    s.mappings += c.mappings;
                    s.max_block = s.max_block.max(c.max_block);
                    s.max_time = s.max_time.max(c.max_time);
                    if let Some(k) = c.keys {
                        first.get_or_insert(k.lo);
                        last = Some(k.hi);
                    }
                }
            }
        }
        s.keys = first.zip(last).map(|(lo, hi)| KeyRange { lo, hi });
        (Some(s), false)
    }

    /// Cuts the mapping tree at `root`, restricted to `range`, into whole
    /// sub-trees and gaps, in key order. Empty sub-trees are left out.
    pub fn expand(&mut self, root: u64, range: KeyRange, out: &mut Vec<Piece>) {
        let mut seen = FxHashSet::default();
        self.expand_at(root, range, 0, &mut seen, out);
    }

    fn expand_at(
        &mut self,
        loc: u64,
        range: KeyRange,
        depth: usize,
        seen: &mut FxHashSet<u64>,
        out: &mut Vec<Piece>,
    ) {
        let Some(s) = self.summary_at(loc, depth) else {
            out.push(Piece::Gap(range));
            return;
        };
        match s.keys {
            None if s.whole => return,
            Some(keys) if s.whole && range.contains(&keys) => {
                out.push(Piece::Whole { loc, keys });
                return;
            }
            _ => {}
        }
        // A node met twice in one tree is garbage; so is a leaf out of bounds.
        let node = if seen.insert(loc) {
            self.r.node(loc, 8)
        } else {
            None
        };
        let Some(b) = node.filter(|b| Node(b).is_internal()) else {
            out.push(Piece::Gap(range));
            return;
        };
        let n = Node(&b);
        let keys: Vec<u64> = n.keys().collect();
        let children: Vec<u64> = (0..n.nr_entries()).map(|i| n.value_u64(i)).collect();
        drop(b);
        for (i, &child) in children.iter().enumerate() {
            if let Some(bounds) = range.child(&keys, i) {
                self.expand_at(child, bounds, depth + 1, seen, out);
            }
        }
    }

    /// Mappings of the sub-tree at `loc` whose data block is below `limit`.
    pub fn mappings_below(&mut self, loc: u64, limit: u64) -> pdata::Result<u64> {
        match self.summary(loc) {
            Some(s) if s.max_block < limit => Ok(s.mappings),
            _ => {
                let mut n = 0;
                pdata::btree::walk(self.r, loc, &mut |_, v| {
                    if BlockTime::from_bytes(v).block < limit {
                        n += 1;
                    }
                    Ok(())
                })?;
                Ok(n)
            }
        }
    }
}

/// Walks a single-level tree whose leaves hold `value_size` bytes (the top
/// level of the mapping tree, the details tree), calling `f(key, value)`
/// for every entry of a valid leaf, in key order; gives the key ranges
/// whose nodes are lost.
pub(crate) fn salvage_entries(
    r: &Reader,
    root: u64,
    value_size: usize,
    range: KeyRange,
    f: &mut dyn FnMut(u64, &[u8]),
) -> Vec<KeyRange> {
    let mut gaps = Vec::new();
    let mut seen = FxHashSet::default();
    entries_at(r, root, value_size, range, 0, &mut seen, f, &mut gaps);
    gaps
}

#[allow(clippy::too_many_arguments)]
fn entries_at(
    r: &Reader,
    loc: u64,
    value_size: usize,
    range: KeyRange,
    depth: usize,
    seen: &mut FxHashSet<u64>,
    f: &mut dyn FnMut(u64, &[u8]),
    gaps: &mut Vec<KeyRange>,
) {
    let node = if depth <= MAX_DEPTH && seen.insert(loc) {
        r.node(loc, value_size)
    } else {
        None
    };
    let Some(b) = node else {
        gaps.push(range);
        return;
    };
    let n = Node(&b);
    let nr = n.nr_entries();
    if nr > 0 && (n.key(0) < range.lo || n.key(nr - 1) > range.hi) {
        gaps.push(range);
        return;
    }
    if n.is_leaf() {
        for i in 0..nr {
            f(n.key(i), n.value(i));
        }
        return;
    }
    let keys: Vec<u64> = n.keys().collect();
    let children: Vec<u64> = (0..nr).map(|i| n.value_u64(i)).collect();
    drop(b);
    if children.is_empty() {
        gaps.push(range);
    }
    for (i, &child) in children.iter().enumerate() {
        if let Some(bounds) = range.child(&keys, i) {
            entries_at(r, child, value_size, bounds, depth + 1, seen, f, gaps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_bounds() {
        let keys = [10, 20, 30];
        let r = KeyRange { lo: 15, hi: 25 };
        assert_eq!(r.child(&keys, 0), Some(KeyRange { lo: 15, hi: 19 }));
        assert_eq!(r.child(&keys, 1), Some(KeyRange { lo: 20, hi: 25 }));
        assert_eq!(r.child(&keys, 2), None);
        assert_eq!(
            KeyRange::ALL.child(&keys, 2),
            Some(KeyRange {
                lo: 30,
                hi: u64::MAX
            })
        );
        assert!(KeyRange::ALL.contains(&r) && !r.contains(&KeyRange::ALL));
        assert!(r.overlaps(&KeyRange { lo: 25, hi: 40 }));
        assert!(!r.overlaps(&KeyRange { lo: 26, hi: 40 }));
    }
}
