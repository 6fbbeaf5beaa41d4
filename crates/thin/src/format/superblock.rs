//! The thin-pool superblock (block 0; 364 bytes used, the rest zero).

use pdata::block_manager::{
    check_location_and_checksum, le32, le64, put_le32, put_le64, Validator,
};
use pdata::checksum::{seal, SALT_THIN_SUPERBLOCK};
use pdata::space_map::format::{SmRoot, SM_ROOT_AREA_SIZE};
use pdata::{Block, Error, Result};

pub const SUPERBLOCK_LOCATION: u64 = 0;
pub const THIN_MAGIC: u64 = 27_022_010;
/// The version the kernel writes (v1 and v2 share the layout).
pub const THIN_VERSION: u32 = 2;
pub const METADATA_BLOCK_SIZE_SECTORS: u32 = 8;
/// Largest metadata device the kernel uses, in sectors.
pub const MAX_METADATA_SECTORS: u64 = 255 * 16320 * 8;

pub const FLAG_NEEDS_CHECK: u32 = 1;

pub const CSUM: usize = 0;
pub const FLAGS: usize = 4;
pub const BLOCKNR: usize = 8;
pub const UUID: usize = 16;
pub const MAGIC: usize = 32;
pub const VERSION: usize = 40;
pub const TIME: usize = 44;
pub const TRANS_ID: usize = 48;
pub const HELD_ROOT: usize = 56;
pub const DATA_SPACE_MAP_ROOT: usize = 64;
pub const METADATA_SPACE_MAP_ROOT: usize = 192;
pub const DATA_MAPPING_ROOT: usize = 320;
pub const DEVICE_DETAILS_ROOT: usize = 328;
pub const DATA_BLOCK_SIZE: usize = 336;
pub const METADATA_BLOCK_SIZE: usize = 340;
pub const METADATA_NR_BLOCKS: usize = 344;
pub const COMPAT_FLAGS: usize = 352;
pub const COMPAT_RO_FLAGS: usize = 356;
pub const INCOMPAT_FLAGS: usize = 360;
pub const SUPERBLOCK_SIZE: usize = 364;

/// Data block size limits of the thin-pool target, in sectors.
pub const MIN_DATA_BLOCK_SIZE: u32 = 128;
pub const MAX_DATA_BLOCK_SIZE: u32 = 2_097_152;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub flags: u32,
    pub version: u32,
    pub time: u32,
    pub transaction_id: u64,
    pub held_root: u64,
    pub data_sm_root: SmRoot,
    pub metadata_sm_root: SmRoot,
    pub data_mapping_root: u64,
    pub device_details_root: u64,
    pub data_block_size: u32,
    pub metadata_nr_blocks: u64,
    pub compat_flags: u32,
    pub compat_ro_flags: u32,
    pub incompat_flags: u32,
}

impl Superblock {
    pub fn unpack(b: &Block) -> Self {
        Superblock {
            flags: le32(b, FLAGS),
            version: le32(b, VERSION),
            time: le32(b, TIME),
            transaction_id: le64(b, TRANS_ID),
            held_root: le64(b, HELD_ROOT),
            data_sm_root: SmRoot::unpack(&b[DATA_SPACE_MAP_ROOT..]),
            metadata_sm_root: SmRoot::unpack(&b[METADATA_SPACE_MAP_ROOT..]),
            data_mapping_root: le64(b, DATA_MAPPING_ROOT),
            device_details_root: le64(b, DEVICE_DETAILS_ROOT),
            data_block_size: le32(b, DATA_BLOCK_SIZE),
            metadata_nr_blocks: le64(b, METADATA_NR_BLOCKS),
            compat_flags: le32(b, COMPAT_FLAGS),
            compat_ro_flags: le32(b, COMPAT_RO_FLAGS),
            incompat_flags: le32(b, INCOMPAT_FLAGS),
        }
    }

    /// A whole block: the structure, then zeros (so a torn write of the
    /// first sector still leaves a block that is wholly old or wholly new).
    pub fn pack(&self) -> Box<Block> {
        let mut b = pdata::block_manager::new_block_buffer();
        put_le32(&mut b[..], FLAGS, self.flags);
        put_le64(&mut b[..], MAGIC, THIN_MAGIC);
        put_le32(&mut b[..], VERSION, self.version);
        put_le32(&mut b[..], TIME, self.time);
        put_le64(&mut b[..], TRANS_ID, self.transaction_id);
        put_le64(&mut b[..], HELD_ROOT, self.held_root);
        self.data_sm_root
            .pack(&mut b[DATA_SPACE_MAP_ROOT..DATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE]);
        self.metadata_sm_root
            .pack(&mut b[METADATA_SPACE_MAP_ROOT..METADATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE]);
        put_le64(&mut b[..], DATA_MAPPING_ROOT, self.data_mapping_root);
        put_le64(&mut b[..], DEVICE_DETAILS_ROOT, self.device_details_root);
        put_le32(&mut b[..], DATA_BLOCK_SIZE, self.data_block_size);
        put_le32(&mut b[..], METADATA_BLOCK_SIZE, METADATA_BLOCK_SIZE_SECTORS);
        put_le64(&mut b[..], METADATA_NR_BLOCKS, self.metadata_nr_blocks);
        put_le32(&mut b[..], COMPAT_FLAGS, self.compat_flags);
        put_le32(&mut b[..], COMPAT_RO_FLAGS, self.compat_ro_flags);
        put_le32(&mut b[..], INCOMPAT_FLAGS, self.incompat_flags);
        b
    }

    pub fn needs_check(&self) -> bool {
        self.flags & FLAG_NEEDS_CHECK != 0
    }
}

pub struct SuperblockValidator;
pub static SUPERBLOCK_VALIDATOR: SuperblockValidator = SuperblockValidator;

impl Validator for SuperblockValidator {
    fn name(&self) -> &'static str {
        "thin superblock"
    }

    fn check(&self, loc: u64, data: &Block) -> Result<()> {
        let found = le64(data, BLOCKNR);
        if found != loc {
            return Err(Error::BlockNumber {
                block: loc,
                kind: self.name(),
                found,
            });
        }
        let magic = le64(data, MAGIC);
        if magic != THIN_MAGIC {
            return Err(Error::Magic {
                block: loc,
                kind: self.name(),
                found: magic,
            });
        }
        check_location_and_checksum(self.name(), loc, data, BLOCKNR, SALT_THIN_SUPERBLOCK)
    }

    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()> {
        if le64(data, MAGIC) != THIN_MAGIC {
            return Err(Error::corrupt(
                loc,
                self.name(),
                "writing a superblock without magic",
            ));
        }
        put_le64(data, BLOCKNR, loc);
        seal(data, SALT_THIN_SUPERBLOCK);
        Ok(())
    }
}
