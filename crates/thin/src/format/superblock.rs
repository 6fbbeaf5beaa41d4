//! The thin-pool superblock: block 0, and the metadata snapshot's copy.
//!
//! ```text
//! offset size field
//!      0    4 csum                     crc32c of bytes 4..4096 ^ salt 160774
//!      4    4 flags                    bit 0: NEEDS_CHECK
//!      8    8 blocknr                  its own location
//!     16   16 uuid                     zeros
//!     32    8 magic                    27022010
//!     40    4 version                  2 (1 has the same layout)
//!     44    4 time                     snapshot time counter
//!     48    8 trans_id                 userspace transaction id
//!     56    8 held_root                metadata snapshot's copy, 0 = none
//!     64  128 data_space_map_root      disk_sm_root (32 bytes used)
//!    192  128 metadata_space_map_root  disk_sm_root (32 bytes used)
//!    320    8 data_mapping_root        top level of the mapping tree
//!    328    8 device_details_root      details tree
//!    336    4 data_block_size          sectors
//!    340    4 metadata_block_size      8 sectors
//!    344    8 metadata_nr_blocks       at format time only
//!    352    4 compat_flags
//!    356    4 compat_ro_flags
//!    360    4 incompat_flags
//!    364      zeros to the end of the block
//! ```
//!
//! One reader for every client of the format ([`read_superblock`],
//! [`Superblock::decode`]): block number, then magic, then checksum, as
//! the kernel checks them. Nobody checks the version on read (the kernel
//! writes 2 and never reads it): [`Superblock::unsupported`] says what a
//! caller may refuse.

use pdata::block_manager::{le32, le64, put_le32, put_le64, Validator};
use pdata::checksum::{seal, verify, SALT_THIN_SUPERBLOCK};
use pdata::io::{BlockDevice, SECTOR_SIZE};
use pdata::space_map::format::{SmRoot, MAX_METADATA_BLOCKS, SM_ROOT_AREA_SIZE, SM_ROOT_SIZE};
use pdata::{Block, Error, Result, BLOCK_SIZE};

pub const SUPERBLOCK_LOCATION: u64 = 0;
pub const THIN_MAGIC: u64 = 27_022_010;
/// The version the kernel writes (v1 and v2 share the layout).
pub const THIN_VERSION: u32 = 2;
/// Versions with the layout we know.
pub const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 1..=THIN_VERSION;
pub const METADATA_BLOCK_SIZE_SECTORS: u32 = (BLOCK_SIZE / SECTOR_SIZE) as u32;
/// Largest metadata device the kernel uses, in sectors
/// (`THIN_METADATA_MAX_SECTORS`): what the metadata space map can describe.
pub const MAX_METADATA_SECTORS: u64 = MAX_METADATA_BLOCKS * METADATA_BLOCK_SIZE_SECTORS as u64;

pub const FLAG_NEEDS_CHECK: u32 = 1;

const U32: usize = 4;
const U64: usize = 8;
const UUID_SIZE: usize = 16;

pub const CSUM: usize = 0;
pub const FLAGS: usize = CSUM + U32;
pub const BLOCKNR: usize = FLAGS + U32;
pub const UUID: usize = BLOCKNR + U64;
pub const MAGIC: usize = UUID + UUID_SIZE;
pub const VERSION: usize = MAGIC + U64;
pub const TIME: usize = VERSION + U32;
pub const TRANS_ID: usize = TIME + U32;
pub const HELD_ROOT: usize = TRANS_ID + U64;
pub const DATA_SPACE_MAP_ROOT: usize = HELD_ROOT + U64;
pub const METADATA_SPACE_MAP_ROOT: usize = DATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE;
pub const DATA_MAPPING_ROOT: usize = METADATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE;
pub const DEVICE_DETAILS_ROOT: usize = DATA_MAPPING_ROOT + U64;
pub const DATA_BLOCK_SIZE: usize = DEVICE_DETAILS_ROOT + U64;
pub const METADATA_BLOCK_SIZE: usize = DATA_BLOCK_SIZE + U32;
pub const METADATA_NR_BLOCKS: usize = METADATA_BLOCK_SIZE + U32;
pub const COMPAT_FLAGS: usize = METADATA_NR_BLOCKS + U64;
pub const COMPAT_RO_FLAGS: usize = COMPAT_FLAGS + U32;
pub const INCOMPAT_FLAGS: usize = COMPAT_RO_FLAGS + U32;
pub const SUPERBLOCK_SIZE: usize = INCOMPAT_FLAGS + U32;

// The layout of dm-thin-metadata.c's `thin_disk_superblock`.
const _: () = assert!(MAGIC == 32 && DATA_SPACE_MAP_ROOT == 64 && DATA_MAPPING_ROOT == 320);
const _: () = assert!(SUPERBLOCK_SIZE == 364);
const _: () = assert!(SM_ROOT_SIZE <= SM_ROOT_AREA_SIZE);
// A superblock write is atomic only because the structure fits in the
// first sector and the rest of the block is zero (DESIGN.md, point 4).
const _: () = assert!(SUPERBLOCK_SIZE <= SECTOR_SIZE);
const _: () = assert!(MAX_METADATA_SECTORS == 33_292_800);

/// Data block size limits of the thin-pool target, in sectors: a multiple
/// of 64 KiB from 64 KiB to 1 GiB.
pub const DATA_BLOCK_SIZE_MULTIPLE: u32 = 128;
pub const MIN_DATA_BLOCK_SIZE: u32 = DATA_BLOCK_SIZE_MULTIPLE;
pub const MAX_DATA_BLOCK_SIZE: u32 = 2_097_152;
const _: () = assert!(MAX_DATA_BLOCK_SIZE.is_multiple_of(DATA_BLOCK_SIZE_MULTIPLE));

/// A data block size the thin-pool target accepts.
pub fn valid_data_block_size(sectors: u32) -> bool {
    (MIN_DATA_BLOCK_SIZE..=MAX_DATA_BLOCK_SIZE).contains(&sectors)
        && sectors.is_multiple_of(DATA_BLOCK_SIZE_MULTIPLE)
}

/// Why a data block size is refused.
pub fn data_block_size_error(sectors: u32) -> String {
    format!(
        "data block size {sectors} sectors: it must be a multiple of {DATA_BLOCK_SIZE_MULTIPLE} between {MIN_DATA_BLOCK_SIZE} and {MAX_DATA_BLOCK_SIZE}"
    )
}

/// Why a block is not a superblock. The text completes "the superblock ...".
#[derive(Debug, thiserror::Error)]
pub enum SuperblockError {
    #[error("cannot be read: {0}")]
    Io(#[source] std::io::Error),
    #[error("is all zeroes (unformatted metadata)")]
    Unformatted,
    #[error("claims to be block {found}")]
    BlockNumber { found: u64 },
    #[error("has magic {found}, not {THIN_MAGIC}")]
    Magic { found: u64 },
    #[error("has a bad checksum")]
    Checksum,
}

impl SuperblockError {
    /// The engine's error for the block at `loc`, worded as its validators
    /// word it.
    pub fn at(self, loc: u64) -> Error {
        let kind = SUPERBLOCK_VALIDATOR.name();
        match self {
            SuperblockError::Io(source) => Error::Io {
                op: "reading",
                block: loc,
                source,
            },
            // What the validator finds in a zeroed block.
            SuperblockError::Unformatted if loc == 0 => Error::Magic {
                block: loc,
                kind,
                found: 0,
            },
            SuperblockError::Unformatted => Error::BlockNumber {
                block: loc,
                kind,
                found: 0,
            },
            SuperblockError::BlockNumber { found } => Error::BlockNumber {
                block: loc,
                kind,
                found,
            },
            SuperblockError::Magic { found } => Error::Magic {
                block: loc,
                kind,
                found,
            },
            SuperblockError::Checksum => Error::Checksum { block: loc, kind },
        }
    }
}

/// What a valid superblock asks that the tools do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("unknown metadata version {0}")]
    Version(u32),
    #[error("unsupported incompatible features {0:#x}")]
    Incompatible(u32),
    #[error("{}", data_block_size_error(*.0))]
    DataBlockSize(u32),
}

/// Block `loc` as read from `dev`.
pub fn read_block(dev: &dyn BlockDevice, loc: u64) -> std::io::Result<Box<Block>> {
    let mut b = pdata::block_manager::new_block_buffer();
    dev.read_block(loc, &mut b)?;
    Ok(b)
}

/// The superblock at `loc` (block 0, or a metadata snapshot's copy),
/// validated.
pub fn read_superblock(dev: &dyn BlockDevice, loc: u64) -> Result<Superblock, SuperblockError> {
    let b = read_block(dev, loc).map_err(SuperblockError::Io)?;
    Superblock::decode(loc, &b)
}

/// True if `b` carries the thin superblock magic (valid or not).
pub fn has_thin_magic(b: &Block) -> bool {
    le64(b, MAGIC) == THIN_MAGIC
}

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
    /// Checks block number, magic and checksum of a block read from `loc`,
    /// in the kernel's order.
    pub fn validate(loc: u64, b: &Block) -> Result<(), SuperblockError> {
        let found = le64(b, BLOCKNR);
        if found != loc {
            return Err(SuperblockError::BlockNumber { found });
        }
        let found = le64(b, MAGIC);
        if found != THIN_MAGIC {
            return Err(SuperblockError::Magic { found });
        }
        if !verify(b, SALT_THIN_SUPERBLOCK) {
            return Err(SuperblockError::Checksum);
        }
        Ok(())
    }

    /// The superblock in a block read from `loc`, validated; a zeroed
    /// block is told apart (a device never formatted).
    pub fn decode(loc: u64, b: &Block) -> Result<Superblock, SuperblockError> {
        if b.iter().all(|&x| x == 0) {
            return Err(SuperblockError::Unformatted);
        }
        Self::validate(loc, b)?;
        Ok(Self::unpack(b))
    }

    /// The fields, unchecked (a damaged block's fields are hints).
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
            .pack(&mut b[DATA_SPACE_MAP_ROOT..METADATA_SPACE_MAP_ROOT]);
        self.metadata_sm_root
            .pack(&mut b[METADATA_SPACE_MAP_ROOT..DATA_MAPPING_ROOT]);
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

    /// What a reader may refuse: a version whose layout we do not know,
    /// incompatible features. (The kernel checks only the features.)
    pub fn unsupported(&self) -> Vec<Unsupported> {
        let mut out = Vec::new();
        if !SUPPORTED_VERSIONS.contains(&self.version) {
            out.push(Unsupported::Version(self.version));
        }
        if self.incompat_flags != 0 {
            out.push(Unsupported::Incompatible(self.incompat_flags));
        }
        // dm-thin refuses a pool whose blocks it cannot take.
        if !valid_data_block_size(self.data_block_size) {
            out.push(Unsupported::DataBlockSize(self.data_block_size));
        }
        out
    }
}

pub struct SuperblockValidator;
pub static SUPERBLOCK_VALIDATOR: SuperblockValidator = SuperblockValidator;

impl Validator for SuperblockValidator {
    fn name(&self) -> &'static str {
        "thin superblock"
    }

    fn check(&self, loc: u64, data: &Block) -> Result<()> {
        Superblock::validate(loc, data).map_err(|e| e.at(loc))
    }

    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()> {
        if !has_thin_magic(data) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use pdata::io::MemoryDevice;

    fn sealed(sb: &Superblock, loc: u64) -> Box<Block> {
        let mut b = sb.pack();
        SUPERBLOCK_VALIDATOR.prepare_for_write(loc, &mut b).unwrap();
        b
    }

    fn sample() -> Superblock {
        Superblock {
            flags: FLAG_NEEDS_CHECK,
            version: THIN_VERSION,
            time: 3,
            transaction_id: 7,
            held_root: 9,
            data_sm_root: SmRoot {
                nr_blocks: 100,
                nr_allocated: 5,
                bitmap_root: 11,
                ref_count_root: 12,
            },
            metadata_sm_root: SmRoot {
                nr_blocks: 200,
                nr_allocated: 6,
                bitmap_root: 1,
                ref_count_root: 2,
            },
            data_mapping_root: 20,
            device_details_root: 21,
            data_block_size: 128,
            metadata_nr_blocks: 200,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
        }
    }

    #[test]
    fn round_trip_and_errors_in_the_kernels_order() {
        let sb = sample();
        let b = sealed(&sb, 5);
        assert_eq!(Superblock::decode(5, &b).unwrap(), sb);
        assert!(b[SUPERBLOCK_SIZE..].iter().all(|&x| x == 0));
        assert!(matches!(
            Superblock::decode(4, &b),
            Err(SuperblockError::BlockNumber { found: 5 })
        ));
        let mut bad = b.clone();
        put_le64(&mut bad[..], MAGIC, 1);
        assert!(matches!(
            Superblock::decode(5, &bad),
            Err(SuperblockError::Magic { found: 1 })
        ));
        let mut bad = b.clone();
        bad[BLOCK_SIZE - 1] = 1;
        assert!(matches!(
            Superblock::decode(5, &bad),
            Err(SuperblockError::Checksum)
        ));
        let zero = [0u8; BLOCK_SIZE];
        assert!(matches!(
            Superblock::decode(0, &zero),
            Err(SuperblockError::Unformatted)
        ));
        // The engine's wording, as the validator gives it.
        for loc in [0, 3] {
            let by_validator = SUPERBLOCK_VALIDATOR.check(loc, &zero).unwrap_err();
            let ours = SuperblockError::Unformatted.at(loc);
            assert_eq!(ours.to_string(), by_validator.to_string());
        }
        let dev = MemoryDevice::from_image(b.to_vec());
        assert!(matches!(
            read_superblock(&dev, 1),
            Err(SuperblockError::Io(_))
        ));
    }

    #[test]
    fn unsupported_versions_and_features() {
        let mut sb = sample();
        assert!(sb.unsupported().is_empty());
        sb.version = 3;
        sb.incompat_flags = 4;
        let why: Vec<String> = sb.unsupported().iter().map(|u| u.to_string()).collect();
        assert_eq!(
            why,
            [
                "unknown metadata version 3",
                "unsupported incompatible features 0x4"
            ]
        );
    }

    #[test]
    fn data_block_sizes() {
        assert!(valid_data_block_size(128) && valid_data_block_size(2_097_152));
        assert!(!valid_data_block_size(64) && !valid_data_block_size(192 + 1));
        assert!(!valid_data_block_size(2_097_152 + 128));
    }
}
