//! The in-place repairs every client's checker makes (DESIGN.md "The
//! in-place writes of the tools"): setting leaked blocks free in a space
//! map's bitmaps, rewriting the metadata index that summarises them,
//! lowering a superblock's `nr_allocated`, clearing a superblock flag. The
//! client says where its superblock keeps its roots and flags, and how it
//! is sealed; the data map's index (thin's) is the client's own.

use super::space_map::BitmapRef;
use super::RefCounts;
use crate::block_manager::{le32, le64, put_le32};
use crate::checksum::{seal, SALT_BITMAP, SALT_INDEX};
use crate::io::BlockDevice;
use crate::space_map::format::{
    bitmap_get, bitmap_set, IndexEntry, ENTRIES_PER_BITMAP, INDEX_ENTRY_SIZE, INDEX_HEADER_SIZE,
};
use crate::{Block, BLOCK_SIZE};

/// Offset of nr_allocated in a space map root (`disk_sm_root`).
pub const ROOT_NR_ALLOCATED: usize = 8;

pub fn read(dev: &dyn BlockDevice, loc: u64) -> Result<Box<Block>, String> {
    let mut b = Box::new([0u8; BLOCK_SIZE]);
    dev.read_block(loc, &mut b)
        .map_err(|e| format!("reading block {loc}: {e}"))?;
    Ok(b)
}

pub fn write(dev: &dyn BlockDevice, loc: u64, b: &Block) -> Result<(), String> {
    dev.write_block(loc, b)
        .map_err(|e| format!("writing block {loc}: {e}"))
}

pub fn flush(dev: &dyn BlockDevice) -> Result<(), String> {
    dev.flush().map_err(|e| format!("flushing: {e}"))
}

/// Sets free every entry of bitmap `r` counted 1 where `counts` found no
/// reference (within the window `counts` counted), and writes the bitmap back; updates `ie` (its index entry) to
/// match. Returns the blocks set free.
pub fn free_leaks_in_bitmap(
    dev: &dyn BlockDevice,
    r: &BitmapRef,
    counts: &RefCounts,
    ie: Option<&mut IndexEntry>,
) -> Result<u64, String> {
    let mut b = read(dev, r.loc)?;
    let base = r.index * ENTRIES_PER_BITMAP;
    let mut first_freed = None;
    let (mut nr_free, mut freed) = (0u32, 0u64);
    for e in 0..ENTRIES_PER_BITMAP {
        let c = bitmap_get(&b, e);
        // Outside the window counted nothing is known: kept.
        if c == 1 && counts.in_window(base + e) && counts.get(base + e) == Some(0) {
            bitmap_set(&mut b, e, 0);
            freed += 1;
            first_freed.get_or_insert(e as u32);
            nr_free += 1;
        } else if c == 0 {
            nr_free += 1;
        }
    }
    seal(&mut b[..], SALT_BITMAP);
    write(dev, r.loc, &b)?;
    if let Some(ie) = ie {
        ie.nr_free = nr_free;
        if let Some(f) = first_freed {
            ie.none_free_before = ie.none_free_before.min(f);
        }
    }
    Ok(freed)
}

/// Rewrites the metadata space map's index block at `loc` with `entries`.
pub fn write_metadata_index(
    dev: &dyn BlockDevice,
    loc: u64,
    entries: &[IndexEntry],
) -> Result<(), String> {
    let mut b = read(dev, loc)?;
    for (i, ie) in entries.iter().enumerate() {
        let off = INDEX_HEADER_SIZE + i * INDEX_ENTRY_SIZE;
        if off + INDEX_ENTRY_SIZE > BLOCK_SIZE {
            return Err(format!("index block {loc}: too many entries"));
        }
        ie.pack(&mut b[off..off + INDEX_ENTRY_SIZE]);
    }
    seal(&mut b[..], SALT_INDEX);
    write(dev, loc, &b)
}

/// Frees the leaks of the metadata map's `leaky` bitmaps (those of
/// `Map::Metadata`), rewriting the index at `index_loc` (entries
/// `index`); does not flush. Returns the blocks set free.
pub fn free_metadata_leaks(
    dev: &dyn BlockDevice,
    leaky: &[BitmapRef],
    counts: &RefCounts,
    index: &mut [IndexEntry],
    index_loc: u64,
) -> Result<u64, String> {
    let mut freed = 0;
    let mut changed = false;
    for r in leaky
        .iter()
        .filter(|r| r.map == super::space_map::Map::Metadata)
    {
        let ie = index.get_mut(r.index as usize);
        changed |= ie.is_some();
        freed += free_leaks_in_bitmap(dev, r, counts, ie)?;
    }
    if changed {
        write_metadata_index(dev, index_loc, index)?;
    }
    Ok(freed)
}

/// Lowers the `nr_allocated` of the space map roots at `roots` (offsets in
/// the superblock at `sb_loc`, with the blocks freed in each), reseals it
/// with `salt` and writes it, then flushes.
pub fn lower_nr_allocated(
    dev: &dyn BlockDevice,
    sb_loc: u64,
    salt: u32,
    roots: &[(usize, u64)],
) -> Result<(), String> {
    let mut sb = read(dev, sb_loc)?;
    for &(root, n) in roots {
        let off = root + ROOT_NR_ALLOCATED;
        let v = le64(&sb[..], off).saturating_sub(n);
        sb[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    seal(&mut sb[..], salt);
    write(dev, sb_loc, &sb)?;
    flush(dev)
}

/// Clears `flag` in the flags word at `flags_offset` of the superblock at
/// `sb_loc` (already validated), reseals it with `salt`, writes it and
/// flushes; true if the flag was set.
pub fn clear_superblock_flag(
    dev: &dyn BlockDevice,
    sb_loc: u64,
    flags_offset: usize,
    flag: u32,
    salt: u32,
) -> Result<bool, String> {
    let mut b = read(dev, sb_loc)?;
    let flags = le32(&b[..], flags_offset);
    if flags & flag == 0 {
        return Ok(false);
    }
    put_le32(&mut b[..], flags_offset, flags & !flag);
    seal(&mut b[..], salt);
    write(dev, sb_loc, &b)?;
    flush(dev)?;
    Ok(true)
}
