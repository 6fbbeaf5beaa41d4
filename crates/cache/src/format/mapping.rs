//! The mapping array's value: `origin_block << 16 | flags`, le64, indexed by
//! cache block. An unmapped cache block holds 0.
//!
//! ```text
//! bits 63..16  origin block (48 bits)
//! bit  1       DIRTY (version 1 only; version 2 keeps a dirty bitset)
//! bit  0       VALID
//! ```

/// Bytes per value in the mapping array.
pub const MAPPING_VALUE_SIZE: usize = 8;
pub const FLAGS_BITS: u32 = 16;
pub const FLAGS_MASK: u64 = (1 << FLAGS_BITS) - 1;
pub const FLAG_VALID: u64 = 1;
pub const FLAG_DIRTY: u64 = 2;
/// Origin block numbers fit in the 48 bits above the flags.
pub const MAX_OBLOCK: u64 = (1 << (64 - FLAGS_BITS)) - 1;

const _: () = assert!((FLAG_VALID | FLAG_DIRTY) & !FLAGS_MASK == 0);

/// A cache block's mapping: the origin block it holds and whether the cache
/// copy is newer than the origin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub oblock: u64,
    pub dirty: bool,
}

/// Packs a value; `oblock` must be at most [`MAX_OBLOCK`].
pub fn pack(oblock: u64, flags: u64) -> u64 {
    debug_assert!(oblock <= MAX_OBLOCK);
    (oblock << FLAGS_BITS) | (flags & FLAGS_MASK)
}

/// (origin block, flags).
pub fn unpack(value: u64) -> (u64, u64) {
    (value >> FLAGS_BITS, value & FLAGS_MASK)
}

/// The value of a valid mapping, with DIRTY set if `dirty` (version 1).
pub fn valid(oblock: u64, dirty: bool) -> u64 {
    pack(oblock, FLAG_VALID | if dirty { FLAG_DIRTY } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(pack(0, 0), 0);
        assert_eq!(valid(5, false), 5 << 16 | 1);
        assert_eq!(valid(5, true), 5 << 16 | 3);
        assert_eq!(unpack(valid(MAX_OBLOCK, true)), (MAX_OBLOCK, 3));
    }
}
