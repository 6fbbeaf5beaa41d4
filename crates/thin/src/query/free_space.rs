//! Unused data blocks: the runs of zero counts in the data space map
//! (`thin_trim` discards them).

use crate::Result;
use pdata::block_manager::{le64, BlockRead};
use pdata::btree;
use pdata::space_map::format::{
    IndexEntry, SmRoot, BITMAP_HEADER_SIZE, BITMAP_VALIDATOR, ENTRIES_PER_BITMAP, INDEX_ENTRY_SIZE,
};
use pdata::space_map::RefCounts;
use std::ops::{ControlFlow, Range};

/// Entries (2 bits each) per 64-bit bitmap word.
const ENTRIES_PER_WORD: u64 = 32;
/// The low bit of every entry of a word.
const LOW_BITS: u64 = 0x5555_5555_5555_5555;

/// Calls `f` with each maximal range of data blocks whose count is zero, in
/// increasing order.
pub fn free_ranges(
    r: &impl BlockRead,
    sm: &SmRoot,
    f: &mut dyn FnMut(Range<u64>) -> Result<()>,
) -> Result<()> {
    free_ranges_until(r, sm, sm.nr_blocks, &mut |range| {
        f(range).map(|()| ControlFlow::Continue(()))
    })
}

/// As [`free_ranges`] for the blocks below `end` (a range that runs on
/// ends there), until `f` says to stop: the bitmaps past the one it
/// stopped in, or past `end`, are not read.
pub fn free_ranges_until(
    r: &impl BlockRead,
    sm: &SmRoot,
    end: u64,
    f: &mut dyn FnMut(Range<u64>) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let end = end.min(sm.nr_blocks);
    let stopped = std::cell::Cell::new(false);
    let mut f = |range: Range<u64>| -> Result<()> {
        if !stopped.get() && f(range)?.is_break() {
            stopped.set(true);
        }
        Ok(())
    };
    let bitmaps = bitmap_locations(r, sm)?;
    let mut open: Option<u64> = None;
    for (i, &loc) in bitmaps.iter().enumerate() {
        let base = i as u64 * ENTRIES_PER_BITMAP;
        if stopped.get() || base >= end {
            break;
        }
        let entries = (end - base).min(ENTRIES_PER_BITMAP);
        let b = r.read_lock(loc, &BITMAP_VALIDATOR)?;
        for w in 0..entries.div_ceil(ENTRIES_PER_WORD) {
            let word = le64(&b[..], BITMAP_HEADER_SIZE + 8 * w as usize);
            let used = (word | (word >> 1)) & LOW_BITS;
            let first = base + w * ENTRIES_PER_WORD;
            let in_word = (entries - w * ENTRIES_PER_WORD).min(ENTRIES_PER_WORD);
            // Whole words free or used are the common case.
            if used == 0 && in_word == ENTRIES_PER_WORD {
                open.get_or_insert(first);
                continue;
            }
            if used == LOW_BITS {
                if let Some(s) = open.take() {
                    f(s..first)?;
                }
                continue;
            }
            for e in 0..in_word {
                let is_used = used >> (2 * e) & 1 != 0;
                match (is_used, open) {
                    (false, None) => open = Some(first + e),
                    (true, Some(s)) => {
                        f(s..first + e)?;
                        open = None;
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(s) = open {
        f(s..end)?;
    }
    Ok(())
}

/// The bitmap block of each group of ENTRIES_PER_BITMAP data blocks, from
/// the space map's index tree (which must name every one, in order).
fn bitmap_locations(r: &impl BlockRead, sm: &SmRoot) -> Result<Vec<u64>> {
    let expected = sm.nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
    let mut out = Vec::new();
    let mut bad = None;
    btree::walk(r, sm.bitmap_root, &mut |k, v| {
        if k != out.len() as u64 || v.len() != INDEX_ENTRY_SIZE {
            bad.get_or_insert(k);
        } else {
            out.push(IndexEntry::unpack(v).blocknr);
        }
        Ok(())
    })?;
    if let Some(k) = bad {
        return Err(pdata::Error::corrupt(
            sm.bitmap_root,
            "data space-map index",
            format!("unexpected entry {k}"),
        )
        .into());
    }
    if out.len() as u64 != expected {
        return Err(pdata::Error::corrupt(
            sm.bitmap_root,
            "data space-map index",
            format!(
                "{} bitmaps for {} blocks (expected {expected})",
                out.len(),
                sm.nr_blocks
            ),
        )
        .into());
    }
    Ok(out)
}

/// The data blocks some mapping points at, in memory that follows the
/// blocks mapped rather than the size of the data device.
pub struct MappedBlocks {
    counts: RefCounts,
}

impl MappedBlocks {
    /// The first mapped block in `r`, if any.
    pub fn first_in(&self, r: Range<u64>) -> Option<u64> {
        self.counts.first_counted_in(r)
    }

    fn set(&mut self, b: u64) -> Result<()> {
        if b >= self.counts.nr_blocks() {
            return Err(crate::ThinError::DataBlockOutOfRange {
                block: b,
                nr_blocks: self.counts.nr_blocks(),
            });
        }
        self.counts.inc(b);
        Ok(())
    }
}

/// The data blocks mapped by the mapping trees at `roots` (a node shared
/// by several trees is read once). Fails on any node that does not
/// validate and on data blocks beyond `nr_blocks`.
pub fn mapped_blocks(r: &impl BlockRead, roots: &[u64], nr_blocks: u64) -> Result<MappedBlocks> {
    let mut m = MappedBlocks {
        counts: RefCounts::new(nr_blocks)?,
    };
    visit_mapped_blocks(r, roots, &mut |b| m.set(b))?;
    Ok(m)
}

/// Calls `f` with the data block of every mapping in the trees at `roots`,
/// in no particular order; a node shared by several trees is read once, so
/// a block comes once per leaf entry that maps it. Fails on any node that
/// does not validate.
pub fn visit_mapped_blocks(
    r: &impl BlockRead,
    roots: &[u64],
    f: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut stack: Vec<(u64, usize)> = roots.iter().map(|&r| (r, 0)).collect();
    while let Some((loc, depth)) = stack.pop() {
        if !seen.insert(loc) {
            continue;
        }
        if depth > super::MAX_TREE_DEPTH {
            return Err(super::too_deep(loc).into());
        }
        let b = super::read_mapping_node(r, loc)?;
        let n = pdata::btree::node::Node(&b);
        for i in 0..n.nr_entries() {
            if n.is_leaf() {
                f(crate::format::block_time::BlockTime::unpack(n.value_u64(i)).block)?;
            } else {
                stack.push((n.value_u64(i), depth + 1));
            }
        }
    }
    Ok(())
}
