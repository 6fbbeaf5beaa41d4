//! The dm-era superblock (block 0): 224 bytes, the rest of the block zero.
//! A metadata snapshot is a copy of it at another block (its block number
//! stamped), of which only the writeset tree and era array roots count.
//!
//! ```text
//!   0  csum                      le32  CRC-32C of bytes 4..4096 ^ 146538381
//!   4  flags                     le32  the kernel writes 0
//!   8  blocknr                   le64  this block's number
//!  16  uuid                      16 B  zeros
//!  32  magic                     le64  2126579579
//!  40  version                   le32  1
//!  44  metadata_space_map_root  128 B
//! 172  data_block_size           le32  origin block size, sectors
//! 176  metadata_block_size       le32  8
//! 180  nr_blocks                 le32  origin blocks tracked
//! 184  current_era               le32
//! 188  current_writeset          12 B  writeset_disk; root 0: none
//! 200  writeset_tree_root        le64
//! 208  era_array_root            le64
//! 216  metadata_snap             le64  0: none
//! 224  end
//! ```

use super::writeset::{WritesetDisk, WRITESET_DISK_SIZE};
use pdata::block_manager::{le32, le64, put_le32, put_le64, Validator};
use pdata::checksum::SALT_ERA_SUPERBLOCK;
use pdata::space_map::format::{SmRoot, SM_ROOT_AREA_SIZE};
use pdata::superblock::SuperblockId;
use pdata::{Block, Error, Result};

pub const SUPERBLOCK_LOCATION: u64 = 0;
pub const ERA_MAGIC: u64 = 2_126_579_579;
/// The only version the kernel accepts.
pub const ERA_VERSION: u32 = 1;
pub const METADATA_BLOCK_SIZE_SECTORS: u32 = 8;
/// Smallest origin block size, in sectors.
pub const MIN_DATA_BLOCK_SIZE: u32 = 8;
/// Origin block counts stay below 2^31 (the kernel keeps them in an int).
pub const MAX_NR_BLOCKS: u32 = (1 << 31) - 1;

// The header every client's superblock shares: csum, flags, blocknr, uuid,
// magic, version.
pub use pdata::superblock::{BLOCKNR, CSUM, FLAGS, MAGIC, UUID, UUID_SIZE, VERSION};
pub const METADATA_SPACE_MAP_ROOT: usize = pdata::superblock::HEADER_END;
pub const DATA_BLOCK_SIZE: usize = METADATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE;
pub const METADATA_BLOCK_SIZE: usize = DATA_BLOCK_SIZE + 4;
pub const NR_BLOCKS: usize = METADATA_BLOCK_SIZE + 4;
pub const CURRENT_ERA: usize = NR_BLOCKS + 4;
pub const CURRENT_WRITESET: usize = CURRENT_ERA + 4;
pub const WRITESET_TREE_ROOT: usize = CURRENT_WRITESET + WRITESET_DISK_SIZE;
pub const ERA_ARRAY_ROOT: usize = WRITESET_TREE_ROOT + 8;
pub const METADATA_SNAP: usize = ERA_ARRAY_ROOT + 8;
pub const SUPERBLOCK_SIZE: usize = METADATA_SNAP + 8;

const _: () = assert!(MAGIC == 32 && METADATA_SPACE_MAP_ROOT == 44);
const _: () = assert!(DATA_BLOCK_SIZE == 172 && CURRENT_WRITESET == 188);
const _: () = assert!(WRITESET_TREE_ROOT == 200 && SUPERBLOCK_SIZE == 224);
// A torn write of block 0 must leave it wholly old or wholly new.
const _: () = assert!(SUPERBLOCK_SIZE <= 512);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub flags: u32,
    pub uuid: [u8; UUID_SIZE],
    pub version: u32,
    pub metadata_sm_root: SmRoot,
    /// Origin block size, in sectors.
    pub data_block_size: u32,
    pub nr_blocks: u32,
    pub current_era: u32,
    /// Root 0: no current writeset.
    pub current_writeset: WritesetDisk,
    pub writeset_tree_root: u64,
    pub era_array_root: u64,
    /// 0: no metadata snapshot.
    pub metadata_snap: u64,
}

impl Superblock {
    pub fn unpack(b: &Block) -> Self {
        let mut uuid = [0u8; UUID_SIZE];
        uuid.copy_from_slice(&b[UUID..UUID + UUID_SIZE]);
        Superblock {
            flags: le32(b, FLAGS),
            uuid,
            version: le32(b, VERSION),
            metadata_sm_root: SmRoot::unpack(&b[METADATA_SPACE_MAP_ROOT..]),
            data_block_size: le32(b, DATA_BLOCK_SIZE),
            nr_blocks: le32(b, NR_BLOCKS),
            current_era: le32(b, CURRENT_ERA),
            current_writeset: WritesetDisk::unpack(&b[CURRENT_WRITESET..WRITESET_TREE_ROOT]),
            writeset_tree_root: le64(b, WRITESET_TREE_ROOT),
            era_array_root: le64(b, ERA_ARRAY_ROOT),
            metadata_snap: le64(b, METADATA_SNAP),
        }
    }

    /// A whole block: the structure, then zeros.
    pub fn pack(&self) -> Box<Block> {
        let mut b = pdata::block_manager::new_block_buffer();
        put_le32(&mut b[..], FLAGS, self.flags);
        b[UUID..UUID + UUID_SIZE].copy_from_slice(&self.uuid);
        put_le64(&mut b[..], MAGIC, ERA_MAGIC);
        put_le32(&mut b[..], VERSION, self.version);
        self.metadata_sm_root
            .pack(&mut b[METADATA_SPACE_MAP_ROOT..METADATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE]);
        put_le32(&mut b[..], DATA_BLOCK_SIZE, self.data_block_size);
        put_le32(&mut b[..], METADATA_BLOCK_SIZE, METADATA_BLOCK_SIZE_SECTORS);
        put_le32(&mut b[..], NR_BLOCKS, self.nr_blocks);
        put_le32(&mut b[..], CURRENT_ERA, self.current_era);
        self.current_writeset
            .pack(&mut b[CURRENT_WRITESET..WRITESET_TREE_ROOT]);
        put_le64(&mut b[..], WRITESET_TREE_ROOT, self.writeset_tree_root);
        put_le64(&mut b[..], ERA_ARRAY_ROOT, self.era_array_root);
        put_le64(&mut b[..], METADATA_SNAP, self.metadata_snap);
        b
    }
}

const ID: SuperblockId = SuperblockId {
    kind: "era superblock",
    blocknr_offset: BLOCKNR,
    magic_offset: MAGIC,
    magic: ERA_MAGIC,
    salt: SALT_ERA_SUPERBLOCK,
};

pub struct SuperblockValidator;
pub static SUPERBLOCK_VALIDATOR: SuperblockValidator = SuperblockValidator;

impl Validator for SuperblockValidator {
    fn name(&self) -> &'static str {
        ID.kind
    }

    /// The kernel's order: block number, magic, checksum, version.
    fn check(&self, loc: u64, data: &Block) -> Result<()> {
        ID.check(loc, data)?;
        let version = le32(data, VERSION);
        if version != ERA_VERSION {
            return Err(Error::corrupt(
                loc,
                self.name(),
                format!("metadata version {version}; only {ERA_VERSION} is supported"),
            ));
        }
        Ok(())
    }

    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()> {
        ID.prepare_for_write(loc, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdata::checksum::seal;

    fn sample() -> Superblock {
        Superblock {
            flags: 0,
            uuid: [0; UUID_SIZE],
            version: ERA_VERSION,
            metadata_sm_root: SmRoot::default(),
            data_block_size: 128,
            nr_blocks: 1000,
            current_era: 7,
            current_writeset: WritesetDisk {
                nr_bits: 1000,
                root: 9,
            },
            writeset_tree_root: 5,
            era_array_root: 6,
            metadata_snap: 11,
        }
    }

    #[test]
    fn round_trip() {
        let sb = sample();
        let mut b = sb.pack();
        SUPERBLOCK_VALIDATOR.prepare_for_write(0, &mut b).unwrap();
        SUPERBLOCK_VALIDATOR.check(0, &b).unwrap();
        assert_eq!(Superblock::unpack(&b), sb);
        assert!(b[SUPERBLOCK_SIZE..].iter().all(|&x| x == 0));
        assert_eq!(le32(&b[..], CURRENT_WRITESET), 1000);
        assert_eq!(le64(&b[..], CURRENT_WRITESET + 4), 9);
    }

    #[test]
    fn validator_checks_the_version_last() {
        // Block number, magic and checksum come first (pdata::superblock).
        let mut b = sample().pack();
        SUPERBLOCK_VALIDATOR.prepare_for_write(0, &mut b).unwrap();
        assert!(matches!(
            SUPERBLOCK_VALIDATOR.check(3, &b),
            Err(Error::BlockNumber { .. })
        ));
        put_le32(&mut b[..], VERSION, 2);
        seal(&mut b[..], SALT_ERA_SUPERBLOCK);
        assert!(matches!(
            SUPERBLOCK_VALIDATOR.check(0, &b),
            Err(Error::Corrupt { .. })
        ));
    }
}
