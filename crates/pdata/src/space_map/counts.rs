//! Reference counts gathered in memory before a space map is written in
//! bulk: one byte per block, in chunks of one bitmap's worth allocated only
//! where something is counted; counts of 255 and more live in a side map.

use super::format::ENTRIES_PER_BITMAP;
use crate::{Error, Result};
use rustc_hash::FxHashMap;

const CHUNK: usize = ENTRIES_PER_BITMAP as usize;
/// A chunk byte of this value means "the count is in `big`".
const BIG: u8 = u8::MAX;

pub struct RefCounts {
    nr_blocks: u64,
    /// Chunk number -> index into `chunks`.
    slots: FxHashMap<u64, usize>,
    chunks: Vec<Box<[u8]>>,
    big: FxHashMap<u64, u32>,
    /// The last chunk touched: (chunk number, index into `chunks`).
    last: Option<(u64, usize)>,
    /// Blocks with a count of 3 or more.
    nr_overflow: u64,
}

impl RefCounts {
    /// Counts for blocks `0..nr_blocks`, all zero.
    pub fn new(nr_blocks: u64) -> Self {
        RefCounts {
            nr_blocks,
            slots: FxHashMap::default(),
            chunks: Vec::new(),
            big: FxHashMap::default(),
            last: None,
            nr_overflow: 0,
        }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    #[inline]
    fn slot(&mut self, chunk: u64) -> usize {
        if let Some((c, s)) = self.last {
            if c == chunk {
                return s;
            }
        }
        let next = self.chunks.len();
        let s = *self.slots.entry(chunk).or_insert(next);
        if s == next {
            self.chunks.push(vec![0u8; CHUNK].into_boxed_slice());
        }
        self.last = Some((chunk, s));
        s
    }

    /// Adds one to the counts of blocks `begin..begin + len`.
    pub fn inc_range(&mut self, begin: u64, len: u64) -> Result<()> {
        let end = begin
            .checked_add(len)
            .filter(|&e| e <= self.nr_blocks)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "blocks {begin}..{} are beyond the end of the space map ({} blocks)",
                    begin.saturating_add(len),
                    self.nr_blocks
                ))
            })?;
        let mut b = begin;
        while b < end {
            let chunk = b / CHUNK as u64;
            let first = (b % CHUNK as u64) as usize;
            let n = ((end - b) as usize).min(CHUNK - first);
            let s = self.slot(chunk);
            let (mut overflowed, mut threes) = (false, 0);
            for c in &mut self.chunks[s][first..first + n] {
                if *c < BIG - 1 {
                    *c += 1;
                    threes += u64::from(*c == 3);
                } else {
                    overflowed = true;
                }
            }
            self.nr_overflow += threes;
            if overflowed {
                self.carry(chunk, first, n)?;
            }
            b += n as u64;
        }
        Ok(())
    }

    /// The slow path of `inc_range`: counts that reached the side map.
    fn carry(&mut self, chunk: u64, first: usize, n: usize) -> Result<()> {
        let s = self.slot(chunk);
        for e in first..first + n {
            let c = &mut self.chunks[s][e];
            if *c < BIG - 1 {
                continue;
            }
            let block = chunk * CHUNK as u64 + e as u64;
            let count = self.big.entry(block).or_insert(u32::from(*c));
            *count = count.checked_add(1).ok_or_else(|| {
                Error::invalid(format!("block {block}: reference count overflows"))
            })?;
            *c = BIG;
        }
        Ok(())
    }

    /// The count of `block`.
    pub fn get(&self, block: u64) -> u32 {
        let chunk = block / CHUNK as u64;
        match self.slots.get(&chunk) {
            None => 0,
            Some(&s) => self.decode(block, self.chunks[s][(block % CHUNK as u64) as usize]),
        }
    }

    fn decode(&self, block: u64, c: u8) -> u32 {
        if c == BIG {
            self.big.get(&block).copied().unwrap_or(u32::MAX)
        } else {
            u32::from(c)
        }
    }

    /// The counts of bitmap `i`'s blocks, or None when all are zero. A byte
    /// of 255 is resolved with [`Self::get`].
    pub fn chunk(&self, i: u64) -> Option<&[u8]> {
        self.slots.get(&i).map(|&s| &self.chunks[s][..])
    }

    /// The count a chunk byte stands for.
    pub fn resolve(&self, block: u64, c: u8) -> u32 {
        self.decode(block, c)
    }

    /// Number of blocks with a count of 3 or more (the overflow tree's entries).
    pub fn nr_overflow(&self) -> u64 {
        self.nr_overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_chunks_and_past_a_byte() {
        let mut rc = RefCounts::new(3 * CHUNK as u64);
        rc.inc_range(CHUNK as u64 - 2, 4).unwrap();
        for _ in 0..300 {
            rc.inc_range(5, 1).unwrap();
        }
        assert_eq!(rc.get(CHUNK as u64 - 3), 0);
        assert_eq!(rc.get(CHUNK as u64 - 2), 1);
        assert_eq!(rc.get(CHUNK as u64 + 1), 1);
        assert_eq!(rc.get(CHUNK as u64 + 2), 0);
        assert_eq!(rc.get(5), 300);
        assert!(rc.chunk(2).is_none());
        assert_eq!(rc.nr_overflow(), 1);
        assert!(rc.inc_range(3 * CHUNK as u64 - 1, 2).is_err());
        assert!(rc.inc_range(u64::MAX, 2).is_err());
    }
}
