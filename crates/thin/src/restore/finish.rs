//! The end of a restore: the details and top-level trees and the data
//! space map (its later windows counted from the mapping leaves read
//! back), then the frame writes the metadata space map and the superblock.

use super::Build;
use crate::format::block_time::TIME_BITS;
use crate::format::device_details::DEVICE_DETAILS_SIZE;
use crate::format::superblock::{Superblock, SUPERBLOCK_VALIDATOR, THIN_VERSION};
use crate::Result;
use pdata::block_manager::le64;
use pdata::btree::TreeBuilder;
use pdata::check::node::verify_node;
use pdata::check::pipeline::{self, Buffers};
use pdata::check::walk::leaf_values;
use pdata::io::BlockDevice;
use pdata::progress::NoProgress;
use pdata::space_map::builder::{disk_sm_blocks, disk_sm_blocks_for, write_disk_sm_windows};
use pdata::space_map::spans::{next_window_end, LeafSpans};
use pdata::space_map::RefCounts;
use std::ops::Range;

pub(super) fn finish(mut b: Build) -> Result<()> {
    let mappings = b.mappings_start..b.frame.writer().next_location();
    b.devices.sort_unstable_by_key(|d| d.0);
    let w = b.frame.writer();
    let mut details = TreeBuilder::new(DEVICE_DETAILS_SIZE);
    let mut top = TreeBuilder::new(8);
    for (id, d, root) in &b.devices {
        details.push(w, *id, &d.pack())?;
        top.push_u64(w, *id, *root)?;
    }
    let device_details_root = details.finish(w)?;
    let data_mapping_root = top.finish(w)?;

    // The data space map can be large (a bitmap per 16320 data blocks):
    // when it cannot fit, it is only counted. Counted window by window,
    // its overflow entries past the first window are known only as it is
    // written: a device found too small then (not all the leaves were
    // written) is given the most they can take.
    let counts = std::mem::replace(&mut b.counts, RefCounts::new(0)?);
    if counts.window_end() == counts.nr_blocks() {
        b.frame.ensure_room(disk_sm_blocks(&counts))?;
    } else if b.frame.writer().overflowed() {
        let most = counts.nr_overflow() + b.nr_mappings / 3;
        b.frame
            .ensure_room(disk_sm_blocks_for(counts.nr_blocks(), most))?;
    }
    let dev = b.frame.writer().device().clone();
    b.frame.writer().flush_batch()?;
    let (nr, budget) = (counts.nr_blocks(), b.budget);
    // One window's counts at a time: the last one's dropped first. The
    // first recount reads every node written and notes what each leaf
    // refers to; the later ones read only the leaves of their window.
    let mut spans = None;
    let data_sm_root = write_disk_sm_windows(b.frame.writer(), counts, |last, from| {
        let len = last.window_end() - last.window_start();
        drop(last);
        let counts = RefCounts::window(nr, from, budget)?.ending_by(next_window_end(from, len, nr));
        recount(dev.as_ref(), mappings.clone(), counts, &mut spans)
    })?;

    let pool = &b.pool;
    b.frame.finish(&SUPERBLOCK_VALIDATOR, |metadata_sm_root| {
        Superblock {
            flags: 0,
            version: THIN_VERSION,
            time: pool.time,
            transaction_id: pool.transaction_id,
            held_root: 0,
            data_sm_root,
            metadata_sm_root,
            data_mapping_root,
            device_details_root,
            data_block_size: pool.data_block_size,
            metadata_nr_blocks: metadata_sm_root.nr_blocks,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
        }
        .pack()
    })?;
    Ok(())
}

/// Nodes read back at a time: what a later window's pass reads past its
/// end before it notices (16 MiB).
const PIECE: usize = 1 << 12;

/// Counts the data window of `counts` from the mapping leaves among the
/// `nodes` written: all of them the first time (`spans` None, then noted
/// there), else those `spans` says refer into the window.
fn recount(
    dev: &dyn BlockDevice,
    nodes: Range<u64>,
    mut counts: RefCounts,
    spans: &mut Option<LeafSpans>,
) -> pdata::Result<RefCounts> {
    let first = spans.is_none();
    let spans = spans.get_or_insert_with(|| LeafSpans::new(counts.nr_blocks(), nodes.clone()));
    let mut buffers = Buffers::default();
    let mut bad = None;
    let mut start = nodes.start;
    loop {
        let locs: Vec<u64> = if first {
            let piece: Vec<u64> = (start..nodes.end).take(PIECE).collect();
            start += piece.len() as u64;
            piece
        } else {
            spans.next_piece(&mut start, &counts, PIECE)
        };
        if locs.is_empty() {
            break;
        }
        pipeline::run(
            dev,
            &NoProgress,
            &locs,
            &mut buffers,
            |&l| l,
            |&l, b| b.map(|b| verify_node(l, b, 8)),
            |&l, b, shape| match (b, shape) {
                (Some(b), Some(Ok(shape))) if shape.leaf => {
                    // A leaf holds at most (4096 - 32) / 16 entries.
                    let mut blocks = [0u64; 256];
                    let values = leaf_values(b, &shape);
                    let nr = shape.nr.min(256);
                    for (k, v) in values.chunks_exact(8).take(256).enumerate() {
                        blocks[k] = le64(v, 0) >> TIME_BITS;
                    }
                    if first {
                        spans.record_all(l, &blocks[..nr]);
                    }
                    let n = counts.keep_window(&mut blocks[..nr]);
                    counts.inc_all(&blocks[..n]);
                }
                (Some(_), Some(Ok(_))) => {}
                _ => bad = bad.or(Some(l)),
            },
        );
    }
    match bad {
        Some(l) => Err(pdata::Error::invalid(format!(
            "mapping tree node {l} cannot be read back"
        ))),
        None => Ok(counts),
    }
}
