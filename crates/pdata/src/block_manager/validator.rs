//! Validators: per block type, a check run on every read from disk and a
//! stamp (location, checksum) run before every write.

use crate::checksum::seal;
use crate::{Block, Result};
use std::ops::Range;

pub trait Validator: Send + Sync + 'static {
    /// Unique name of the block type, used in errors and to detect a block
    /// locked under two types.
    fn name(&self) -> &'static str;

    /// Checks a block just read from location `loc`: block number, magic,
    /// checksum and whatever structure can be checked locally.
    fn check(&self, loc: u64, data: &Block) -> Result<()>;

    /// Stores `loc` and the checksum into the block, after checking that the
    /// structure is sound: nothing malformed is ever written.
    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()>;
}

/// Reads the little-endian u64 at `offset`.
#[inline]
pub fn le64(data: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[offset..offset + 8]);
    u64::from_le_bytes(b)
}

/// Reads the little-endian u32 at `offset`.
#[inline]
pub fn le32(data: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[offset..offset + 4]);
    u32::from_le_bytes(b)
}

#[inline]
pub fn put_le64(data: &mut [u8], offset: usize, v: u64) {
    data[offset..offset + 8].copy_from_slice(&v.to_le_bytes());
}

#[inline]
pub fn put_le32(data: &mut [u8], offset: usize, v: u32) {
    data[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
}

/// Checks the common `blocknr` + checksum pair used by most block types.
pub fn check_location_and_checksum(
    kind: &'static str,
    loc: u64,
    data: &Block,
    blocknr_offset: usize,
    salt: u32,
) -> Result<()> {
    let found = le64(data, blocknr_offset);
    if found != loc {
        return Err(crate::Error::BlockNumber {
            block: loc,
            kind,
            found,
        });
    }
    if !crate::checksum::verify(data, salt) {
        return Err(crate::Error::Checksum { block: loc, kind });
    }
    Ok(())
}

/// Stores `loc` at `blocknr_offset` and seals the block under `salt`: the
/// last step of every block type's `prepare_for_write`.
#[inline]
pub fn stamp_and_seal(data: &mut Block, blocknr_offset: usize, loc: u64, salt: u32) {
    put_le64(data, blocknr_offset, loc);
    seal(data, salt);
}

/// A block type with nothing to check locally but its location and
/// checksum (space-map bitmaps and index blocks).
pub struct SealedValidator {
    pub name: &'static str,
    pub blocknr_offset: usize,
    pub salt: u32,
    /// Header bytes the format leaves unused: zeroed before every write.
    pub reserved: Range<usize>,
}

impl Validator for SealedValidator {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self, loc: u64, data: &Block) -> Result<()> {
        check_location_and_checksum(self.name, loc, data, self.blocknr_offset, self.salt)
    }

    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()> {
        data[self.reserved.clone()].fill(0);
        stamp_and_seal(data, self.blocknr_offset, loc, self.salt);
        Ok(())
    }
}
