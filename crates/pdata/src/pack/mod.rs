//! Metadata packs: a compressed archive of every metadata block of a
//! device (any client's: thin, cache, era), in the established format of
//! the 1.x tools (`format`), for bug reports and transport.
//!
//! [`pack`] reads the device in order and hands chunks of blocks to worker
//! threads that encode and compress them; the chunks are written in order,
//! and a fixed number are in flight, so memory does not grow with the
//! device. [`unpack`] reads the chunks in order and hands them to workers
//! that inflate, decode, verify and write their blocks.

mod decode;
mod encode;
pub mod format;
mod read;
mod write;

pub use decode::DecodeError;
pub use format::HeaderError;
pub use read::{read_header, unpack, UnpackStats};
pub use write::{pack, PackStats};

use std::io;

/// What went wrong while packing or unpacking. Offsets are byte offsets in
/// the pack file (of the chunk's length field).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("I/O error {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Header(#[from] HeaderError),
    #[error("the pack is truncated: it ends {what}")]
    Truncated { what: String },
    #[error("chunk at byte {offset}: its length {len} is {why}")]
    ChunkLength {
        offset: u64,
        len: u64,
        why: &'static str,
    },
    #[error("chunk at byte {offset}: corrupt zlib stream: {reason}")]
    Zlib { offset: u64, reason: String },
    #[error("chunk at byte {offset}: {what}: {source}")]
    Decode {
        offset: u64,
        what: String,
        #[source]
        source: DecodeError,
    },
    #[error(
        "chunk at byte {offset}: block {block} is out of range (the pack has {nr_blocks} blocks)"
    )]
    BlockOutOfRange {
        offset: u64,
        block: u64,
        nr_blocks: u64,
    },
    #[error(
        "chunk at byte {offset}: unpacked block {block} fails its checksum: the pack is corrupt"
    )]
    NotMetadata { offset: u64, block: u64 },
    #[error("the output holds {have} blocks, too few for the {need} blocks of the pack")]
    OutputTooSmall { have: u64, need: u64 },
    #[error("a worker thread failed")]
    Worker,
}

impl PackError {
    fn io(op: &'static str) -> impl FnOnce(io::Error) -> PackError {
        move |source| PackError::Io { op, source }
    }
}

/// Threads that encode or decode: the cores there are, within reason.
fn workers() -> usize {
    const MAX_WORKERS: usize = 8;
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, MAX_WORKERS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::node::{
        BLOCKNR_OFFSET, FLAGS_OFFSET, HEADER_SIZE, LEAF_NODE, MAX_ENTRIES_OFFSET,
        NR_ENTRIES_OFFSET, VALUE_SIZE_OFFSET,
    };
    use crate::checksum::{seal, SALT_ARRAY, SALT_BITMAP, SALT_BTREE_NODE};
    use crate::io::{BlockDevice, MemoryDevice};
    use crate::progress::NoProgress;
    use crate::{Block, BLOCK_SIZE};

    fn put32(b: &mut Block, off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// A leaf of u64 values (thin's mapping shape) at `loc`.
    fn leaf(loc: u64, n: u32) -> Block {
        let mut b = [0u8; BLOCK_SIZE];
        put32(&mut b, FLAGS_OFFSET, LEAF_NODE);
        b[BLOCKNR_OFFSET..BLOCKNR_OFFSET + 8].copy_from_slice(&loc.to_le_bytes());
        put32(&mut b, NR_ENTRIES_OFFSET, n);
        put32(&mut b, MAX_ENTRIES_OFFSET, 252);
        put32(&mut b, VALUE_SIZE_OFFSET, 8);
        for i in 0..n as usize {
            let key = 1000 + 3 * i as u64;
            let value = ((5000 + i as u64 * 7) << 24) | (i as u64 % 3);
            b[HEADER_SIZE + 8 * i..][..8].copy_from_slice(&key.to_le_bytes());
            b[HEADER_SIZE + 8 * 252 + 8 * i..][..8].copy_from_slice(&value.to_le_bytes());
        }
        seal(&mut b, SALT_BTREE_NODE);
        b
    }

    fn sealed(fill: u8, salt: u32) -> Block {
        let mut b = [fill; BLOCK_SIZE];
        seal(&mut b, salt);
        b
    }

    fn image() -> MemoryDevice {
        let dev = MemoryDevice::new(3000);
        let mut garbage = [0x5au8; BLOCK_SIZE];
        garbage[100] = 1; // no valid checksum: not packed
        let mut odd = leaf(7, 3);
        put32(&mut odd, MAX_ENTRIES_OFFSET, 100_000); // impossible geometry
        seal(&mut odd, SALT_BTREE_NODE);
        let blocks = [
            (1, leaf(1, 252)),
            (2, leaf(2, 0)),
            (3, sealed(0x55, SALT_BITMAP)),
            (4, garbage),
            (7, odd),
            (2999, sealed(9, SALT_ARRAY)),
        ];
        for (loc, b) in &blocks {
            dev.write_block(*loc, b).unwrap();
        }
        // Many chunks' worth of nodes, so that workers run concurrently.
        for loc in 10..2500 {
            dev.write_block(loc, &leaf(loc, (loc % 253) as u32))
                .unwrap();
        }
        dev
    }

    #[test]
    fn round_trip() {
        let dev = image();
        let mut packed = Vec::new();
        let stats = pack(&dev, &mut packed, &NoProgress).unwrap();
        assert_eq!(stats.packed, 5 + 2490);
        assert_eq!(stats.bytes, packed.len() as u64);
        let mut r = &packed[..];
        let nr = read_header(&mut r).unwrap();
        assert_eq!(nr, 3000);
        let out = MemoryDevice::new(nr);
        let u = unpack(&mut r, Some(packed.len() as u64), nr, &out, &NoProgress).unwrap();
        assert_eq!(u.blocks, stats.packed);
        let mut want = dev.image();
        want[4 * BLOCK_SIZE..5 * BLOCK_SIZE].fill(0);
        assert!(out.image() == want);
    }

    fn unpack_bytes(packed: &[u8]) -> Result<UnpackStats, PackError> {
        let mut r = packed;
        let nr = read_header(&mut r)?;
        let out = MemoryDevice::new(nr);
        unpack(&mut r, Some(packed.len() as u64), nr, &out, &NoProgress)
    }

    #[test]
    fn refuses_corrupt_packs() {
        let dev = image();
        let mut packed = Vec::new();
        pack(&dev, &mut packed, &NoProgress).unwrap();
        let msg = |p: &[u8]| unpack_bytes(p).unwrap_err().to_string();
        assert!(msg(&packed[..5]).contains("not a metadata pack"));
        assert!(msg(&packed[..20]).contains("truncated"));
        assert!(msg(&packed[..36]).contains("truncated"));
        assert!(msg(&packed[..packed.len() - 1]).contains("truncated"));
        let mut bad = packed.clone();
        bad[HEADER_SIZE + 8 + 2] ^= 0xff;
        assert!(msg(&bad).contains("chunk at byte 32"), "{}", msg(&bad));
        let mut huge = packed.clone();
        huge[HEADER_SIZE + 7] = 0x10;
        assert!(msg(&huge).contains("larger than any chunk"));
        // A pack declaring fewer blocks than its entries name.
        let mut small = packed.clone();
        small[24..32].copy_from_slice(&100u64.to_le_bytes());
        assert!(msg(&small).contains("out of range"), "{}", msg(&small));
    }

    /// Rebuilds a pack with each chunk's inflated stream passed through `f`.
    fn rewrite_chunks(packed: &[u8], f: &mut dyn FnMut(&mut Vec<u8>)) -> Vec<u8> {
        use flate2::{read::ZlibDecoder, write::ZlibEncoder, Compression};
        use std::io::{Read, Write};
        let mut out = packed[..format::HEADER_SIZE].to_vec();
        let mut rest = &packed[format::HEADER_SIZE..];
        while !rest.is_empty() {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let mut plain = Vec::new();
            ZlibDecoder::new(&rest[8..8 + len])
                .read_to_end(&mut plain)
                .unwrap();
            f(&mut plain);
            let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
            z.write_all(&plain).unwrap();
            let chunk = z.finish().unwrap();
            out.extend_from_slice(&(chunk.len() as u64).to_le_bytes());
            out.extend_from_slice(&chunk);
            rest = &rest[8 + len..];
        }
        out
    }

    /// Random damage to the packed bytes and to the instructions inside
    /// the zlib streams ends in Ok or an error, never a panic or a hang.
    #[test]
    fn random_damage_never_panics() {
        let dev = image();
        let mut packed = Vec::new();
        pack(&dev, &mut packed, &NoProgress).unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        assert!(unpack_bytes(&rewrite_chunks(&packed, &mut |_| {})).is_ok());
        let (mut failed, rounds) = (0, 100);
        for round in 0..rounds {
            let damaged = if round % 2 == 0 {
                let mut b = packed.clone();
                for _ in 0..1 + next(4) {
                    let at = next(b.len());
                    b[at] ^= 1 << next(8);
                }
                b
            } else {
                rewrite_chunks(&packed, &mut |plain| {
                    for _ in 0..1 + next(4) {
                        let at = next(plain.len());
                        plain[at] = next(256) as u8;
                    }
                })
            };
            failed += usize::from(unpack_bytes(&damaged).is_err());
        }
        // Most damage is caught (by zlib's checksum, the decoder's bounds
        // or the blocks' own checksums).
        assert!(failed > rounds * 3 / 4, "{failed} of {rounds}");
    }
}
