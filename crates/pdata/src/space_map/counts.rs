//! Reference counts kept in memory: by the checkers (counts recomputed
//! from the references found) and by the bulk builders (counts of a space
//! map about to be written). One byte per block, larger counts in a side
//! map. The bytes are allocated zeroed, so the pages of blocks never
//! counted cost no memory; the allocation is rounded up to whole bitmaps so
//! a bitmap's counts are always one full slice.

use super::format::ENTRIES_PER_BITMAP;
use crate::{Error, Result};
use rustc_hash::FxHashMap;
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// Blocks per bitmap: the unit of [`RefCounts::chunk`].
const CHUNK: usize = ENTRIES_PER_BITMAP as usize;
/// Largest count held in the byte itself.
const MAX_SMALL: u8 = 253;
/// The count is in `big`.
const BIG: u8 = 254;
/// An overflow-tree entry was found for this block (set by
/// [`RefCounts::mark_overflow`]); the count was at least 3.
pub const OVERFLOW_SEEN: u8 = 255;
const _: () = assert!(MAX_SMALL < BIG && BIG < OVERFLOW_SEEN && MAX_SMALL >= 3);

pub struct RefCounts {
    bytes: ZeroedBytes,
    /// Blocks counted (`bytes` is longer: rounded up to whole bitmaps).
    nr_blocks: u64,
    big: FxHashMap<u64, u32>,
    /// Blocks whose count reached 3 (the overflow tree's entries).
    nr_overflow: u64,
}

impl RefCounts {
    /// Counts for blocks `0..nr_blocks`, all zero; an error if the memory
    /// cannot be had.
    pub fn new(nr_blocks: u64) -> Result<Self> {
        let no_memory = || {
            Error::invalid(format!(
                "not enough memory to count references to {nr_blocks} blocks"
            ))
        };
        let len = usize::try_from(nr_blocks)
            .ok()
            .and_then(|n| n.checked_next_multiple_of(CHUNK))
            .ok_or_else(no_memory)?;
        Ok(RefCounts {
            bytes: ZeroedBytes::new(len).ok_or_else(no_memory)?,
            nr_blocks,
            big: FxHashMap::default(),
            nr_overflow: 0,
        })
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Adds one reference to `b` (< nr_blocks) and returns the count before.
    #[inline]
    pub fn inc(&mut self, b: u64) -> u32 {
        let i = b as usize;
        let x = self.bytes.as_slice()[i];
        if x < MAX_SMALL {
            self.bytes.as_mut_slice()[i] = x + 1;
            self.nr_overflow += u64::from(x == 2);
            return x as u32;
        }
        self.inc_big(b, x)
    }

    #[cold]
    fn inc_big(&mut self, b: u64, x: u8) -> u32 {
        match x {
            MAX_SMALL => {
                self.bytes.as_mut_slice()[b as usize] = BIG;
                self.big.insert(b, MAX_SMALL as u32 + 1);
                MAX_SMALL as u32
            }
            _ => {
                let c = self.big.entry(b).or_insert(MAX_SMALL as u32 + 1);
                *c += 1;
                *c - 1
            }
        }
    }

    /// Adds one to the counts of blocks `begin..begin + len`.
    pub fn inc_range(&mut self, begin: u64, len: u64) -> Result<()> {
        let end = begin
            .checked_add(len)
            .filter(|&e| e <= self.nr_blocks)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "blocks {begin}..{} are beyond the end of the space map ({} blocks)",
                    begin.saturating_add(len),
                    self.nr_blocks
                ))
            })?;
        for b in begin..end {
            let x = self.bytes.as_slice()[b as usize];
            if x >= BIG {
                let c = self.big.entry(b).or_insert(MAX_SMALL as u32 + 1);
                *c = c.checked_add(1).ok_or_else(|| {
                    Error::invalid(format!("block {b}: reference count overflows"))
                })?;
            } else {
                self.inc(b);
            }
        }
        Ok(())
    }

    /// The count of `b`, or None where only "at least 3" is kept
    /// ([`OVERFLOW_SEEN`]). Blocks past the end count 0.
    pub fn get(&self, b: u64) -> Option<u32> {
        match self.bytes().get(b as usize).copied().unwrap_or(0) {
            OVERFLOW_SEEN => None,
            x => Some(self.resolve(b, x)),
        }
    }

    /// The count a byte of [`Self::chunk`] or [`Self::bytes`] stands for.
    pub fn resolve(&self, b: u64, x: u8) -> u32 {
        match x {
            BIG => self.big.get(&b).copied().unwrap_or(0),
            x => x as u32,
        }
    }

    /// Notes that the space map's overflow tree holds an entry for `b`,
    /// whose count (at least 3) has been compared already.
    pub fn mark_overflow(&mut self, b: u64) {
        if let Some(x) = self.bytes.as_mut_slice()[..self.nr_blocks as usize].get_mut(b as usize) {
            *x = OVERFLOW_SEEN;
        }
    }

    /// The raw bytes of blocks `0..nr_blocks`: 0..=253 the count, 254 a
    /// count in the map, 255 see [`OVERFLOW_SEEN`].
    pub fn bytes(&self) -> &[u8] {
        &self.bytes.as_slice()[..self.nr_blocks as usize]
    }

    /// The bytes of bitmap `i`'s blocks (a whole bitmap's worth, zero past
    /// the end), or None when all are zero. Bytes of 3 and more are resolved
    /// with [`Self::resolve`].
    pub fn chunk(&self, i: u64) -> Option<&[u8]> {
        let first = usize::try_from(i).ok()?.checked_mul(CHUNK)?;
        if first as u64 >= self.nr_blocks {
            return None;
        }
        let c = &self.bytes.as_slice()[first..first + CHUNK];
        c.iter().any(|&x| x != 0).then_some(c)
    }

    /// Number of blocks with a count of 3 or more (the overflow tree's entries).
    pub fn nr_overflow(&self) -> u64 {
        self.nr_overflow
    }
}

/// A zero-filled byte array from `alloc_zeroed`, whose untouched pages the
/// kernel never backs (a `Vec` would write the zeros).
struct ZeroedBytes {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the allocation is owned and only reached through &self / &mut self.
unsafe impl Send for ZeroedBytes {}
unsafe impl Sync for ZeroedBytes {}

impl ZeroedBytes {
    fn new(len: usize) -> Option<Self> {
        if len == 0 {
            return Some(ZeroedBytes {
                ptr: std::ptr::NonNull::dangling().as_ptr(),
                len: 0,
            });
        }
        let layout = Layout::array::<u8>(len).ok()?;
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(ZeroedBytes { ptr, len })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for ZeroedBytes {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in `new` with this layout.
            unsafe {
                dealloc(
                    self.ptr,
                    Layout::array::<u8>(self.len).unwrap_or(Layout::new::<u8>()),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_big() {
        let mut c = RefCounts::new(10).unwrap();
        assert_eq!(c.inc(3), 0);
        assert_eq!(c.inc(3), 1);
        assert_eq!(c.get(3), Some(2));
        for i in 2..1000 {
            assert_eq!(c.inc(4), i - 2);
        }
        assert_eq!(c.get(4), Some(998));
        assert_eq!(c.get(99), Some(0));
        assert_eq!(c.nr_overflow(), 1);
        c.mark_overflow(4);
        assert_eq!(c.get(4), None);
        c.mark_overflow(12);
        assert_eq!(c.bytes().len(), 10);
        assert_eq!(RefCounts::new(0).unwrap().nr_blocks(), 0);
        assert!(RefCounts::new(u64::MAX).is_err());
    }

    #[test]
    fn counts_across_chunks_and_past_a_byte() {
        let mut rc = RefCounts::new(3 * CHUNK as u64).unwrap();
        rc.inc_range(CHUNK as u64 - 2, 4).unwrap();
        for _ in 0..300 {
            rc.inc_range(5, 1).unwrap();
        }
        assert_eq!(rc.get(CHUNK as u64 - 3), Some(0));
        assert_eq!(rc.get(CHUNK as u64 - 2), Some(1));
        assert_eq!(rc.get(CHUNK as u64 + 1), Some(1));
        assert_eq!(rc.get(CHUNK as u64 + 2), Some(0));
        assert_eq!(rc.get(5), Some(300));
        assert!(rc.chunk(2).is_none());
        assert_eq!(rc.chunk(1).map(<[u8]>::len), Some(CHUNK));
        assert_eq!(rc.nr_overflow(), 1);
        assert!(rc.inc_range(3 * CHUNK as u64 - 1, 2).is_err());
        assert!(rc.inc_range(u64::MAX, 2).is_err());
    }

    #[test]
    fn last_chunk_is_whole() {
        let rc = {
            let mut rc = RefCounts::new(CHUNK as u64 + 5).unwrap();
            rc.inc_range(CHUNK as u64 + 4, 1).unwrap();
            rc
        };
        assert_eq!(rc.chunk(1).map(<[u8]>::len), Some(CHUNK));
        assert!(rc.chunk(2).is_none());
    }
}
