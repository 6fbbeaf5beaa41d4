//! The metadata pack format, version 3: the archive `thin_metadata_pack`
//! writes (the established 1.x format, so that packs travel between tools).
//!
//! ```text
//! file:
//! +-----------+-----------+-------------+-------------+--------------------------+
//! | 0         | 8         | 16          | 24          | 32                       |
//! | magic u64 | version   | block_size  | nr_blocks   | chunks, to end of file   |
//! |           | u64 (= 3) | u64 (=4096) | u64         |                          |
//! +-----------+-----------+-------------+-------------+--------------------------+
//! chunk:
//! +-------------+----------------------------------------------+
//! | len u64     | len bytes: one whole zlib stream (RFC 1950)  |
//! +-------------+----------------------------------------------+
//! a chunk's stream, inflated: entries back to back, to its end:
//! +----------------+-------------------------------------------+
//! | block u64      | instructions that rebuild the 4096 bytes  |
//! +----------------+-------------------------------------------+
//! ```
//!
//! Every integer is little-endian. `nr_blocks` sizes the unpacked file;
//! blocks no entry names are zero. Chunks come in any order, and so do the
//! entries within them.
//!
//! Instructions: one byte, the tag in the high nibble and an operand
//! nibble `n` in the low one, then operand bytes. A small machine runs them
//! with a 64-bit register `base` (0 at the start of each block, all sums
//! wrapping); "emit" appends `base` as 8 little-endian bytes. A block ends
//! when exactly 4096 bytes were emitted.
//!
//! ```text
//! tag  name        operands          effect (x times, x = 1 unless COUNT)
//! 0    SET         n-byte value v    base = v; emit
//! 1    POS         -                 base += n; emit
//! 2    POS_W       n-byte delta d    base += d; emit
//! 3    NEG         -                 base -= n; emit
//! 4    NEG_W       n-byte delta d    base -= d; emit
//! 5    CONST       -                 emit, n times (its own count)
//! 6    CONST8      byte b            emit, (n << 8 | b) times
//! 7    COUNT       -                 the next instruction runs n times
//! 8    COUNT8      byte b            ... (n << 8 | b) times
//! 9    LIT         n bytes           append the bytes
//! 10   LIT_W       n-byte length l   append the l bytes that follow
//! 11   SHIFTED     byte b            len = n << 8 | b; run instructions
//!                                    for len u64s `hi`, then for len u64s
//!                                    `lo`; append (hi << 24) | (lo & 2^24-1)
//!                                    for each (base is not changed)
//! ```
//!
//! Widths (`n` of SET, POS_W, NEG_W, LIT_W) are 1, 2, 4 or 8 bytes.
//! Which blocks are packed: each whose checksum names one of the kinds of
//! [`crate::checksum::identify`] (thin, cache or era superblock, B-tree
//! node, space-map bitmap or index, array block), wherever it lies.

use crate::BLOCK_SIZE;

/// First 8 bytes of every pack.
pub const MAGIC: u64 = 0xa537_a0aa_6309_ef77;
/// The one version written and read.
pub const VERSION: u64 = 3;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + size_of::<u64>();
pub const BLOCK_SIZE_OFFSET: usize = VERSION_OFFSET + size_of::<u64>();
pub const NR_BLOCKS_OFFSET: usize = BLOCK_SIZE_OFFSET + size_of::<u64>();
pub const HEADER_SIZE: usize = NR_BLOCKS_OFFSET + size_of::<u64>();
const _: () = assert!(HEADER_SIZE == 32);

/// Bytes of a chunk's length field, and of an entry's block number.
pub const LEN_SIZE: usize = size_of::<u64>();

/// Packed blocks per chunk (as the established tool writes them): enough
/// for zlib to find the repetitions between blocks.
pub const BLOCKS_PER_CHUNK: usize = 1024;

/// Largest inflated chunk accepted: a block's worst encoding (every u64 a
/// SET of width 8, keys and values) stays under 8 KiB, so 1024 of them
/// fit with a wide margin; anything larger is a corrupt (or hostile) pack.
pub const MAX_INFLATED_CHUNK: usize = 64 << 20;
/// Largest compressed chunk accepted (zlib never grows data by much).
pub const MAX_CHUNK_LEN: u64 = MAX_INFLATED_CHUNK as u64;

/// Largest `nr_blocks` accepted: 2^32 blocks (16 TiB), far past any
/// metadata device the kernel uses (16 GiB).
pub const MAX_NR_BLOCKS: u64 = 1 << 32;

/// Instruction tags (high nibble).
pub mod tag {
    pub const SET: u8 = 0;
    pub const POS: u8 = 1;
    pub const POS_W: u8 = 2;
    pub const NEG: u8 = 3;
    pub const NEG_W: u8 = 4;
    pub const CONST: u8 = 5;
    pub const CONST8: u8 = 6;
    pub const COUNT: u8 = 7;
    pub const COUNT8: u8 = 8;
    pub const LIT: u8 = 9;
    pub const LIT_W: u8 = 10;
    pub const SHIFTED: u8 = 11;
}

/// Largest count a COUNT8 or CONST8 holds (12 bits).
pub const MAX_COUNT: usize = 0xfff;
/// Low bits of a SHIFTED value taken from its `lo` run.
pub const SHIFT: u32 = 24;
pub const LOW_MASK: u64 = (1 << SHIFT) - 1;

/// Header of a pack of `nr_blocks` blocks.
pub fn header(nr_blocks: u64) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC.to_le_bytes());
    h[VERSION_OFFSET..BLOCK_SIZE_OFFSET].copy_from_slice(&VERSION.to_le_bytes());
    h[BLOCK_SIZE_OFFSET..NR_BLOCKS_OFFSET].copy_from_slice(&(BLOCK_SIZE as u64).to_le_bytes());
    h[NR_BLOCKS_OFFSET..HEADER_SIZE].copy_from_slice(&nr_blocks.to_le_bytes());
    h
}

/// What is wrong with a pack's header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("not a metadata pack (it holds only {0} bytes)")]
    TooShort(usize),
    #[error("not a metadata pack (bad magic {0:#018x})")]
    Magic(u64),
    #[error("unsupported pack version {0} (this tool reads version {VERSION})")]
    Version(u64),
    #[error("unsupported block size {0} (metadata blocks are {BLOCK_SIZE} bytes)")]
    BlockSize(u64),
    #[error("the pack holds no blocks")]
    Empty,
    #[error("the pack claims {0} blocks, more than any metadata device ({MAX_NR_BLOCKS})")]
    TooLarge(u64),
}

fn le64_at(h: &[u8; HEADER_SIZE], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[off..off + 8]);
    u64::from_le_bytes(b)
}

/// The number of blocks a pack's header declares, once every field checks.
pub fn parse_header(h: &[u8; HEADER_SIZE]) -> Result<u64, HeaderError> {
    let magic = le64_at(h, MAGIC_OFFSET);
    if magic != MAGIC {
        return Err(HeaderError::Magic(magic));
    }
    let version = le64_at(h, VERSION_OFFSET);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    let bs = le64_at(h, BLOCK_SIZE_OFFSET);
    if bs != BLOCK_SIZE as u64 {
        return Err(HeaderError::BlockSize(bs));
    }
    match le64_at(h, NR_BLOCKS_OFFSET) {
        0 => Err(HeaderError::Empty),
        n if n > MAX_NR_BLOCKS => Err(HeaderError::TooLarge(n)),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = header(31250);
        assert_eq!(&h[..8], &[0x77, 0xef, 0x09, 0x63, 0xaa, 0xa0, 0x37, 0xa5]);
        assert_eq!(parse_header(&h), Ok(31250));
        let mut bad = h;
        bad[0] ^= 1;
        assert!(matches!(parse_header(&bad), Err(HeaderError::Magic(_))));
        let mut bad = h;
        bad[VERSION_OFFSET] = 2;
        assert_eq!(parse_header(&bad), Err(HeaderError::Version(2)));
        let mut bad = h;
        bad[BLOCK_SIZE_OFFSET + 1] = 0x20;
        assert_eq!(parse_header(&bad), Err(HeaderError::BlockSize(8192)));
        assert_eq!(parse_header(&header(0)), Err(HeaderError::Empty));
        assert!(matches!(
            parse_header(&header(MAX_NR_BLOCKS + 1)),
            Err(HeaderError::TooLarge(_))
        ));
    }
}
