//! Array block format (one 4096-byte block):
//!
//! ```text
//! +------+-------------+------------+------------+---------+-----------------+
//! | 0    | 4           | 8          | 12         | 16      | 24              |
//! | csum | max_entries | nr_entries | value_size | blocknr | values          |
//! | u32  | u32         | u32        | u32        | u64     | [max_entries],  |
//! |      |             |            |            |         | value_size each |
//! +------+-------------+------------+------------+---------+-----------------+
//! ```
//!
//! Unlike every other block type, `blocknr` sits at offset 16, not 8.
//! Slots at and past `nr_entries` hold nothing meaningful.

use crate::block_manager::{
    check_location_and_checksum, le32, put_le32, stamp_and_seal, Validator,
};
use crate::checksum::SALT_ARRAY;
use crate::{Block, Error, Result, BLOCK_SIZE};

pub use crate::checksum::CSUM_OFFSET;
pub const MAX_ENTRIES_OFFSET: usize = CSUM_OFFSET + size_of::<u32>();
pub const NR_ENTRIES_OFFSET: usize = MAX_ENTRIES_OFFSET + size_of::<u32>();
pub const VALUE_SIZE_OFFSET: usize = NR_ENTRIES_OFFSET + size_of::<u32>();
pub const BLOCKNR_OFFSET: usize = VALUE_SIZE_OFFSET + size_of::<u32>();
pub const HEADER_SIZE: usize = BLOCKNR_OFFSET + size_of::<u64>();
const _: () = assert!(HEADER_SIZE == 24, "the kernel's array block header");

/// Largest value an array block can hold (one value per block).
pub const MAX_VALUE_SIZE: usize = BLOCK_SIZE - HEADER_SIZE;
// What the clients store: dm-cache mappings (8) and hints (4), dm-era
// eras (4), bitset words (8); the kernel's own capacities for them.
const _: () = assert!(max_entries(8) == 509 && max_entries(4) == 1018);

/// Values per array block: as many as fit after the header.
/// `value_size` must be in `1..=MAX_VALUE_SIZE`.
pub const fn max_entries(value_size: usize) -> u32 {
    ((BLOCK_SIZE - HEADER_SIZE) / value_size) as u32
}

/// A read-only view of an array block.
#[derive(Clone, Copy)]
pub struct ArrayBlock<'a>(pub &'a Block);

impl<'a> ArrayBlock<'a> {
    pub fn max_entries(&self) -> usize {
        le32(self.0, MAX_ENTRIES_OFFSET) as usize
    }
    pub fn nr_entries(&self) -> usize {
        le32(self.0, NR_ENTRIES_OFFSET) as usize
    }
    pub fn value_size(&self) -> usize {
        le32(self.0, VALUE_SIZE_OFFSET) as usize
    }
    pub fn blocknr(&self) -> u64 {
        crate::block_manager::le64(self.0, BLOCKNR_OFFSET)
    }
    /// Slot `i` (which must be below `max_entries`).
    pub fn value(&self, i: usize) -> &'a [u8] {
        let vs = self.value_size();
        let off = HEADER_SIZE + i * vs;
        &self.0[off..off + vs]
    }
    /// The live values, packed.
    pub fn values(&self) -> &'a [u8] {
        &self.0[HEADER_SIZE..HEADER_SIZE + self.nr_entries() * self.value_size()]
    }

    /// Structural soundness: a non-zero value size, the capacity fits the
    /// block, nr <= max.
    pub fn check_shape(&self) -> std::result::Result<(), String> {
        let (nr, max, vs) = (self.nr_entries(), self.max_entries(), self.value_size());
        if vs == 0 {
            return Err("value_size 0".to_string());
        }
        if (max as u64) * (vs as u64) + HEADER_SIZE as u64 > BLOCK_SIZE as u64 {
            return Err(format!(
                "max_entries {max} with value_size {vs} overflows the block"
            ));
        }
        if nr > max {
            return Err(format!("nr_entries {nr} > max_entries {max}"));
        }
        Ok(())
    }

    /// Checks that the block belongs to an array of `value_size` values:
    /// the value size and the capacity the format gives it.
    pub fn check_geometry(&self, value_size: usize) -> std::result::Result<(), String> {
        if self.value_size() != value_size {
            return Err(format!(
                "value_size {} where {} was expected",
                self.value_size(),
                value_size
            ));
        }
        let max = max_entries(value_size) as usize;
        if self.max_entries() != max {
            return Err(format!(
                "max_entries {} where {} was expected for value_size {}",
                self.max_entries(),
                max,
                value_size
            ));
        }
        Ok(())
    }
}

/// A mutable view of an array block.
pub struct ArrayBlockMut<'a>(pub &'a mut Block);

impl<'a> ArrayBlockMut<'a> {
    pub fn view(&self) -> ArrayBlock<'_> {
        ArrayBlock(self.0)
    }

    /// Turns the block into an empty array block for `value_size` values.
    pub fn init(&mut self, value_size: usize) {
        self.0.fill(0);
        put_le32(self.0, MAX_ENTRIES_OFFSET, max_entries(value_size));
        put_le32(self.0, VALUE_SIZE_OFFSET, value_size as u32);
    }

    pub fn set_nr_entries(&mut self, n: usize) {
        put_le32(self.0, NR_ENTRIES_OFFSET, n as u32);
    }

    /// Slot `i`, writable.
    pub fn value_mut(&mut self, i: usize) -> &mut [u8] {
        let vs = self.view().value_size();
        let off = HEADER_SIZE + i * vs;
        &mut self.0[off..off + vs]
    }
}

/// Validator of array blocks.
pub struct ArrayBlockValidator;

pub static ARRAY_VALIDATOR: ArrayBlockValidator = ArrayBlockValidator;

impl Validator for ArrayBlockValidator {
    fn name(&self) -> &'static str {
        "array block"
    }

    fn check(&self, loc: u64, data: &Block) -> Result<()> {
        check_location_and_checksum(self.name(), loc, data, BLOCKNR_OFFSET, SALT_ARRAY)?;
        ArrayBlock(data)
            .check_shape()
            .map_err(|r| Error::corrupt(loc, self.name(), r))
    }

    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()> {
        ArrayBlock(data)
            .check_shape()
            .map_err(|r| Error::corrupt(loc, "array block (before write)", r))?;
        stamp_and_seal(data, BLOCKNR_OFFSET, loc, SALT_ARRAY);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{identify, seal, BlockKind};

    #[test]
    fn capacities() {
        assert_eq!(max_entries(1), 4072);
        assert_eq!(max_entries(4), 1018);
        assert_eq!(max_entries(8), 509);
        assert_eq!(max_entries(16), 254);
        assert_eq!(max_entries(MAX_VALUE_SIZE), 1);
    }

    fn sample(value_size: usize, nr: usize) -> Box<Block> {
        let mut b = crate::block_manager::new_block_buffer();
        let mut a = ArrayBlockMut(&mut b);
        a.init(value_size);
        a.set_nr_entries(nr);
        for i in 0..nr {
            a.value_mut(i).fill(i as u8 + 1);
        }
        b
    }

    #[test]
    fn layout() {
        let mut b = sample(8, 3);
        ARRAY_VALIDATOR.prepare_for_write(77, &mut b).unwrap();
        assert_eq!(le32(&b[..], 4), 509);
        assert_eq!(le32(&b[..], 8), 3);
        assert_eq!(le32(&b[..], 12), 8);
        assert_eq!(crate::block_manager::le64(&b[..], 16), 77);
        assert_eq!(&b[24..32], &[1u8; 8]);
        assert_eq!(&b[32..40], &[2u8; 8]);
        assert_eq!(identify(&b[..]), BlockKind::Array);
        let a = ArrayBlock(&b);
        assert_eq!(a.values().len(), 24);
        assert_eq!(a.value(2), &[3u8; 8]);
        assert!(a.check_geometry(8).is_ok());
        assert!(a.check_geometry(4).is_err());
        ARRAY_VALIDATOR.check(77, &b).unwrap();
    }

    #[test]
    fn check_rejects() {
        let mut b = sample(4, 10);
        ARRAY_VALIDATOR.prepare_for_write(5, &mut b).unwrap();
        // Wrong location.
        assert!(matches!(
            ARRAY_VALIDATOR.check(6, &b),
            Err(Error::BlockNumber {
                block: 6,
                found: 5,
                ..
            })
        ));
        // Flipped byte.
        let mut bad = b.clone();
        bad[100] ^= 1;
        assert!(matches!(
            ARRAY_VALIDATOR.check(5, &bad),
            Err(Error::Checksum { block: 5, .. })
        ));
        // nr_entries > max_entries, correctly sealed.
        let mut bad = b.clone();
        put_le32(&mut bad[..], NR_ENTRIES_OFFSET, 1019);
        seal(&mut bad[..], SALT_ARRAY);
        assert!(matches!(
            ARRAY_VALIDATOR.check(5, &bad),
            Err(Error::Corrupt { block: 5, .. })
        ));
        assert!(ARRAY_VALIDATOR.prepare_for_write(5, &mut bad).is_err());
        // Capacity larger than the block.
        let mut bad = b.clone();
        put_le32(&mut bad[..], MAX_ENTRIES_OFFSET, 1019);
        seal(&mut bad[..], SALT_ARRAY);
        assert!(matches!(
            ARRAY_VALIDATOR.check(5, &bad),
            Err(Error::Corrupt { block: 5, .. })
        ));
        // A btree node salt is not an array block.
        let mut bad = b.clone();
        seal(&mut bad[..], crate::checksum::SALT_BTREE_NODE);
        assert!(ARRAY_VALIDATOR.check(5, &bad).is_err());
    }
}
