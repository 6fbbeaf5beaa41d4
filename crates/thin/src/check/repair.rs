//! The two changes thin_check makes, written in place: setting leaked
//! blocks free (with their index entries and the space map roots kept
//! exact), and clearing the needs_check flag. The generic part (bitmaps,
//! the metadata index, the superblock's counts and flags) is the engine's
//! (`pdata::check::repair`); the data map's index tree is thin's.

use super::trees::{IndexSlot, Walker};
use crate::format::superblock::{
    DATA_SPACE_MAP_ROOT, FLAGS, FLAG_NEEDS_CHECK, METADATA_SPACE_MAP_ROOT, SUPERBLOCK_LOCATION,
};
use pdata::block_manager::le32;
use pdata::btree::node::{HEADER_SIZE, MAX_ENTRIES_OFFSET};
use pdata::check::repair::{self as fix, flush, read, write};
use pdata::check::space_map::{BitmapRef, Map};
use pdata::checksum::{seal, SALT_BTREE_NODE, SALT_THIN_SUPERBLOCK};
use pdata::io::BlockDevice;
use pdata::space_map::format::{IndexEntry, ENTRIES_PER_BITMAP, INDEX_ENTRY_SIZE};
use pdata::BLOCK_SIZE;

/// Sets every leaked block of the `leaky` bitmaps free: the metadata
/// map's, and the data map's whose blocks are in the window of the data
/// counts at hand. `meta_index` and `data_index` are the maps' index
/// entries as read. Returns the number of blocks set free in each map; the
/// caller frees the data leaks of the other windows with
/// [`data_leaks`] and ends with [`finish`].
pub fn leaks(
    w: &Walker,
    leaky: &[BitmapRef],
    meta_index: &mut [IndexEntry],
    meta_index_loc: u64,
    data_index: &mut [IndexSlot],
) -> Result<[u64; 2], String> {
    let meta_freed = fix::free_metadata_leaks(w.dev, leaky, &w.meta, meta_index, meta_index_loc)?;
    Ok([meta_freed, data_leaks(w, leaky, data_index)?])
}

/// Sets free the leaked blocks of the data bitmaps of `leaky` that the
/// window of the data counts covers; the blocks set free.
pub fn data_leaks(
    w: &Walker,
    leaky: &[BitmapRef],
    data_index: &mut [IndexSlot],
) -> Result<u64, String> {
    let dev = w.dev;
    let counts = &w.client.data;
    let mut data_freed = 0;
    let in_window = |r: &&BitmapRef| counts.in_window(r.index * ENTRIES_PER_BITMAP);
    for r in leaky
        .iter()
        .filter(|r| r.map == Map::Data)
        .filter(in_window)
    {
        let slot = data_index.iter_mut().find(|s| s.key == r.index);
        let mut entry = slot.as_ref().map(|s| s.entry);
        data_freed += fix::free_leaks_in_bitmap(dev, r, counts, entry.as_mut())?;
        if let (Some(s), Some(e)) = (slot, entry) {
            s.entry = e;
            write_index_slot(dev, s)?;
        }
    }
    Ok(data_freed)
}

/// After the leaks were set free (`freed`: [metadata, data]): flushes,
/// then lowers the superblock's counts of allocated blocks.
pub fn finish(dev: &dyn BlockDevice, freed: [u64; 2]) -> Result<u64, String> {
    flush(dev)?;
    fix::lower_nr_allocated(
        dev,
        SUPERBLOCK_LOCATION,
        SALT_THIN_SUPERBLOCK,
        &[
            (METADATA_SPACE_MAP_ROOT, freed[0]),
            (DATA_SPACE_MAP_ROOT, freed[1]),
        ],
    )?;
    Ok(freed[0] + freed[1])
}

/// Rewrites the data index entry `s` in its leaf.
fn write_index_slot(dev: &dyn BlockDevice, s: &IndexSlot) -> Result<(), String> {
    let mut b = read(dev, s.leaf)?;
    let max = le32(&b[..], MAX_ENTRIES_OFFSET) as usize;
    let off = HEADER_SIZE + 8 * max + s.slot * INDEX_ENTRY_SIZE;
    if off + INDEX_ENTRY_SIZE > BLOCK_SIZE {
        return Err(format!("index leaf {} changed under the repair", s.leaf));
    }
    s.entry.pack(&mut b[off..off + INDEX_ENTRY_SIZE]);
    seal(&mut b[..], SALT_BTREE_NODE);
    write(dev, s.leaf, &b)
}

/// Clears the needs_check flag of the superblock, in place; true if it was
/// set.
pub fn clear_needs_check(dev: &dyn BlockDevice) -> Result<bool, String> {
    super::superblock::read(dev, SUPERBLOCK_LOCATION).map_err(|e| format!("superblock {e}"))?;
    fix::clear_superblock_flag(
        dev,
        SUPERBLOCK_LOCATION,
        FLAGS,
        FLAG_NEEDS_CHECK,
        SALT_THIN_SUPERBLOCK,
    )
}
