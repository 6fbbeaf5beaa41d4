//! Thin's data space map index, gathered by the walk from its B-tree: it
//! must hold bitmaps 0..n for the data device. (The comparison of both
//! maps with the counts is the engine's, `pdata::check::space_map`.)

use super::repair;
use super::report::Section;
use super::trees::{bottom_leaf, overflow_leaf, IndexSlot, Kind, Thin, Tree, Walker};
use pdata::check::space_map::{BitmapRef, Map};
use pdata::check::walk::{leaf_values, EngineBlock};
use pdata::check::RefCounts;
use pdata::space_map::counts::CHUNK;
use pdata::space_map::format::nr_bitmaps;
use pdata::space_map::spans::LeafSpans;
use std::ops::Range;

/// Checks that the data space map index holds bitmaps 0..n for `nr_blocks`
/// and counts the bitmaps; returns those it holds, by number.
pub fn data_index(w: &mut Walker, nr_blocks: u64) -> Vec<IndexSlot> {
    let mut slots = std::mem::take(&mut w.client.data_index);
    slots.sort_by_key(|s| s.key);
    let want = nr_bitmaps(nr_blocks) as u64;
    if let Some((i, s)) = slots.iter().enumerate().find(|&(i, s)| s.key != i as u64) {
        w.problems.fatal(
            Section::SpaceMaps,
            format!(
                "data space map index: entry {} where bitmap {i} was expected",
                s.key
            ),
        );
    }
    if slots.len() as u64 != want {
        w.problems.fatal(
            Section::SpaceMaps,
            format!(
                "data space map index has {} entries; {nr_blocks} blocks need {want}",
                slots.len()
            ),
        );
    }
    slots.dedup_by_key(|s| s.key);
    slots.retain(|s| s.key < want);
    for s in &slots {
        w.reference_data_bitmap(
            s.entry.blocknr,
            EngineBlock::DataBitmap(s.key).into(),
            Section::SpaceMaps,
        );
    }
    slots
}

/// The data bitmaps of `slots` for the data blocks `blocks` (whole
/// bitmaps: a window's bounds are bitmap boundaries).
pub fn data_bitmaps(
    slots: &[IndexSlot],
    blocks: Range<u64>,
) -> impl Iterator<Item = BitmapRef> + '_ {
    let first = blocks.start.div_ceil(CHUNK as u64);
    let end = blocks.end.div_ceil(CHUNK as u64);
    slots
        .iter()
        .filter(move |s| (first..end).contains(&s.key))
        .map(|s| BitmapRef {
            map: Map::Data,
            index: s.key,
            loc: s.entry.blocknr,
        })
}

/// Counts the data blocks of the window of `w.client.data` (a later one:
/// the walk counted the first) from the mapping leaves and data overflow
/// leaves the walk visited, read again; returns where the window ended.
pub fn recount(w: &mut Walker) -> u64 {
    w.client.recount = true;
    let kind = |tree| Kind {
        tree,
        dev: 0,
        snap: false,
    };
    for tree in [Tree::Bottom, Tree::DataOverflow] {
        let leaves = std::mem::take(spans(&mut w.client, tree));
        let wanted = |w: &Walker, loc| leaves.refers_into(loc, &w.client.data);
        w.revisit(leaves.leaves(), kind(tree), wanted, |w, r, b, shape| {
            let values = leaf_values(b, shape);
            match tree {
                Tree::Bottom => bottom_leaf(w, r, b, values),
                _ => overflow_leaf(w, b, values),
            }
        });
        *spans(&mut w.client, tree) = leaves;
    }
    w.client.data.window_end()
}

/// The leaves of `tree` (mapping or data overflow) and their spans.
fn spans(t: &mut Thin, tree: Tree) -> &mut LeafSpans {
    match tree {
        Tree::Bottom => &mut t.bottom_leaves,
        _ => &mut t.overflow_leaves,
    }
}

/// Sets free the data leaks of the `leaky` bitmaps before the window at
/// hand (the last one counted), counting their windows again; the blocks
/// set free.
pub fn earlier_data_leaks(
    w: &mut Walker,
    leaky: &[BitmapRef],
    data_index: &mut [IndexSlot],
    budget: usize,
) -> Result<u64, String> {
    let mut todo: Vec<BitmapRef> = leaky
        .iter()
        .filter(|r| r.map == Map::Data && r.index * (CHUNK as u64) < w.client.data.window_start())
        .copied()
        .collect();
    todo.sort_unstable_by_key(|r| r.index);
    let mut freed = 0;
    while let Some(first) = todo.first() {
        let nr = w.client.data.nr_blocks();
        w.client.data =
            RefCounts::window(nr, first.index * CHUNK as u64, budget).map_err(|e| e.to_string())?;
        recount(w);
        freed += repair::data_leaks(w, &todo, data_index)?;
        let data = &w.client.data;
        todo.retain(|r| !data.in_window(r.index * CHUNK as u64));
    }
    Ok(freed)
}
