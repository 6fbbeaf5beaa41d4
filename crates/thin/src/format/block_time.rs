//! A mapping value (leaf value of a device's mapping tree): one le64.
//!
//! ```text
//! bit 63           24 23       0
//!     | data block    | time     |
//!     |   40 bits     | 24 bits  |
//! ```

/// Bits of the snapshot time in a block_time.
pub const TIME_BITS: u32 = 24;
pub const MAX_TIME: u32 = (1 << TIME_BITS) - 1;
/// Data block numbers fit in the remaining bits.
pub const DATA_BLOCK_BITS: u32 = u64::BITS - TIME_BITS;
pub const MAX_DATA_BLOCK: u64 = (1 << DATA_BLOCK_BITS) - 1;
/// The packed value's size.
pub const BLOCK_TIME_SIZE: usize = 8;

const _: () = assert!(DATA_BLOCK_BITS == 40);
const _: () = assert!(BLOCK_TIME_SIZE * 8 == (TIME_BITS + DATA_BLOCK_BITS) as usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTime {
    pub block: u64,
    pub time: u32,
}

impl BlockTime {
    pub fn pack(&self) -> u64 {
        debug_assert!(self.block <= MAX_DATA_BLOCK && self.time <= MAX_TIME);
        (self.block << TIME_BITS) | self.time as u64
    }

    pub fn unpack(v: u64) -> Self {
        BlockTime {
            block: v >> TIME_BITS,
            time: (v & MAX_TIME as u64) as u32,
        }
    }

    pub fn from_bytes(b: &[u8]) -> Self {
        Self::unpack(pdata::block_manager::le64(b, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let bt = BlockTime {
            block: 3000,
            time: 1,
        };
        assert_eq!(bt.pack(), (3000 << 24) | 1);
        assert_eq!(BlockTime::unpack(bt.pack()), bt);
    }
}
