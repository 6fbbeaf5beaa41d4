//! `writeset_disk`: a writeset as the superblock and the writeset tree hold
//! it, 12 bytes packed, and the tree's value type.
//!
//! ```text
//!  0  nr_bits  le32  bits in the bitset
//!  4  root     le64  dm-bitset root (0 in the superblock: no writeset)
//! 12  end
//! ```

use pdata::block_manager::{le32, le64, put_le32, put_le64};
use pdata::btree::ValueType;
use pdata::tm_ops::TransactionOps;
use pdata::{bitset, Result};

pub const NR_BITS: usize = 0;
pub const ROOT: usize = NR_BITS + 4;
pub const WRITESET_DISK_SIZE: usize = ROOT + 8;

const _: () = assert!(WRITESET_DISK_SIZE == 12);

/// The superblock's "no current writeset" (`INVALID_WRITESET_ROOT`).
pub const NO_WRITESET: u64 = 0;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WritesetDisk {
    pub nr_bits: u32,
    pub root: u64,
}

impl WritesetDisk {
    pub fn unpack(b: &[u8]) -> Self {
        WritesetDisk {
            nr_bits: le32(b, NR_BITS),
            root: le64(b, ROOT),
        }
    }

    pub fn pack(&self, b: &mut [u8]) {
        put_le32(b, NR_BITS, self.nr_bits);
        put_le64(b, ROOT, self.root);
    }

    pub fn to_bytes(self) -> [u8; WRITESET_DISK_SIZE] {
        let mut b = [0u8; WRITESET_DISK_SIZE];
        self.pack(&mut b);
        b
    }
}

/// The writeset tree's values: each holds one reference on its bitset; a
/// released value drops that reference (deleting the bitset when it was
/// the last).
pub struct WritesetValue;

impl ValueType for WritesetValue {
    fn size(&self) -> usize {
        WRITESET_DISK_SIZE
    }

    fn inc(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        for v in values.chunks_exact(WRITESET_DISK_SIZE) {
            tm.inc(WritesetDisk::unpack(v).root)?;
        }
        Ok(())
    }

    fn dec(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        for v in values.chunks_exact(WRITESET_DISK_SIZE) {
            bitset::delete(tm, WritesetDisk::unpack(v).root)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let w = WritesetDisk {
            nr_bits: 0x0102_0304,
            root: 0x1122_3344_5566_7788,
        };
        let b = w.to_bytes();
        assert_eq!(b[..4], [4, 3, 2, 1]);
        assert_eq!(b[4], 0x88);
        assert_eq!(WritesetDisk::unpack(&b), w);
    }
}
