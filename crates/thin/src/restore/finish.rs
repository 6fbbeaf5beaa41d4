//! The end of a restore: the details and top-level trees and the data
//! space map, then the frame writes the metadata space map and the
//! superblock.

use super::Build;
use crate::format::device_details::DEVICE_DETAILS_SIZE;
use crate::format::superblock::{Superblock, SUPERBLOCK_VALIDATOR, THIN_VERSION};
use crate::Result;
use pdata::btree::TreeBuilder;
use pdata::space_map::builder::{disk_sm_blocks, write_disk_sm};

pub(super) fn finish(mut b: Build) -> Result<()> {
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
    // when it cannot fit, it is only counted.
    b.frame.ensure_room(disk_sm_blocks(&b.counts))?;
    let data_sm_root = write_disk_sm(b.frame.writer(), &b.counts)?;

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
