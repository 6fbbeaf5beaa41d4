//! Thin's data space map index, gathered by the walk from its B-tree: it
//! must hold bitmaps 0..n for the data device. (The comparison of both
//! maps with the counts is the engine's, `pdata::check::space_map`.)

use super::report::Section;
use super::trees::{IndexSlot, Walker};
use pdata::check::walk::EngineBlock;
use pdata::space_map::format::nr_bitmaps;

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
