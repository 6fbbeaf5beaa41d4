//! Unused data blocks: the runs of zero counts in the data space map
//! (`thin_trim` discards them).

use super::leaves::MappingLeaves;
use crate::Result;
use pdata::block_manager::{le64, BlockRead};
use pdata::btree;
use pdata::space_map::format::{
    IndexEntry, SmRoot, BITMAP_HEADER_SIZE, BITMAP_VALIDATOR, ENTRIES_PER_BITMAP, INDEX_ENTRY_SIZE,
};
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
    let bitmaps = bitmap_locations(r, sm)?;
    let mut open = None;
    if scan(r, &bitmaps, 0..end, &mut open, f)?.is_continue() {
        if let Some(s) = open {
            let _ = f(s..end)?;
        }
    }
    Ok(())
}

/// Calls `f` with the free runs of data blocks `blocks` (from a bitmap's
/// first block) that end there, in order, until it says to stop. `open`
/// is where a run still open began: one open at the start continues, one
/// open at the end is left for the caller.
fn scan(
    r: &impl BlockRead,
    bitmaps: &[u64],
    blocks: Range<u64>,
    open: &mut Option<u64>,
    f: &mut dyn FnMut(Range<u64>) -> Result<ControlFlow<()>>,
) -> Result<ControlFlow<()>> {
    debug_assert!(blocks.start.is_multiple_of(ENTRIES_PER_BITMAP));
    let first = (blocks.start / ENTRIES_PER_BITMAP) as usize;
    let end = blocks.end;
    for (i, &loc) in bitmaps.iter().enumerate().skip(first) {
        let base = i as u64 * ENTRIES_PER_BITMAP;
        if base >= end {
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
                    if f(s..first)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                continue;
            }
            for e in 0..in_word {
                let is_used = used >> (2 * e) & 1 != 0;
                match (is_used, *open) {
                    (false, None) => *open = Some(first + e),
                    (true, Some(s)) => {
                        *open = None;
                        if f(s..first + e)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// The free runs of the data space map `sm`, checked against the mappings
/// of the trees at `roots` (nodes within `nr_metadata_blocks`) window by
/// window, the data blocks' counts within about `budget` bytes: calls `f`
/// with each free run, in order, up to the first mapped block found in
/// one, which it returns (a space map that calls a mapped block free
/// would have its data discarded). The runs given before it are free.
pub fn first_mapped_free(
    r: &impl BlockRead,
    sm: &SmRoot,
    roots: &[u64],
    nr_metadata_blocks: u64,
    budget: usize,
    f: &mut dyn FnMut(Range<u64>) -> Result<()>,
) -> Result<Option<u64>> {
    let nr_blocks = sm.nr_blocks;
    let bitmaps = bitmap_locations(r, sm)?;
    let (walk, mut data) = MappingLeaves::walk(r, roots, nr_metadata_blocks, nr_blocks, budget)?;
    let mut open = None;
    let mut found = None;
    loop {
        let (start, end) = (data.window_start(), data.window_end());
        // Only the part of a run within the window is checked here: an
        // earlier part was checked with the window before.
        let check = |run: &Range<u64>| data.first_counted_in(run.start.max(start)..run.end);
        let _ = scan(r, &bitmaps, start..end, &mut open, &mut |run| {
            found = check(&run);
            if found.is_some() {
                return Ok(ControlFlow::Break(()));
            }
            f(run)?;
            Ok(ControlFlow::Continue(()))
        })?;
        if found.is_none() {
            found = open.and_then(|s| check(&(s..end)));
        }
        if found.is_some() {
            return Ok(found);
        }
        if !walk.next_window(r, &mut data)? {
            break;
        }
    }
    if let Some(s) = open {
        f(s..nr_blocks)?;
    }
    Ok(None)
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
