//! The block checksum: CRC-32C (Castagnoli) of bytes 4..4096 with seed
//! 0xFFFFFFFF and no final inversion, XORed with a per-block-type salt.
//!
//! ```text
//! +-----------+--------------------------------------------------+
//! | 0         | 4                                                |
//! | csum u32  | the rest of the block: what the checksum covers  |
//! +-----------+--------------------------------------------------+
//! ```

use crate::BLOCK_SIZE;

/// Byte offset of the stored checksum in every checksummed block.
pub const CSUM_OFFSET: usize = 0;

pub const SALT_THIN_SUPERBLOCK: u32 = 160_774;
pub const SALT_CACHE_SUPERBLOCK: u32 = 9_031_977;
pub const SALT_ERA_SUPERBLOCK: u32 = 146_538_381;
pub const SALT_BTREE_NODE: u32 = 121_107;
pub const SALT_BITMAP: u32 = 240_779;
pub const SALT_INDEX: u32 = 160_478;
pub const SALT_ARRAY: u32 = 595_846_735;

/// Every salt, for the invariant below.
const SALTS: [u32; 7] = [
    SALT_THIN_SUPERBLOCK,
    SALT_CACHE_SUPERBLOCK,
    SALT_ERA_SUPERBLOCK,
    SALT_BTREE_NODE,
    SALT_BITMAP,
    SALT_INDEX,
    SALT_ARRAY,
];

const fn all_distinct(salts: &[u32]) -> bool {
    let mut i = 0;
    while i < salts.len() {
        let mut j = i + 1;
        while j < salts.len() {
            if salts[i] == salts[j] {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}
// A block sealed as one type never verifies as another, and [`identify`]
// can name a block's type from its checksum alone.
const _: () = assert!(all_distinct(&SALTS));
/// Bytes the checksum covers: all after the stored checksum.
const COVERED_FROM: usize = CSUM_OFFSET + size_of::<u32>();

/// The checksum the kernel stores for `block` under `salt`.
#[inline]
pub fn block_checksum(block: &[u8], salt: u32) -> u32 {
    debug_assert_eq!(block.len(), BLOCK_SIZE);
    // The crc32c crate returns the standard (inverted) CRC; undo the inversion.
    crc32c::crc32c(&block[COVERED_FROM..]) ^ 0xFFFF_FFFF ^ salt
}

/// The checksum stored in the block.
#[inline]
pub fn stored_checksum(block: &[u8]) -> u32 {
    let c = &block[CSUM_OFFSET..COVERED_FROM];
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

/// Recomputes and stores the checksum.
#[inline]
pub fn seal(block: &mut [u8], salt: u32) {
    let c = block_checksum(block, salt);
    block[CSUM_OFFSET..CSUM_OFFSET + 4].copy_from_slice(&c.to_le_bytes());
}

/// True when the stored checksum matches `salt`.
#[inline]
pub fn verify(block: &[u8], salt: u32) -> bool {
    stored_checksum(block) == block_checksum(block, salt)
}

/// The kinds of checksummed block, recognised by salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    ThinSuperblock,
    CacheSuperblock,
    EraSuperblock,
    BTreeNode,
    Bitmap,
    Index,
    Array,
    Unknown,
}

/// Identifies a block's type from its checksum (the tools' trick: all salts differ).
pub fn identify(block: &[u8]) -> BlockKind {
    let salt = stored_checksum(block) ^ crc32c::crc32c(&block[COVERED_FROM..]) ^ 0xFFFF_FFFF;
    match salt {
        SALT_THIN_SUPERBLOCK => BlockKind::ThinSuperblock,
        SALT_CACHE_SUPERBLOCK => BlockKind::CacheSuperblock,
        SALT_ERA_SUPERBLOCK => BlockKind::EraSuperblock,
        SALT_BTREE_NODE => BlockKind::BTreeNode,
        SALT_BITMAP => BlockKind::Bitmap,
        SALT_INDEX => BlockKind::Index,
        SALT_ARRAY => BlockKind::Array,
        _ => BlockKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_vector() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn zero_block_vectors() {
        let block = [0u8; BLOCK_SIZE];
        assert_eq!(block_checksum(&block, SALT_THIN_SUPERBLOCK), 0x58CF_D397);
        assert_eq!(block_checksum(&block, SALT_CACHE_SUPERBLOCK), 0x5844_76B8);
        assert_eq!(block_checksum(&block, SALT_ERA_SUPERBLOCK), 0x5076_581C);
        assert_eq!(block_checksum(&block, SALT_BTREE_NODE), 0x58CC_7E82);
        assert_eq!(block_checksum(&block, SALT_BITMAP), 0x58CE_0B1A);
        assert_eq!(block_checksum(&block, SALT_INDEX), 0x58CF_D54F);
        assert_eq!(block_checksum(&block, SALT_ARRAY), 0x7B4E_41DE);
    }

    #[test]
    fn identify_roundtrip() {
        let mut block = [7u8; BLOCK_SIZE];
        seal(&mut block, SALT_BITMAP);
        assert!(verify(&block, SALT_BITMAP));
        assert_eq!(identify(&block), BlockKind::Bitmap);
    }
}
