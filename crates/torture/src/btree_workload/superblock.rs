//! The B-tree workload's own superblock, in block 0:
//!
//! ```text
//!   0  csum      u32   checksum of bytes 4.., salted
//!   4  (pad)     u32
//!   8  blocknr   u64   0: where it is
//!  16  magic     u64
//!  24  txn       u64   transaction number
//!  32  sm_root   128   the metadata space map's root
//! 160  roots     3 x u64: the slots' tree roots (0: empty slot)
//! 184  (zero)
//! ```

use pdata::block_manager::{
    check_location_and_checksum, le64, new_block_buffer, put_le64, BlockManager, Validator,
};
use pdata::checksum::seal;
use pdata::space_map::format::{SmRoot, SM_ROOT_AREA_SIZE};
use pdata::{Block, Error};

/// Tree slots the superblock holds.
pub const SLOTS: usize = 3;

const SALT: u32 = 0x7072_7475;
const MAGIC: u64 = 0x6572_7574_726f_7421;
const SB_BLOCKNR: usize = 8;
const SB_MAGIC: usize = SB_BLOCKNR + 8;
const SB_TXN: usize = SB_MAGIC + 8;
const SB_SM_ROOT: usize = SB_TXN + 8;
const SB_ROOTS: usize = SB_SM_ROOT + SM_ROOT_AREA_SIZE;
const SB_END: usize = SB_ROOTS + 8 * SLOTS;
// A torn block 0 is wholly old or wholly new only if the superblock fits
// in its first sector.
const _: () = assert!(SB_END <= 512);

pub struct TortureSuperblock;
pub static SUPERBLOCK: TortureSuperblock = TortureSuperblock;

impl Validator for TortureSuperblock {
    fn name(&self) -> &'static str {
        "torture superblock"
    }
    fn check(&self, loc: u64, data: &Block) -> pdata::Result<()> {
        let found = le64(data, SB_MAGIC);
        if found != MAGIC {
            return Err(Error::Magic {
                block: loc,
                kind: self.name(),
                found,
            });
        }
        check_location_and_checksum(self.name(), loc, data, SB_BLOCKNR, SALT)
    }
    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> pdata::Result<()> {
        put_le64(data, SB_BLOCKNR, loc);
        put_le64(data, SB_MAGIC, MAGIC);
        seal(data, SALT);
        Ok(())
    }
}

pub struct Superblock {
    pub txn: u64,
    pub sm: SmRoot,
    pub roots: [u64; SLOTS],
}

pub fn pack_superblock(sb: &Superblock) -> Box<Block> {
    let mut b = new_block_buffer();
    put_le64(&mut b[..], SB_TXN, sb.txn);
    sb.sm
        .pack(&mut b[SB_SM_ROOT..SB_SM_ROOT + SM_ROOT_AREA_SIZE]);
    for (i, r) in sb.roots.iter().enumerate() {
        put_le64(&mut b[..], SB_ROOTS + 8 * i, *r);
    }
    b
}

pub fn read_superblock(bm: &BlockManager) -> pdata::Result<Superblock> {
    let b = bm.read_lock(0, &SUPERBLOCK)?;
    let mut roots = [0; SLOTS];
    for (i, r) in roots.iter_mut().enumerate() {
        *r = le64(&b[..], SB_ROOTS + 8 * i);
    }
    Ok(Superblock {
        txn: le64(&b[..], SB_TXN),
        sm: SmRoot::unpack(&b[SB_SM_ROOT..]),
        roots,
    })
}
