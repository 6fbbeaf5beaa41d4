//! Reference counts recomputed by the walk: one byte per block, larger
//! counts in a map. The bytes are allocated zeroed, so the pages of blocks
//! never referenced cost no memory.

use rustc_hash::FxHashMap;
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// Largest count held in the byte itself.
const MAX_SMALL: u8 = 253;
/// The count is in `big`.
const BIG: u8 = 254;
/// An overflow-tree entry was found for this block (set by
/// [`RefCounts::mark_overflow`]); the count was at least 3.
pub const OVERFLOW_SEEN: u8 = 255;

pub struct RefCounts {
    bytes: ZeroedBytes,
    big: FxHashMap<u64, u32>,
}

impl RefCounts {
    /// Counts for blocks `0..len`, all zero; None if the memory cannot be had.
    pub fn new(len: u64) -> Option<Self> {
        Some(RefCounts {
            bytes: ZeroedBytes::new(usize::try_from(len).ok()?)?,
            big: FxHashMap::default(),
        })
    }

    pub fn len(&self) -> u64 {
        self.bytes.len as u64
    }

    /// Adds one reference to `b` (< len) and returns the count before.
    #[inline]
    pub fn inc(&mut self, b: u64) -> u32 {
        let i = b as usize;
        let x = self.bytes.as_slice()[i];
        if x < MAX_SMALL {
            self.bytes.as_mut_slice()[i] = x + 1;
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

    /// The count of `b`, or None where only "at least 3" is kept
    /// ([`OVERFLOW_SEEN`]). Blocks past the end count 0.
    pub fn get(&self, b: u64) -> Option<u32> {
        match self.bytes.as_slice().get(b as usize).copied().unwrap_or(0) {
            OVERFLOW_SEEN => None,
            BIG => Some(self.big.get(&b).copied().unwrap_or(0)),
            x => Some(x as u32),
        }
    }

    /// Notes that the space map's overflow tree holds an entry for `b`,
    /// whose count (at least 3) has been compared already.
    pub fn mark_overflow(&mut self, b: u64) {
        if let Some(x) = self.bytes.as_mut_slice().get_mut(b as usize) {
            *x = OVERFLOW_SEEN;
        }
    }

    /// The raw bytes: 0..=253 the count, 254 a count in the map, 255 see
    /// [`OVERFLOW_SEEN`].
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
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
        c.mark_overflow(4);
        assert_eq!(c.get(4), None);
        assert_eq!(RefCounts::new(0).unwrap().len(), 0);
    }
}
