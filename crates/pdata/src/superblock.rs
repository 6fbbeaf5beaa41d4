//! What every client's superblock validator shares (thin, cache, era): the
//! kernel's check order (block number, then magic, then checksum) and the
//! stamp before a write. The client adds its own checks (version, ...).
//!
//! The three share the header too (then each goes its own way):
//!
//! ```text
//!  0  csum     le32  CRC-32C of bytes 4..4096 ^ the client's salt
//!  4  flags    le32
//!  8  blocknr  le64  the block's own number
//! 16  uuid     16 B
//! 32  magic    le64  the client's
//! 40  version  le32
//! 44  (the client's fields)
//! ```

use crate::block_manager::{le64, put_le64};
use crate::checksum::{seal, verify};
use crate::{Block, Error, Result};

pub const UUID_SIZE: usize = 16;
pub const CSUM: usize = 0;
pub const FLAGS: usize = CSUM + 4;
pub const BLOCKNR: usize = FLAGS + 4;
pub const UUID: usize = BLOCKNR + 8;
pub const MAGIC: usize = UUID + UUID_SIZE;
pub const VERSION: usize = MAGIC + 8;
/// Where the client's own fields start.
pub const HEADER_END: usize = VERSION + 4;

const _: () = assert!(MAGIC == 32 && HEADER_END == 44);

/// Where a client's superblock keeps its block number and magic, and its salt.
pub struct SuperblockId {
    /// The block type's name in errors.
    pub kind: &'static str,
    pub blocknr_offset: usize,
    pub magic_offset: usize,
    pub magic: u64,
    pub salt: u32,
}

impl SuperblockId {
    /// Block number, magic, checksum: the kernel's order, so the first
    /// error reported is the kernel's.
    pub fn check(&self, loc: u64, data: &Block) -> Result<()> {
        let found = le64(data, self.blocknr_offset);
        if found != loc {
            return Err(Error::BlockNumber {
                block: loc,
                kind: self.kind,
                found,
            });
        }
        let magic = le64(data, self.magic_offset);
        if magic != self.magic {
            return Err(Error::Magic {
                block: loc,
                kind: self.kind,
                found: magic,
            });
        }
        if !verify(data, self.salt) {
            return Err(Error::Checksum {
                block: loc,
                kind: self.kind,
            });
        }
        Ok(())
    }

    /// Stamps the location and the checksum; refuses a block without the
    /// magic (nothing malformed is written).
    pub fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()> {
        if le64(data, self.magic_offset) != self.magic {
            return Err(Error::corrupt(
                loc,
                self.kind,
                "writing a superblock without magic",
            ));
        }
        put_le64(data, self.blocknr_offset, loc);
        seal(data, self.salt);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_manager::new_block_buffer;

    const ID: SuperblockId = SuperblockId {
        kind: "test superblock",
        blocknr_offset: 8,
        magic_offset: 32,
        magic: 77,
        salt: 5,
    };

    #[test]
    fn order_of_checks() {
        let mut b = new_block_buffer();
        assert!(ID.prepare_for_write(0, &mut b).is_err());
        put_le64(&mut b[..], 32, 77);
        ID.prepare_for_write(3, &mut b).unwrap();
        ID.check(3, &b).unwrap();
        assert!(matches!(ID.check(4, &b), Err(Error::BlockNumber { .. })));
        let mut m = b.clone();
        put_le64(&mut m[..], 32, 78);
        assert!(matches!(ID.check(3, &m), Err(Error::Magic { .. })));
        let mut c = b.clone();
        c[100] ^= 1;
        assert!(matches!(ID.check(3, &c), Err(Error::Checksum { .. })));
    }
}
