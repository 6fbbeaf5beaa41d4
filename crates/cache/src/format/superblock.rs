//! The dm-cache superblock (block 0): 284 bytes in version 1, 292 in
//! version 2, the rest of the block zero.
//!
//! ```text
//!   0  csum                      le32  CRC-32C of bytes 4..4096 ^ 9031977
//!   4  flags                     le32  bit 0 CLEAN_SHUTDOWN, bit 1 NEEDS_CHECK
//!   8  blocknr                   le64  0
//!  16  uuid                      16 B  zeros
//!  32  magic                     le64  06142003 (octal)
//!  40  version                   le32  1 or 2
//!  44  policy_name               16 B  NUL-terminated, NUL-padded
//!  60  policy_hint_size          le32  0 or 4
//!  64  metadata_space_map_root  128 B
//! 192  mapping_root              le64
//! 200  hint_root                 le64  0: no hint array
//! 208  discard_root              le64
//! 216  discard_block_size        le64  sectors
//! 224  discard_nr_blocks         le64
//! 232  data_block_size           le32  cache block size, sectors
//! 236  metadata_block_size       le32  8
//! 240  cache_blocks              le32
//! 244  compat_flags              le32
//! 248  compat_ro_flags           le32
//! 252  incompat_flags            le32
//! 256  read_hits                 le32
//! 260  read_misses               le32
//! 264  write_hits                le32
//! 268  write_misses              le32
//! 272  policy_version[3]         3 x le32
//! 284  dirty_root                le64  version 2 only (4-byte aligned)
//! 292  end (version 2)
//! ```

use pdata::block_manager::{le32, le64, put_le32, put_le64, Validator};
use pdata::checksum::SALT_CACHE_SUPERBLOCK;
use pdata::space_map::format::{SmRoot, SM_ROOT_AREA_SIZE};
use pdata::superblock::SuperblockId;
use pdata::{Block, Error, Result};

pub const SUPERBLOCK_LOCATION: u64 = 0;
/// 06142003 in octal, as the kernel writes it.
pub const CACHE_MAGIC: u64 = 0o6142003;
pub const MIN_VERSION: u32 = 1;
pub const MAX_VERSION: u32 = 2;
pub const METADATA_BLOCK_SIZE_SECTORS: u32 = 8;
/// Largest metadata device the kernel uses, in sectors (as for dm-thin).
pub const MAX_METADATA_SECTORS: u64 = 255 * 16320 * 8;

pub const FLAG_CLEAN_SHUTDOWN: u32 = 1;
pub const FLAG_NEEDS_CHECK: u32 = 2;

pub const UUID_SIZE: usize = 16;
/// Bytes of the policy name field, the terminating NUL included.
pub const POLICY_NAME_SIZE: usize = 16;
pub const POLICY_VERSION_WORDS: usize = 3;

pub const CSUM: usize = 0;
pub const FLAGS: usize = CSUM + 4;
pub const BLOCKNR: usize = FLAGS + 4;
pub const UUID: usize = BLOCKNR + 8;
pub const MAGIC: usize = UUID + UUID_SIZE;
pub const VERSION: usize = MAGIC + 8;
pub const POLICY_NAME: usize = VERSION + 4;
pub const POLICY_HINT_SIZE: usize = POLICY_NAME + POLICY_NAME_SIZE;
pub const METADATA_SPACE_MAP_ROOT: usize = POLICY_HINT_SIZE + 4;
pub const MAPPING_ROOT: usize = METADATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE;
pub const HINT_ROOT: usize = MAPPING_ROOT + 8;
pub const DISCARD_ROOT: usize = HINT_ROOT + 8;
pub const DISCARD_BLOCK_SIZE: usize = DISCARD_ROOT + 8;
pub const DISCARD_NR_BLOCKS: usize = DISCARD_BLOCK_SIZE + 8;
pub const DATA_BLOCK_SIZE: usize = DISCARD_NR_BLOCKS + 8;
pub const METADATA_BLOCK_SIZE: usize = DATA_BLOCK_SIZE + 4;
pub const CACHE_BLOCKS: usize = METADATA_BLOCK_SIZE + 4;
pub const COMPAT_FLAGS: usize = CACHE_BLOCKS + 4;
pub const COMPAT_RO_FLAGS: usize = COMPAT_FLAGS + 4;
pub const INCOMPAT_FLAGS: usize = COMPAT_RO_FLAGS + 4;
pub const READ_HITS: usize = INCOMPAT_FLAGS + 4;
pub const READ_MISSES: usize = READ_HITS + 4;
pub const WRITE_HITS: usize = READ_MISSES + 4;
pub const WRITE_MISSES: usize = WRITE_HITS + 4;
pub const POLICY_VERSION: usize = WRITE_MISSES + 4;
/// End of the version 1 superblock.
pub const SUPERBLOCK_V1_SIZE: usize = POLICY_VERSION + 4 * POLICY_VERSION_WORDS;
pub const DIRTY_ROOT: usize = SUPERBLOCK_V1_SIZE;
/// End of the version 2 superblock.
pub const SUPERBLOCK_V2_SIZE: usize = DIRTY_ROOT + 8;

const _: () = assert!(MAGIC == 32 && METADATA_SPACE_MAP_ROOT == 64);
const _: () = assert!(MAPPING_ROOT == 192 && DATA_BLOCK_SIZE == 232);
const _: () = assert!(SUPERBLOCK_V1_SIZE == 284 && SUPERBLOCK_V2_SIZE == 292);
// A torn write of block 0 must leave it wholly old or wholly new.
const _: () = assert!(SUPERBLOCK_V2_SIZE <= 512);

/// Cache block size limits of the cache target, in sectors.
pub const MIN_DATA_BLOCK_SIZE: u32 = 64;
pub const MAX_DATA_BLOCK_SIZE: u32 = 2_097_152;
/// The only hint size the kernel's policies use (bytes).
pub const HINT_SIZE: u32 = 4;

/// The policy a cache's hints belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub version: [u32; POLICY_VERSION_WORDS],
    /// Bytes per hint: 0 (no hints) or 4.
    pub hint_size: u32,
}

impl Policy {
    /// The kernel's default policy, smq 2.0.0 with 4-byte hints.
    pub fn smq() -> Policy {
        Policy {
            name: "smq".into(),
            version: [2, 0, 0],
            hint_size: HINT_SIZE,
        }
    }

    /// The policy name as stored: NUL-padded, at most 15 bytes.
    pub fn name_bytes(&self) -> std::result::Result<[u8; POLICY_NAME_SIZE], String> {
        let n = self.name.as_bytes();
        if n.len() >= POLICY_NAME_SIZE || n.contains(&0) {
            return Err(format!(
                "policy name {:?}: at most {} bytes, no NUL",
                self.name,
                POLICY_NAME_SIZE - 1
            ));
        }
        let mut out = [0u8; POLICY_NAME_SIZE];
        out[..n.len()].copy_from_slice(n);
        Ok(out)
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        self.name_bytes()?;
        if self.hint_size != 0 && self.hint_size != HINT_SIZE {
            return Err(format!(
                "hint size {}: only 0 and {HINT_SIZE} are supported",
                self.hint_size
            ));
        }
        Ok(())
    }
}

/// Hit and miss counters the kernel keeps in the superblock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub read_hits: u32,
    pub read_misses: u32,
    pub write_hits: u32,
    pub write_misses: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub flags: u32,
    pub uuid: [u8; UUID_SIZE],
    pub version: u32,
    pub policy_name: [u8; POLICY_NAME_SIZE],
    pub policy_hint_size: u32,
    pub metadata_sm_root: SmRoot,
    pub mapping_root: u64,
    pub hint_root: u64,
    pub discard_root: u64,
    pub discard_block_size: u64,
    pub discard_nr_blocks: u64,
    pub data_block_size: u32,
    pub cache_blocks: u32,
    pub compat_flags: u32,
    pub compat_ro_flags: u32,
    pub incompat_flags: u32,
    pub stats: Stats,
    pub policy_version: [u32; POLICY_VERSION_WORDS],
    /// Version 2 only (0 in version 1).
    pub dirty_root: u64,
}

impl Superblock {
    pub fn unpack(b: &Block) -> Self {
        let version = le32(b, VERSION);
        let mut uuid = [0u8; UUID_SIZE];
        uuid.copy_from_slice(&b[UUID..UUID + UUID_SIZE]);
        let mut policy_name = [0u8; POLICY_NAME_SIZE];
        policy_name.copy_from_slice(&b[POLICY_NAME..POLICY_NAME + POLICY_NAME_SIZE]);
        let mut policy_version = [0u32; POLICY_VERSION_WORDS];
        for (i, v) in policy_version.iter_mut().enumerate() {
            *v = le32(b, POLICY_VERSION + 4 * i);
        }
        Superblock {
            flags: le32(b, FLAGS),
            uuid,
            version,
            policy_name,
            policy_hint_size: le32(b, POLICY_HINT_SIZE),
            metadata_sm_root: SmRoot::unpack(&b[METADATA_SPACE_MAP_ROOT..]),
            mapping_root: le64(b, MAPPING_ROOT),
            hint_root: le64(b, HINT_ROOT),
            discard_root: le64(b, DISCARD_ROOT),
            discard_block_size: le64(b, DISCARD_BLOCK_SIZE),
            discard_nr_blocks: le64(b, DISCARD_NR_BLOCKS),
            data_block_size: le32(b, DATA_BLOCK_SIZE),
            cache_blocks: le32(b, CACHE_BLOCKS),
            compat_flags: le32(b, COMPAT_FLAGS),
            compat_ro_flags: le32(b, COMPAT_RO_FLAGS),
            incompat_flags: le32(b, INCOMPAT_FLAGS),
            stats: Stats {
                read_hits: le32(b, READ_HITS),
                read_misses: le32(b, READ_MISSES),
                write_hits: le32(b, WRITE_HITS),
                write_misses: le32(b, WRITE_MISSES),
            },
            policy_version,
            dirty_root: if version >= 2 { le64(b, DIRTY_ROOT) } else { 0 },
        }
    }

    /// A whole block: the structure, then zeros (so a torn write of the
    /// first sector still leaves a block that is wholly old or wholly new).
    pub fn pack(&self) -> Box<Block> {
        let mut b = pdata::block_manager::new_block_buffer();
        put_le32(&mut b[..], FLAGS, self.flags);
        b[UUID..UUID + UUID_SIZE].copy_from_slice(&self.uuid);
        put_le64(&mut b[..], MAGIC, CACHE_MAGIC);
        put_le32(&mut b[..], VERSION, self.version);
        b[POLICY_NAME..POLICY_NAME + POLICY_NAME_SIZE].copy_from_slice(&self.policy_name);
        put_le32(&mut b[..], POLICY_HINT_SIZE, self.policy_hint_size);
        self.metadata_sm_root
            .pack(&mut b[METADATA_SPACE_MAP_ROOT..METADATA_SPACE_MAP_ROOT + SM_ROOT_AREA_SIZE]);
        put_le64(&mut b[..], MAPPING_ROOT, self.mapping_root);
        put_le64(&mut b[..], HINT_ROOT, self.hint_root);
        put_le64(&mut b[..], DISCARD_ROOT, self.discard_root);
        put_le64(&mut b[..], DISCARD_BLOCK_SIZE, self.discard_block_size);
        put_le64(&mut b[..], DISCARD_NR_BLOCKS, self.discard_nr_blocks);
        put_le32(&mut b[..], DATA_BLOCK_SIZE, self.data_block_size);
        put_le32(&mut b[..], METADATA_BLOCK_SIZE, METADATA_BLOCK_SIZE_SECTORS);
        put_le32(&mut b[..], CACHE_BLOCKS, self.cache_blocks);
        put_le32(&mut b[..], COMPAT_FLAGS, self.compat_flags);
        put_le32(&mut b[..], COMPAT_RO_FLAGS, self.compat_ro_flags);
        put_le32(&mut b[..], INCOMPAT_FLAGS, self.incompat_flags);
        put_le32(&mut b[..], READ_HITS, self.stats.read_hits);
        put_le32(&mut b[..], READ_MISSES, self.stats.read_misses);
        put_le32(&mut b[..], WRITE_HITS, self.stats.write_hits);
        put_le32(&mut b[..], WRITE_MISSES, self.stats.write_misses);
        for (i, v) in self.policy_version.iter().enumerate() {
            put_le32(&mut b[..], POLICY_VERSION + 4 * i, *v);
        }
        if self.version >= 2 {
            put_le64(&mut b[..], DIRTY_ROOT, self.dirty_root);
        }
        b
    }

    pub fn clean_shutdown(&self) -> bool {
        self.flags & FLAG_CLEAN_SHUTDOWN != 0
    }

    pub fn needs_check(&self) -> bool {
        self.flags & FLAG_NEEDS_CHECK != 0
    }

    /// Version 2 keeps the dirty bits in their own bitset.
    pub fn separate_dirty_bits(&self) -> bool {
        self.version >= 2
    }

    /// The policy fields (the name up to its first NUL).
    pub fn policy(&self) -> Policy {
        let end = self
            .policy_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(POLICY_NAME_SIZE);
        Policy {
            name: String::from_utf8_lossy(&self.policy_name[..end]).into_owned(),
            version: self.policy_version,
            hint_size: self.policy_hint_size,
        }
    }
}

const ID: SuperblockId = SuperblockId {
    kind: "cache superblock",
    blocknr_offset: BLOCKNR,
    magic_offset: MAGIC,
    magic: CACHE_MAGIC,
    salt: SALT_CACHE_SUPERBLOCK,
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
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(Error::corrupt(
                loc,
                self.name(),
                format!("metadata version {version}; only {MIN_VERSION} and {MAX_VERSION} are supported"),
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

    fn sample(version: u32) -> Superblock {
        Superblock {
            flags: FLAG_CLEAN_SHUTDOWN,
            uuid: [0; UUID_SIZE],
            version,
            policy_name: Policy::smq().name_bytes().unwrap(),
            policy_hint_size: 4,
            metadata_sm_root: SmRoot::default(),
            mapping_root: 5,
            hint_root: 6,
            discard_root: 7,
            discard_block_size: 128,
            discard_nr_blocks: 99,
            data_block_size: 64,
            cache_blocks: 1000,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
            stats: Stats {
                read_hits: 1,
                read_misses: 2,
                write_hits: 3,
                write_misses: 4,
            },
            policy_version: [2, 0, 0],
            dirty_root: if version == 2 { 8 } else { 0 },
        }
    }

    #[test]
    fn round_trip_both_versions() {
        for v in [1, 2] {
            let sb = sample(v);
            let mut b = sb.pack();
            SUPERBLOCK_VALIDATOR.prepare_for_write(0, &mut b).unwrap();
            SUPERBLOCK_VALIDATOR.check(0, &b).unwrap();
            assert_eq!(Superblock::unpack(&b), sb);
            let end = if v == 1 {
                SUPERBLOCK_V1_SIZE
            } else {
                SUPERBLOCK_V2_SIZE
            };
            assert!(b[end..].iter().all(|&x| x == 0));
            assert_eq!(sb.policy(), Policy::smq());
        }
    }

    #[test]
    fn validator_order() {
        let mut b = sample(2).pack();
        SUPERBLOCK_VALIDATOR.prepare_for_write(0, &mut b).unwrap();
        // Wrong location first, then magic, then checksum, then version.
        assert!(matches!(
            SUPERBLOCK_VALIDATOR.check(3, &b),
            Err(Error::BlockNumber { .. })
        ));
        let mut m = b.clone();
        put_le64(&mut m[..], MAGIC, 1);
        assert!(matches!(
            SUPERBLOCK_VALIDATOR.check(0, &m),
            Err(Error::Magic { .. })
        ));
        let mut c = b.clone();
        c[100] ^= 1;
        assert!(matches!(
            SUPERBLOCK_VALIDATOR.check(0, &c),
            Err(Error::Checksum { .. })
        ));
        let mut v = b.clone();
        put_le32(&mut v[..], VERSION, 3);
        seal(&mut v[..], SALT_CACHE_SUPERBLOCK);
        assert!(matches!(
            SUPERBLOCK_VALIDATOR.check(0, &v),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn policy_names() {
        let mut p = Policy::smq();
        p.name = "a".repeat(15);
        assert!(p.check().is_ok());
        p.name = "a".repeat(16);
        assert!(p.check().is_err());
        p = Policy::smq();
        p.hint_size = 8;
        assert!(p.check().is_err());
    }
}
