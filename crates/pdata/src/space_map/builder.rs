//! Writing whole space maps in bulk, through a [`BatchWriter`], from counts
//! known in advance: the data map from [`RefCounts`], the metadata map of a
//! device filled sequentially (every block below some location in use once).

use super::counts::{sparse_entry, ChunkView, RefCounts};
use super::format::*;
use crate::block_manager::{put_le64, Validator};
use crate::btree::builder::nodes_for;
use crate::btree::node::{max_entries, NodeMut, LEAF_NODE, NODE_VALIDATOR};
use crate::btree::TreeBuilder;
use crate::io::BatchWriter;
use crate::{Block, Result, BLOCK_SIZE};
use std::borrow::Borrow;

/// Value size of the overflow trees (le32 counts).
const OVERFLOW_VALUE_SIZE: usize = 4;

const BYTE_LOW: u64 = 0x0101_0101_0101_0101;

/// Eight one-byte counts, read at once.
struct Eight {
    /// Each byte saturated at 3.
    v: u64,
    /// Bit 0 of each byte: the count is not zero.
    nonzero: u64,
    /// Bit 0 of each byte: the count is 3 or more.
    big: u64,
}

impl Eight {
    fn new(bytes: &[u8]) -> Eight {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        let x = u64::from_le_bytes(b);
        // Bytes of 4 and more: bits above bit 1 set; bit 7 of `over` marks them.
        let high = x & !(BYTE_LOW * 3);
        let over = (((high & (BYTE_LOW * 0x7F)) + BYTE_LOW * 0x7F) | high) & (BYTE_LOW * 0x80);
        let v = (x & (BYTE_LOW * 3)) | ((over >> 7) * 3);
        Eight {
            v,
            nonzero: (v | (v >> 1)) & BYTE_LOW,
            big: v & (v >> 1) & BYTE_LOW,
        }
    }

    /// The eight 2-bit bitmap entries, as 16 bits.
    fn pairs(&self) -> u64 {
        // The low bit of a pair holds the high bit of the count.
        let y = ((self.v & BYTE_LOW) << 1) | ((self.v >> 1) & BYTE_LOW);
        let y = (y | (y >> 6)) & 0x000F_000F_000F_000F;
        let y = (y | (y >> 12)) & 0x0000_00FF_0000_00FF;
        (y | (y >> 24)) & 0xFFFF
    }
}

/// 64-bit words of a bitmap's entries.
const WORDS_PER_BITMAP: usize = ENTRIES_PER_BITMAP as usize / 32;

/// Index-entry hints for a bitmap: (nr_free, none_free_before).
fn hints(used: u32, first_free: u32) -> (u32, u32) {
    (ENTRIES_PER_BITMAP as u32 - used, first_free)
}

/// Writes the data-device space map for `counts`; gives its root.
pub fn write_disk_sm(w: &mut BatchWriter, counts: &RefCounts) -> Result<SmRoot> {
    write_disk_sm_windows(w, counts, |c, _| Ok(c))
}

/// [`write_disk_sm`] for counts kept window by window
/// ([`RefCounts::window`]): `first`'s window, then for each later one the
/// counts `next(previous, start)` gives (a window starting at `start`;
/// `previous`, given back, can be dropped first), in bitmap order.
pub fn write_disk_sm_windows<R: Borrow<RefCounts>>(
    w: &mut BatchWriter,
    first: R,
    mut next: impl FnMut(R, u64) -> Result<R>,
) -> Result<SmRoot> {
    let nr_blocks = first.borrow().nr_blocks();
    let mut window = first;
    let mut index = TreeBuilder::new(INDEX_ENTRY_SIZE);
    let mut overflow = TreeBuilder::new(OVERFLOW_VALUE_SIZE);
    let mut big: Vec<(u64, u32)> = Vec::new();
    let mut nr_allocated = 0;
    // A dense chunk's counts, a byte each.
    let mut bytes = vec![0u8; ENTRIES_PER_BITMAP as usize].into_boxed_slice();
    for i in 0..nr_bitmaps(nr_blocks) as u64 {
        let base = i * ENTRIES_PER_BITMAP;
        if base >= window.borrow().window_end() {
            window = next(window, base)?;
        }
        let counts = window.borrow();
        let (loc, block) = w.alloc()?;
        let (mut used, mut first_free) = (0u32, None);
        if let Some(ChunkView::Sparse(list)) = counts.chunk(i) {
            // Few blocks counted: only their words are written.
            let mut words = [0u64; WORDS_PER_BITMAP];
            for (k, &e) in list.iter().enumerate() {
                let (off, x) = sparse_entry(e);
                let b = base + off as u64;
                let count = counts.resolve(b, x);
                words[off / 32] |= entry_pair(count) << (2 * (off % 32));
                if first_free.is_none() && off != k {
                    first_free = Some(k as u32);
                }
                if count >= 3 {
                    big.push((b, count));
                }
            }
            used = list.len() as u32;
            for (wi, &word) in words.iter().enumerate().filter(|(_, &w)| w != 0) {
                put_le64(block, BITMAP_HEADER_SIZE + 8 * wi, word);
            }
        } else if let Some(ChunkView::Dense(dense)) = counts.chunk(i) {
            dense.expand(&mut bytes[..]);
            for (wi, group) in bytes.chunks_exact(32).enumerate() {
                let mut word = 0u64;
                for (k, eight) in group.chunks_exact(8).enumerate() {
                    let at = wi * 32 + k * 8;
                    let e = Eight::new(eight);
                    word |= e.pairs() << (16 * k);
                    used += e.nonzero.count_ones();
                    if first_free.is_none() && e.nonzero != BYTE_LOW {
                        let z = (!e.nonzero & BYTE_LOW).trailing_zeros() / 8;
                        first_free = Some((at + z as usize) as u32);
                    }
                    let mut big_bytes = e.big;
                    while big_bytes != 0 {
                        let j = big_bytes.trailing_zeros() as usize / 8;
                        big_bytes &= big_bytes - 1;
                        let b = base + (at + j) as u64;
                        big.push((b, counts.resolve(b, eight[j])));
                    }
                }
                put_le64(block, BITMAP_HEADER_SIZE + 8 * wi, word);
            }
        }
        let first_free = first_free.unwrap_or(used);
        BITMAP_VALIDATOR.prepare_for_write(loc, block)?;
        nr_allocated += used as u64;
        let (nr_free, none_free_before) = hints(used, first_free);
        let ie = IndexEntry {
            blocknr: loc,
            nr_free,
            none_free_before,
        };
        index.push(w, i, &ie.to_bytes())?;
        for (b, count) in big.drain(..) {
            overflow.push(w, b, &count.to_le_bytes())?;
        }
    }
    Ok(SmRoot {
        nr_blocks,
        nr_allocated,
        bitmap_root: index.finish(w)?,
        ref_count_root: overflow.finish(w)?,
    })
}

/// Blocks [`write_disk_sm`] writes for `counts`.
pub fn disk_sm_blocks(counts: &RefCounts) -> u64 {
    disk_sm_blocks_for(counts.nr_blocks(), counts.nr_overflow())
}

/// Blocks a data space map of `nr_blocks` with `nr_overflow` counts of 3
/// and more takes.
pub fn disk_sm_blocks_for(nr_blocks: u64, nr_overflow: u64) -> u64 {
    let nb = nr_bitmaps(nr_blocks) as u64;
    nb + nodes_for(nb, INDEX_ENTRY_SIZE) + nodes_for(nr_overflow, OVERFLOW_VALUE_SIZE)
}

/// Where a metadata space map lives, reserved before anything else is
/// written (the kernel's format order: index block, overflow root, bitmaps).
#[derive(Debug, Clone, Copy)]
pub struct MetadataSmLayout {
    pub nr_blocks: u64,
    pub index: u64,
    pub overflow_root: u64,
    pub first_bitmap: u64,
}

impl MetadataSmLayout {
    /// Blocks the map occupies on a device of `nr_blocks`.
    pub fn blocks(nr_blocks: u64) -> u64 {
        2 + nr_bitmaps(nr_blocks) as u64
    }

    /// Reserves the map of a device of `nr_blocks` (at most
    /// [`MAX_METADATA_BLOCKS`]) at the writer's next location; the overflow
    /// tree, empty, is written at once.
    pub fn reserve(w: &mut BatchWriter, nr_blocks: u64) -> Result<Self> {
        debug_assert!(nr_blocks <= MAX_METADATA_BLOCKS);
        let index = w.reserve(1)?;
        let (overflow_root, block) = w.alloc()?;
        NodeMut(block).init(
            LEAF_NODE,
            max_entries(OVERFLOW_VALUE_SIZE),
            OVERFLOW_VALUE_SIZE,
        );
        NODE_VALIDATOR.prepare_for_write(overflow_root, block)?;
        let first_bitmap = w.reserve(nr_bitmaps(nr_blocks) as u64)?;
        Ok(MetadataSmLayout {
            nr_blocks,
            index,
            overflow_root,
            first_bitmap,
        })
    }

    /// Writes the map with every block below `used` counted once and the
    /// rest free (what a sequential writer leaves); gives its root.
    pub fn write(&self, w: &BatchWriter, used: u64) -> Result<SmRoot> {
        let used = used.min(self.nr_blocks);
        let nb = nr_bitmaps(self.nr_blocks);
        let mut bitmaps = vec![[0u8; BLOCK_SIZE]; nb];
        let mut entries = Vec::with_capacity(nb);
        for (i, bitmap) in bitmaps.iter_mut().enumerate() {
            let loc = self.first_bitmap + i as u64;
            let base = i as u64 * ENTRIES_PER_BITMAP;
            let n = used.saturating_sub(base).min(ENTRIES_PER_BITMAP) as usize;
            fill_ones(bitmap, n);
            BITMAP_VALIDATOR.prepare_for_write(loc, bitmap)?;
            let (nr_free, none_free_before) = hints(n as u32, n as u32);
            entries.push(IndexEntry {
                blocknr: loc,
                nr_free,
                none_free_before,
            });
        }
        let mut index = [0u8; BLOCK_SIZE];
        pack_metadata_index(&mut index, &entries);
        INDEX_VALIDATOR.prepare_for_write(self.index, &mut index)?;
        w.write_at(self.first_bitmap, &bitmaps)?;
        w.write_at(self.index, &[index])?;
        Ok(SmRoot {
            nr_blocks: self.nr_blocks,
            nr_allocated: used,
            bitmap_root: self.index,
            ref_count_root: self.overflow_root,
        })
    }
}

/// Sets the first `n` entries of a bitmap to a count of 1.
fn fill_ones(bitmap: &mut Block, n: usize) {
    let ones = entry_pair(1) * 0x5555_5555_5555_5555;
    for wi in 0..n / 32 {
        put_le64(bitmap, BITMAP_HEADER_SIZE + 8 * wi, ones);
    }
    let rest = n % 32;
    if rest > 0 {
        let word = ones & ((1u64 << (2 * rest)) - 1);
        put_le64(bitmap, BITMAP_HEADER_SIZE + 8 * (n / 32), word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_manager::BlockManager;
    use crate::btree::node::Node;
    use crate::io::{BlockDevice, MemoryDevice};
    use std::sync::Arc;

    #[test]
    fn bitmap_words() {
        let mut b = [0u8; BLOCK_SIZE];
        // Eight counts at once, as one at a time would give them.
        let mut x = 12345u64;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let bytes: Vec<u8> = (0..8)
                .map(|k| match (x >> (8 * k + 3)) % 4 {
                    0 => 0,
                    1 => (x >> (8 * k)) as u8 % 4,
                    _ => (x >> (8 * k)) as u8,
                })
                .collect();
            let e = Eight::new(&bytes);
            let mut pairs = 0;
            for (j, &c) in bytes.iter().enumerate() {
                pairs |= entry_pair(u32::from(c)) << (2 * j);
                assert_eq!((e.nonzero >> (8 * j)) & 1, u64::from(c != 0));
                assert_eq!((e.big >> (8 * j)) & 1, u64::from(c >= 3));
            }
            assert_eq!(e.pairs(), pairs, "{bytes:?}");
        }
        fill_ones(&mut b, 33);
        for e in 0..40 {
            assert_eq!(bitmap_get(&b, e), u32::from(e < 33));
        }
    }

    /// Every leaf entry of the tree at `root`.
    fn entries(bm: &BlockManager, root: u64, out: &mut Vec<(u64, Vec<u8>)>) {
        let b = bm.read_lock(root, &NODE_VALIDATOR).unwrap();
        let n = Node(&b);
        for i in 0..n.nr_entries() {
            if n.is_leaf() {
                out.push((n.key(i), n.value(i).to_vec()));
            } else {
                entries(bm, n.value_u64(i), out);
            }
        }
    }

    /// Counts read back through the bitmaps and the overflow tree.
    fn read_back(bm: &BlockManager, root: &SmRoot, index: &[IndexEntry]) -> Vec<u32> {
        let mut over = Vec::new();
        entries(bm, root.ref_count_root, &mut over);
        let over: std::collections::HashMap<u64, u32> = over
            .into_iter()
            .map(|(k, v)| (k, u32::from_le_bytes([v[0], v[1], v[2], v[3]])))
            .collect();
        (0..root.nr_blocks)
            .map(|b| {
                let ie = index[(b / ENTRIES_PER_BITMAP) as usize];
                let bm_block = bm.read_lock(ie.blocknr, &BITMAP_VALIDATOR).unwrap();
                match bitmap_get(&bm_block, b % ENTRIES_PER_BITMAP) {
                    3 => over[&b],
                    c => c,
                }
            })
            .collect()
    }

    #[test]
    fn disk_map_round_trips() {
        let nr = 2 * ENTRIES_PER_BITMAP + 100;
        let mut counts = RefCounts::new(nr).unwrap();
        counts.inc_range(10, 5).unwrap();
        for _ in 0..4 {
            counts.inc_range(ENTRIES_PER_BITMAP + 7, 2).unwrap();
        }
        counts.inc_range(nr - 1, 1).unwrap();
        // Bitmap 1 also has enough counts to be held densely.
        counts.inc_range(ENTRIES_PER_BITMAP + 100, 2000).unwrap();
        // Counts past a dense chunk's half-byte, before and after it turned dense.
        for _ in 0..20 {
            counts.inc_range(ENTRIES_PER_BITMAP + 50, 1).unwrap();
            counts.inc_range(ENTRIES_PER_BITMAP + 7, 1).unwrap();
        }
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(64));
        let mut w = BatchWriter::new(dev.clone(), 1, 64, 4);
        let root = write_disk_sm(&mut w, &counts).unwrap();
        w.flush_batch().unwrap();
        assert_eq!(w.next_location() - 1, disk_sm_blocks(&counts));
        assert_eq!(root.nr_allocated, 2009);
        let layout_dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(ENTRIES_PER_BITMAP + 10));
        let mut mw = BatchWriter::new(layout_dev.clone(), 1, ENTRIES_PER_BITMAP + 10, 4);
        let layout = MetadataSmLayout::reserve(&mut mw, ENTRIES_PER_BITMAP + 10).unwrap();
        assert_eq!(
            (layout.index, layout.overflow_root, layout.first_bitmap),
            (1, 2, 3)
        );
        let mroot = layout.write(&mw, 5).unwrap();
        let mbm = BlockManager::new(layout_dev, 64, false);
        let ib = mbm.read_lock(1, &INDEX_VALIDATOR).unwrap();
        let mindex = unpack_metadata_index(&ib, 2);
        assert_eq!(mindex[1].nr_free, ENTRIES_PER_BITMAP as u32);
        let mcounts = read_back(&mbm, &mroot, &mindex);
        assert!(mcounts
            .iter()
            .enumerate()
            .all(|(b, &c)| c == u32::from(b < 5)));
        let bm = BlockManager::new(dev, 64, false);
        let mut raw = Vec::new();
        entries(&bm, root.bitmap_root, &mut raw);
        let index: Vec<IndexEntry> = raw.iter().map(|(_, v)| IndexEntry::unpack(v)).collect();
        assert_eq!(index.len(), 3);
        assert_eq!(index[0].nr_free, ENTRIES_PER_BITMAP as u32 - 5);
        assert_eq!(index[0].none_free_before, 0);
        let got = read_back(&bm, &root, &index);
        for (b, &c) in got.iter().enumerate() {
            assert_eq!(Some(c), counts.get(b as u64), "block {b}");
        }
    }
}
