//! The two changes thin_check makes, written in place: setting leaked
//! blocks free (with their index entries and the space map roots kept
//! exact), and clearing the needs_check flag.

use super::trees::{IndexSlot, Walker};
use crate::format::superblock::{
    DATA_SPACE_MAP_ROOT, FLAGS, FLAG_NEEDS_CHECK, METADATA_SPACE_MAP_ROOT, SUPERBLOCK_LOCATION,
};
use pdata::block_manager::{le32, le64, put_le32};
use pdata::btree::node::{HEADER_SIZE, MAX_ENTRIES_OFFSET};
use pdata::check::space_map::{BitmapRef, Map};
use pdata::checksum::{seal, SALT_BITMAP, SALT_BTREE_NODE, SALT_INDEX, SALT_THIN_SUPERBLOCK};
use pdata::io::BlockDevice;
use pdata::space_map::format::{
    bitmap_get, bitmap_set, IndexEntry, ENTRIES_PER_BITMAP, INDEX_ENTRY_SIZE, INDEX_HEADER_SIZE,
};
use pdata::{Block, BLOCK_SIZE};

/// Offset of nr_allocated in a space map root (`disk_sm_root`).
const ROOT_NR_ALLOCATED: usize = 8;

fn read(dev: &dyn BlockDevice, loc: u64) -> Result<Box<Block>, String> {
    let mut b = Box::new([0u8; BLOCK_SIZE]);
    dev.read_block(loc, &mut b)
        .map_err(|e| format!("reading block {loc}: {e}"))?;
    Ok(b)
}

fn write(dev: &dyn BlockDevice, loc: u64, b: &Block) -> Result<(), String> {
    dev.write_block(loc, b)
        .map_err(|e| format!("writing block {loc}: {e}"))
}

/// Sets every leaked block of the `leaky` bitmaps free. `meta_index` and
/// `data_index` are the maps' index entries as read. Returns the number of
/// blocks set free.
pub fn leaks(
    w: &Walker,
    leaky: &[BitmapRef],
    meta_index: &mut [IndexEntry],
    meta_index_loc: u64,
    data_index: &mut [IndexSlot],
) -> Result<u64, String> {
    let dev = w.dev;
    let mut freed = [0u64; 2];
    let mut meta_changed = false;
    let mut data_changed = Vec::new();
    for r in leaky {
        let counts = match r.map {
            Map::Metadata => &w.meta,
            Map::Data => &w.client.data,
        };
        let mut b = read(dev, r.loc)?;
        let base = r.index * ENTRIES_PER_BITMAP;
        let mut first_freed = None;
        let mut nr_free = 0u32;
        for e in 0..ENTRIES_PER_BITMAP {
            let c = bitmap_get(&b, e);
            if c == 1 && base + e < counts.nr_blocks() && counts.get(base + e) == Some(0) {
                bitmap_set(&mut b, e, 0);
                freed[r.map as usize] += 1;
                first_freed.get_or_insert(e as u32);
                nr_free += 1;
            } else if c == 0 {
                nr_free += 1;
            }
        }
        seal(&mut b[..], SALT_BITMAP);
        write(dev, r.loc, &b)?;
        let update = |ie: &mut IndexEntry| {
            ie.nr_free = nr_free;
            if let Some(f) = first_freed {
                ie.none_free_before = ie.none_free_before.min(f);
            }
        };
        match r.map {
            Map::Metadata => {
                if let Some(ie) = meta_index.get_mut(r.index as usize) {
                    update(ie);
                    meta_changed = true;
                }
            }
            Map::Data => {
                if let Some(s) = data_index.iter_mut().find(|s| s.key == r.index) {
                    update(&mut s.entry);
                    data_changed.push(*s);
                }
            }
        }
    }
    if meta_changed {
        let mut b = read(dev, meta_index_loc)?;
        for (i, ie) in meta_index.iter().enumerate() {
            let off = INDEX_HEADER_SIZE + i * INDEX_ENTRY_SIZE;
            ie.pack(&mut b[off..off + INDEX_ENTRY_SIZE]);
        }
        seal(&mut b[..], SALT_INDEX);
        write(dev, meta_index_loc, &b)?;
    }
    for s in &data_changed {
        let mut b = read(dev, s.leaf)?;
        let max = le32(&b[..], MAX_ENTRIES_OFFSET) as usize;
        let off = HEADER_SIZE + 8 * max + s.slot * INDEX_ENTRY_SIZE;
        if off + INDEX_ENTRY_SIZE > BLOCK_SIZE {
            return Err(format!("index leaf {} changed under the repair", s.leaf));
        }
        s.entry.pack(&mut b[off..off + INDEX_ENTRY_SIZE]);
        seal(&mut b[..], SALT_BTREE_NODE);
        write(dev, s.leaf, &b)?;
    }
    dev.flush().map_err(|e| format!("flushing: {e}"))?;
    let mut sb = read(dev, SUPERBLOCK_LOCATION)?;
    for (root, n) in [
        (METADATA_SPACE_MAP_ROOT, freed[0]),
        (DATA_SPACE_MAP_ROOT, freed[1]),
    ] {
        let off = root + ROOT_NR_ALLOCATED;
        let v = le64(&sb[..], off).saturating_sub(n);
        sb[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    seal(&mut sb[..], SALT_THIN_SUPERBLOCK);
    write(dev, SUPERBLOCK_LOCATION, &sb)?;
    dev.flush().map_err(|e| format!("flushing: {e}"))?;
    Ok(freed[0] + freed[1])
}

/// Clears the needs_check flag of the superblock, in place; true if it was
/// set.
pub fn clear_needs_check(dev: &dyn BlockDevice) -> Result<bool, String> {
    super::superblock::read(dev, SUPERBLOCK_LOCATION).map_err(|e| format!("superblock {e}"))?;
    let mut b = read(dev, SUPERBLOCK_LOCATION)?;
    let flags = le32(&b[..], FLAGS);
    if flags & FLAG_NEEDS_CHECK == 0 {
        return Ok(false);
    }
    put_le32(&mut b[..], FLAGS, flags & !FLAG_NEEDS_CHECK);
    seal(&mut b[..], SALT_THIN_SUPERBLOCK);
    write(dev, SUPERBLOCK_LOCATION, &b)?;
    dev.flush().map_err(|e| format!("flushing: {e}"))?;
    Ok(true)
}
