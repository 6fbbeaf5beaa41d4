//! Recovery of an array whose spine lost nodes: the spine leaves that
//! survive still name their array blocks by index. The device is scanned
//! for B-tree leaves of 8-byte values that the metadata space map counts in
//! use (so none of an earlier transaction) and that no readable spine
//! reached; their entries fill the indices the spine lost, where exactly
//! one leaf offers the index and its array block is sound.

use pdata::block_manager::le64;
use pdata::check::node::verify_node;
use pdata::checksum::{verify, SALT_BITMAP, SALT_INDEX};
use pdata::io::{read_sorted, BlockDevice};
use pdata::space_map::format::{
    bitmap_get, nr_bitmaps, unpack_metadata_index, SmRoot, BITMAP_BLOCKNR_OFFSET,
    ENTRIES_PER_BITMAP, INDEX_BLOCKNR_OFFSET, MAX_METADATA_BITMAPS,
};
use pdata::BLOCK_SIZE;
use rustc_hash::{FxHashMap, FxHashSet};

/// Blocks read at a time.
const BATCH: usize = 128;

/// The blocks the metadata space map counts in use; None when the map
/// cannot be read (then nothing found by scanning is trusted).
fn in_use(dev: &dyn BlockDevice, sm: &SmRoot) -> Option<Vec<u64>> {
    let nr = sm.nr_blocks.min(dev.nr_blocks());
    let mut b = [0u8; BLOCK_SIZE];
    dev.read_block(sm.bitmap_root, &mut b).ok()?;
    if le64(&b, INDEX_BLOCKNR_OFFSET) != sm.bitmap_root || !verify(&b, SALT_INDEX) {
        return None;
    }
    let index = unpack_metadata_index(&b, nr_bitmaps(nr).min(MAX_METADATA_BITMAPS));
    let mut out = Vec::new();
    for (i, e) in index.iter().enumerate() {
        dev.read_block(e.blocknr, &mut b).ok()?;
        if le64(&b, BITMAP_BLOCKNR_OFFSET) != e.blocknr || !verify(&b, SALT_BITMAP) {
            return None;
        }
        let base = i as u64 * ENTRIES_PER_BITMAP;
        for j in 0..ENTRIES_PER_BITMAP.min(nr.saturating_sub(base)) {
            if bitmap_get(&b, j) != 0 {
                out.push(base + j);
            }
        }
    }
    Some(out)
}

/// Entries (index, location) of the in-use spine leaves of 8-byte values
/// not in `known`, by index; an index two leaves offer is dropped.
pub fn orphan_entries(
    dev: &dyn BlockDevice,
    sm: &SmRoot,
    known: &FxHashSet<u64>,
) -> FxHashMap<u64, u64> {
    let Some(blocks) = in_use(dev, sm) else {
        return FxHashMap::default();
    };
    let blocks: Vec<u64> = blocks.into_iter().filter(|b| !known.contains(b)).collect();
    let mut found: FxHashMap<u64, Option<u64>> = FxHashMap::default();
    for (_, entries) in leaves_among(dev, &blocks) {
        for (k, v) in entries {
            found.entry(k).and_modify(|v| *v = None).or_insert(Some(v));
        }
    }
    found
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// A spine leaf found by scanning: its location and (key, value) entries.
pub type Leaf = (u64, Vec<(u64, u64)>);

/// The B-tree leaves of 8-byte values among `blocks` (sorted), each
/// verified where it lies.
pub fn leaves_among(dev: &dyn BlockDevice, blocks: &[u64]) -> Vec<Leaf> {
    let mut out = Vec::new();
    let mut bufs = vec![[0u8; BLOCK_SIZE]; BATCH];
    for chunk in blocks.chunks(BATCH) {
        let mut ok = vec![false; chunk.len()];
        read_sorted(dev, chunk, &mut bufs, &mut ok);
        for (i, &loc) in chunk.iter().enumerate() {
            if !ok[i] {
                continue;
            }
            let Ok(shape) = verify_node(loc, &bufs[i], 8) else {
                continue;
            };
            if !shape.leaf {
                continue;
            }
            let n = pdata::btree::node::Node(&bufs[i]);
            out.push((
                loc,
                (0..shape.nr).map(|e| (n.key(e), n.value_u64(e))).collect(),
            ));
        }
    }
    out
}

/// Every B-tree leaf of 8-byte values on the device (the superblock's
/// block excepted), whatever reaches it: for a lost superblock, when
/// there is no space map to say which blocks are in use.
pub fn all_leaves(dev: &dyn BlockDevice) -> Vec<Leaf> {
    let mut out = Vec::new();
    // Chunks of the device, so the block list stays small.
    let step = 1u64 << 16;
    let mut first = 1u64;
    while first < dev.nr_blocks() {
        let end = (first + step).min(dev.nr_blocks());
        let blocks: Vec<u64> = (first..end).collect();
        out.extend(leaves_among(dev, &blocks));
        first = end;
    }
    out
}
