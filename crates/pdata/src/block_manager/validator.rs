//! Validators: per block type, a check run on every read from disk and a
//! stamp (location, checksum) run before every write.

use crate::{Block, Result};

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
