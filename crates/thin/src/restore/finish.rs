//! The end of a restore: the details and top-level trees, both space maps,
//! then the superblock between two flushes.

use super::{invalid, Build};
use crate::format::superblock::{
    Superblock, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR, THIN_VERSION,
};
use crate::Result;
use pdata::block_manager::Validator;
use pdata::btree::TreeBuilder;
use pdata::space_map::builder::{disk_sm_blocks, write_disk_sm};
use pdata::space_map::format::{nr_bitmaps, MAX_METADATA_BLOCKS};

pub(super) fn finish(b: &mut Build) -> Result<()> {
    b.devices.sort_unstable_by_key(|d| d.0);
    let mut details = TreeBuilder::new(crate::format::device_details::DEVICE_DETAILS_SIZE);
    let mut top = TreeBuilder::new(8);
    for (id, d, root) in &b.devices {
        details.push(&mut b.w, *id, &d.pack())?;
        top.push_u64(&mut b.w, *id, *root)?;
    }
    let device_details_root = details.finish(&mut b.w)?;
    let data_mapping_root = top.finish(&mut b.w)?;

    // The data space map can be large (a bitmap per 16320 data blocks):
    // when it cannot fit, it is only counted.
    let data_sm_blocks = disk_sm_blocks(&b.counts);
    let end = b.w.next_location() + data_sm_blocks;
    if b.w.overflowed() || end > b.w.limit() {
        return Err(too_small(end, b.w.limit()));
    }
    let data_sm_root = write_disk_sm(&mut b.w, &b.counts)?;
    b.w.flush_batch()?;
    let used = b.w.next_location();
    let metadata_sm_root = b.msm.write(&b.w, used)?;
    let dev = b.w.device().clone();
    dev.flush().map_err(pdata::Error::Flush)?;

    let sb = Superblock {
        flags: 0,
        version: THIN_VERSION,
        time: b.pool.time,
        transaction_id: b.pool.transaction_id,
        held_root: 0,
        data_sm_root,
        metadata_sm_root,
        data_mapping_root,
        device_details_root,
        data_block_size: b.pool.data_block_size,
        metadata_nr_blocks: b.msm.nr_blocks,
        compat_flags: 0,
        compat_ro_flags: 0,
        incompat_flags: 0,
    };
    let mut block = sb.pack();
    SUPERBLOCK_VALIDATOR.prepare_for_write(SUPERBLOCK_LOCATION, &mut block)?;
    dev.write_block(SUPERBLOCK_LOCATION, &block)
        .map_err(|source| pdata::Error::Io {
            op: "writing",
            block: SUPERBLOCK_LOCATION,
            source,
        })?;
    dev.flush().map_err(pdata::Error::Flush)?;
    Ok(())
}

/// The error for a device of `available` blocks on which the layout
/// needed `end` (its metadata space map sized for `available`).
fn too_small(end: u64, available: u64) -> crate::ThinError {
    // A device of n blocks has nr_bitmaps(n) bitmaps: find the smallest
    // n that holds everything else plus its own bitmaps.
    let base = end - nr_bitmaps(available) as u64;
    let mut n = base + 1;
    while base + nr_bitmaps(n) as u64 > n {
        n = base + nr_bitmaps(n) as u64;
    }
    if n > MAX_METADATA_BLOCKS {
        invalid(format!(
            "the output is too small for this metadata: {n} blocks needed, more than a metadata device can hold ({MAX_METADATA_BLOCKS} blocks)"
        ))
    } else {
        invalid(format!(
            "the output is too small for this metadata: {n} blocks needed, {available} available"
        ))
    }
}
