//! Space-map on-disk structures: the 32-byte root, index entries, bitmap
//! blocks (2 bits per block) and the metadata space map's index block.
//!
//! ```text
//! bitmap block (4096 bytes)
//! +------+-------------+--------------+--------------------------------+
//! | 0    | 4           | 8            | 16                             |
//! | csum | not_used    | blocknr      | 510 le64 words, 32 two-bit     |
//! | u32  | u32 (zero)  | u64          | counts each: 16320 entries     |
//! +------+-------------+--------------+--------------------------------+
//!
//! metadata index block (4096 bytes)
//! +------+-------------+--------------+--------------------------------+
//! | 0    | 4           | 8            | 16                             |
//! | csum | padding u32 | blocknr u64  | 255 index entries of 16 bytes  |
//! +------+-------------+--------------+--------------------------------+
//!
//! index entry (16 bytes)                 space-map root (32 of 128 bytes)
//! +-------------+---------+------------+ +-----------+--------------+
//! | 0           | 8       | 12         | | 0         | nr_blocks    |
//! | blocknr u64 | nr_free | none_free_ | | 8         | nr_allocated |
//! |             | u32     | before u32 | | 16        | bitmap_root  |
//! +-------------+---------+------------+ | 24        | ref_count_   |
//!                                        |           | root (u64s)  |
//!                                        +-----------+--------------+
//! ```
//!
//! Within a bitmap word, entry `e` is bits `2e..2e+2` with the count's
//! high bit in the lower position. The data space map keeps its index
//! entries in a B-tree instead of an index block.

use crate::block_manager::{le32, le64, put_le32, put_le64, SealedValidator};
use crate::checksum::{CSUM_OFFSET, SALT_BITMAP, SALT_INDEX};
use crate::{Block, BLOCK_SIZE};

/// Two-bit counts per byte of a bitmap.
const ENTRIES_PER_BYTE: usize = 4;

pub const BITMAP_NOT_USED_OFFSET: usize = CSUM_OFFSET + size_of::<u32>();
pub const BITMAP_BLOCKNR_OFFSET: usize = BITMAP_NOT_USED_OFFSET + size_of::<u32>();
/// Header of a bitmap block: csum u32, not_used u32, blocknr u64.
pub const BITMAP_HEADER_SIZE: usize = BITMAP_BLOCKNR_OFFSET + size_of::<u64>();
/// Reference counts held by one bitmap block: (4096 - 16) * 4.
pub const ENTRIES_PER_BITMAP: u64 = ((BLOCK_SIZE - BITMAP_HEADER_SIZE) * ENTRIES_PER_BYTE) as u64;
const _: () = assert!(ENTRIES_PER_BITMAP == 16320, "the kernel's bitmap capacity");
// Words of 32 entries tile the bitmap exactly.
const _: () = assert!((BLOCK_SIZE - BITMAP_HEADER_SIZE).is_multiple_of(size_of::<u64>()));

pub const INDEX_PADDING_OFFSET: usize = CSUM_OFFSET + size_of::<u32>();
pub const INDEX_BLOCKNR_OFFSET: usize = INDEX_PADDING_OFFSET + size_of::<u32>();
pub const INDEX_HEADER_SIZE: usize = INDEX_BLOCKNR_OFFSET + size_of::<u64>();

const IE_BLOCKNR: usize = 0;
const IE_NR_FREE: usize = IE_BLOCKNR + size_of::<u64>();
const IE_NONE_FREE_BEFORE: usize = IE_NR_FREE + size_of::<u32>();
pub const INDEX_ENTRY_SIZE: usize = IE_NONE_FREE_BEFORE + size_of::<u32>();
const _: () = assert!(INDEX_ENTRY_SIZE == 16);

/// Entries in the metadata space map's single index block: as many as fit.
pub const MAX_METADATA_BITMAPS: usize = (BLOCK_SIZE - INDEX_HEADER_SIZE) / INDEX_ENTRY_SIZE;
const _: () = assert!(MAX_METADATA_BITMAPS == 255, "the kernel's index capacity");
/// Largest metadata device the metadata space map can describe.
pub const MAX_METADATA_BLOCKS: u64 = MAX_METADATA_BITMAPS as u64 * ENTRIES_PER_BITMAP;

const ROOT_NR_BLOCKS: usize = 0;
const ROOT_NR_ALLOCATED: usize = ROOT_NR_BLOCKS + size_of::<u64>();
const ROOT_BITMAP_ROOT: usize = ROOT_NR_ALLOCATED + size_of::<u64>();
const ROOT_REF_COUNT_ROOT: usize = ROOT_BITMAP_ROOT + size_of::<u64>();
pub const SM_ROOT_SIZE: usize = ROOT_REF_COUNT_ROOT + size_of::<u64>();
/// Size of a space-map root area in a superblock (only 32 bytes are used).
pub const SM_ROOT_AREA_SIZE: usize = 128;
const _: () = assert!(SM_ROOT_SIZE <= SM_ROOT_AREA_SIZE);

/// Counts of 3 and more live in the overflow tree; the bitmap holds 3.
pub const OVERFLOW_MARK: u32 = 3;

/// `disk_sm_root`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmRoot {
    pub nr_blocks: u64,
    pub nr_allocated: u64,
    /// Metadata SM: the index block. Disk SM: root of the index B-tree.
    pub bitmap_root: u64,
    /// Root of the overflow (count >= 3) B-tree.
    pub ref_count_root: u64,
}

impl SmRoot {
    pub fn unpack(b: &[u8]) -> SmRoot {
        SmRoot {
            nr_blocks: le64(b, ROOT_NR_BLOCKS),
            nr_allocated: le64(b, ROOT_NR_ALLOCATED),
            bitmap_root: le64(b, ROOT_BITMAP_ROOT),
            ref_count_root: le64(b, ROOT_REF_COUNT_ROOT),
        }
    }

    /// Packs into a 128-byte area (the unused tail is zeroed).
    pub fn pack(&self, b: &mut [u8]) {
        b[..SM_ROOT_AREA_SIZE].fill(0);
        put_le64(b, ROOT_NR_BLOCKS, self.nr_blocks);
        put_le64(b, ROOT_NR_ALLOCATED, self.nr_allocated);
        put_le64(b, ROOT_BITMAP_ROOT, self.bitmap_root);
        put_le64(b, ROOT_REF_COUNT_ROOT, self.ref_count_root);
    }
}

/// `disk_index_entry`: where a bitmap is and hints about its free entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexEntry {
    pub blocknr: u64,
    /// Zero entries in the bitmap, counting those past nr_blocks.
    pub nr_free: u32,
    /// Every entry below this one is in use (a search hint only).
    pub none_free_before: u32,
}

impl IndexEntry {
    pub fn fresh(blocknr: u64) -> IndexEntry {
        IndexEntry {
            blocknr,
            nr_free: ENTRIES_PER_BITMAP as u32,
            none_free_before: 0,
        }
    }

    pub fn unpack(b: &[u8]) -> IndexEntry {
        IndexEntry {
            blocknr: le64(b, IE_BLOCKNR),
            nr_free: le32(b, IE_NR_FREE),
            none_free_before: le32(b, IE_NONE_FREE_BEFORE),
        }
    }

    pub fn pack(&self, b: &mut [u8]) {
        put_le64(b, IE_BLOCKNR, self.blocknr);
        put_le32(b, IE_NR_FREE, self.nr_free);
        put_le32(b, IE_NONE_FREE_BEFORE, self.none_free_before);
    }

    pub fn to_bytes(self) -> [u8; INDEX_ENTRY_SIZE] {
        let mut b = [0u8; INDEX_ENTRY_SIZE];
        self.pack(&mut b);
        b
    }

    /// Bookkeeping for an entry going between zero and non-zero.
    pub fn note_transition(&mut self, entry: u32, old: u32, new: u32) {
        if old == 0 && new != 0 {
            self.nr_free = self.nr_free.saturating_sub(1);
            if self.none_free_before == entry {
                self.none_free_before = entry + 1;
            }
        } else if old != 0 && new == 0 {
            self.nr_free += 1;
            self.none_free_before = self.none_free_before.min(entry);
        }
    }
}

/// The 2-bit count of entry `e` of a bitmap block (3 means "see overflow").
/// The lower bit of the pair is the high bit of the value.
#[inline]
pub fn bitmap_get(block: &Block, e: u64) -> u32 {
    let word = le64(block, BITMAP_HEADER_SIZE + 8 * (e as usize / 32));
    let v = ((word >> (2 * (e % 32))) & 3) as u32;
    ((v & 1) << 1) | (v >> 1)
}

/// The 2-bit pattern of `count` (3 for 3 and more) in the low pair of a
/// bitmap word.
#[inline]
pub fn entry_pair(count: u32) -> u64 {
    let c = count.min(OVERFLOW_MARK) as u64;
    ((c & 1) << 1) | (c >> 1)
}

#[inline]
pub fn bitmap_set(block: &mut Block, e: u64, count: u32) {
    debug_assert!(count <= 3);
    let off = BITMAP_HEADER_SIZE + 8 * (e as usize / 32);
    let shift = 2 * (e % 32);
    let v = entry_pair(count);
    let word = (le64(block, off) & !(3u64 << shift)) | (v << shift);
    put_le64(block, off, word);
}

/// First entry >= `from` and < `to` whose 2-bit count is 0.
pub fn bitmap_find_free(block: &Block, from: u64, to: u64) -> Option<u64> {
    let mut e = from;
    while e < to {
        let wi = e as usize / 32;
        let word = le64(block, BITMAP_HEADER_SIZE + 8 * wi);
        // A pair is free when both bits are 0.
        let used = (word | (word >> 1)) & 0x5555_5555_5555_5555;
        let mut free = !used & 0x5555_5555_5555_5555;
        free &= !0u64 << (2 * (e % 32));
        if free != 0 {
            let found = (wi as u64) * 32 + (free.trailing_zeros() / 2) as u64;
            return (found < to).then_some(found);
        }
        e = (wi as u64 + 1) * 32;
    }
    None
}

/// Bitmap blocks: location and checksum are all there is to check.
pub static BITMAP_VALIDATOR: SealedValidator = SealedValidator {
    name: "space-map bitmap",
    blocknr_offset: BITMAP_BLOCKNR_OFFSET,
    salt: SALT_BITMAP,
    reserved: BITMAP_NOT_USED_OFFSET..BITMAP_BLOCKNR_OFFSET,
};

/// The metadata space map's index block.
pub static INDEX_VALIDATOR: SealedValidator = SealedValidator {
    name: "space-map index",
    blocknr_offset: INDEX_BLOCKNR_OFFSET,
    salt: SALT_INDEX,
    reserved: INDEX_PADDING_OFFSET..INDEX_BLOCKNR_OFFSET,
};

/// Reads the entries of a metadata index block (stops at the first empty one).
pub fn unpack_metadata_index(data: &Block, nr_bitmaps: usize) -> Vec<IndexEntry> {
    (0..nr_bitmaps.min(MAX_METADATA_BITMAPS))
        .map(|i| {
            let off = INDEX_HEADER_SIZE + i * INDEX_ENTRY_SIZE;
            IndexEntry::unpack(&data[off..off + INDEX_ENTRY_SIZE])
        })
        .collect()
}

pub fn pack_metadata_index(data: &mut Block, entries: &[IndexEntry]) {
    data[INDEX_HEADER_SIZE..].fill(0);
    for (i, ie) in entries.iter().enumerate().take(MAX_METADATA_BITMAPS) {
        let off = INDEX_HEADER_SIZE + i * INDEX_ENTRY_SIZE;
        ie.pack(&mut data[off..off + INDEX_ENTRY_SIZE]);
    }
}

/// Number of bitmaps needed for `nr_blocks`.
pub fn nr_bitmaps(nr_blocks: u64) -> usize {
    nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_order() {
        let mut b = [0u8; BLOCK_SIZE];
        bitmap_set(&mut b, 0, 1);
        // count 1 sets the upper bit of the pair
        assert_eq!(le64(&b, BITMAP_HEADER_SIZE), 0b10);
        bitmap_set(&mut b, 0, 2);
        assert_eq!(le64(&b, BITMAP_HEADER_SIZE), 0b01);
        for e in [0u64, 1, 31, 32, 16319] {
            for c in 0..4 {
                bitmap_set(&mut b, e, c);
                assert_eq!(bitmap_get(&b, e), c);
            }
        }
    }

    #[test]
    fn find_free() {
        let mut b = [0u8; BLOCK_SIZE];
        for e in 0..100 {
            bitmap_set(&mut b, e, 1);
        }
        assert_eq!(bitmap_find_free(&b, 0, ENTRIES_PER_BITMAP), Some(100));
        bitmap_set(&mut b, 100, 3);
        assert_eq!(bitmap_find_free(&b, 0, ENTRIES_PER_BITMAP), Some(101));
        assert_eq!(bitmap_find_free(&b, 0, 101), None);
        assert_eq!(bitmap_find_free(&b, 200, 300), Some(200));
    }
}
