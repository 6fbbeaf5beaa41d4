//! Reference counts kept in memory: by the checkers (counts recomputed
//! from the references found) and by the bulk builders (counts of a space
//! map about to be written).
//!
//! Memory follows the blocks counted, not the size of the device: the
//! blocks are grouped as the space map's bitmaps group them (16,320 a
//! chunk), a chunk with no count costs four bytes, a chunk with few counts
//! keeps them as a sorted list (four bytes each), and only a chunk with
//! many becomes dense: half a byte per block, or a byte once one of its
//! counts passes 12 (blocks shared by many snapshots). A 2^32-block data device with 300,000
//! scattered mappings then needs about 10 MB where a flat byte array
//! touched a page per mapping (1 GB).
//!
//! A count's byte: 0..=253 the count, 254 a count in the side map `big`,
//! 255 [`OVERFLOW_SEEN`].

use super::format::ENTRIES_PER_BITMAP;
use crate::{Error, Result};
use rustc_hash::FxHashMap;

/// Blocks per bitmap: the unit of [`RefCounts::chunk`].
pub const CHUNK: usize = ENTRIES_PER_BITMAP as usize;
/// What the counts of a data device take at most, by default, in the
/// builders that count window by window ([`RefCounts::window`]): half a
/// byte per block in use, so a pool of more than about 60M data blocks in
/// use is counted in several passes and the tools' memory stays flat up to
/// the largest metadata device.
pub const WINDOW_BUDGET: usize = 32 << 20;
/// Largest count held in the byte itself.
const MAX_SMALL: u8 = 253;
/// The count is in `big`.
const BIG: u8 = 254;
/// An overflow-tree entry was found for this block (set by
/// [`RefCounts::mark_overflow`]); the count was at least 3.
pub const OVERFLOW_SEEN: u8 = 255;
const _: () = assert!(MAX_SMALL < BIG && BIG < OVERFLOW_SEEN && MAX_SMALL >= 3);
/// Entries of a sparse chunk before it turns dense: a quarter of a dense
/// chunk's bytes, and short enough that an insertion's move stays cheap.
const SPARSE_MAX: usize = 1024;
const _: () = assert!(SPARSE_MAX * 4 <= CHUNK / 2 && CHUNK < 1 << 24);

/// A dense chunk's half-byte: 0..NIB_MAX the count, NIB_SEEN
/// [`OVERFLOW_SEEN`]; a count reaching NIB_MAX widens the chunk to bytes.
const NIB_MAX: u8 = 12;
const NIB_SEEN: u8 = 15;
/// Bytes of a dense chunk.
const DENSE_BYTES: usize = CHUNK / 2;
const _: () = assert!(CHUNK.is_multiple_of(2) && NIB_MAX >= 3);
/// The byte (as a sparse entry or [`ChunkView`] has it) of each half-byte.
const NIB_BYTE: [u8; 16] = [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    BIG,
    BIG,
    OVERFLOW_SEEN,
];

#[inline]
fn nib_get(bytes: &[u8], off: usize) -> u8 {
    (bytes[off / 2] >> (4 * (off & 1))) & 15
}

#[inline]
fn nib_set(bytes: &mut [u8], off: usize, v: u8) {
    let shift = 4 * (off & 1);
    let b = &mut bytes[off / 2];
    *b = (*b & !(15 << shift)) | (v << shift);
}

/// The counts of one chunk.
enum Chunk {
    /// A single block counted (as in `Sparse`): no allocation.
    One(u32),
    /// `(offset << 8) | byte`, sorted by offset, no zero byte.
    Sparse(Vec<u32>),
    /// Half a byte per block, counts below [`NIB_MAX`].
    Dense(Box<[u8]>),
    /// A byte per block.
    Wide(Box<[u8]>),
}

/// The bytes of a dense chunk's half-bytes.
fn widen(nibbles: &[u8]) -> Box<[u8]> {
    let mut bytes = vec![0u8; CHUNK].into_boxed_slice();
    DenseView::Nibbles(nibbles).expand(&mut bytes);
    bytes
}

/// A dense chunk's counts.
#[derive(Clone, Copy)]
pub enum DenseView<'a> {
    Nibbles(&'a [u8]),
    Bytes(&'a [u8]),
}

impl DenseView<'_> {
    /// The byte of block `off` of the chunk (0..=253 the count, 254 see
    /// [`RefCounts::resolve`], 255 [`OVERFLOW_SEEN`]).
    #[inline]
    pub fn byte(&self, off: usize) -> u8 {
        match self {
            DenseView::Nibbles(n) => NIB_BYTE[nib_get(n, off) as usize],
            DenseView::Bytes(b) => b[off],
        }
    }

    /// Every block's byte, into `out` ([`CHUNK`] of them).
    pub fn expand(&self, out: &mut [u8]) {
        match self {
            DenseView::Nibbles(n) => {
                for (pair, &x) in out.chunks_exact_mut(2).zip(n.iter()) {
                    pair[0] = NIB_BYTE[(x & 15) as usize];
                    pair[1] = NIB_BYTE[(x >> 4) as usize];
                }
            }
            DenseView::Bytes(b) => out[..CHUNK].copy_from_slice(b),
        }
    }
}

/// A chunk's counts, as [`RefCounts::chunk`] gives them. Bytes of 3 and
/// more are resolved with [`RefCounts::resolve`].
#[derive(Clone, Copy)]
pub enum ChunkView<'a> {
    /// `(offset << 8) | byte` for each block counted, by offset.
    Sparse(&'a [u32]),
    /// Every block of the chunk (zero past the end).
    Dense(DenseView<'a>),
}

/// The offset and the byte of a sparse entry.
#[inline]
pub fn sparse_entry(e: u32) -> (usize, u8) {
    ((e >> 8) as usize, e as u8)
}

pub struct RefCounts {
    nr_blocks: u64,
    /// The window counted: blocks from chunk `lo_chunk` up to `hi` (a
    /// chunk boundary or `nr_blocks`); references outside it are ignored.
    lo_chunk: u64,
    hi: u64,
    /// Heap bytes the chunks may take before the window shrinks.
    budget: usize,
    /// Heap bytes of the chunks, roughly.
    bytes: usize,
    /// Per chunk of the window, 0 when nothing is counted, else 1 + its
    /// index in `chunks`; grown on demand up to the highest chunk counted.
    slots: Vec<u32>,
    chunks: Vec<Chunk>,
    big: FxHashMap<u64, u32>,
    /// Blocks whose count reached 3 (the overflow tree's entries).
    nr_overflow: u64,
    /// Chunks held densely.
    nr_dense: u64,
}

impl RefCounts {
    /// Counts for blocks `0..nr_blocks`, all zero; an error if there are
    /// more blocks than it can index.
    pub fn new(nr_blocks: u64) -> Result<Self> {
        if nr_blocks.div_ceil(CHUNK as u64) >= u64::from(u32::MAX) {
            return Err(Error::invalid(format!(
                "cannot count references to {nr_blocks} blocks"
            )));
        }
        Ok(RefCounts {
            nr_blocks,
            lo_chunk: 0,
            hi: nr_blocks,
            budget: usize::MAX,
            bytes: 0,
            slots: Vec::new(),
            chunks: Vec::new(),
            big: FxHashMap::default(),
            nr_overflow: 0,
            nr_dense: 0,
        })
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Counts for the blocks from `from` (a multiple of [`CHUNK`]) on,
    /// as many as `budget` bytes of counts hold: when [`Self::inc_all`]
    /// finds the counts over it, the highest chunks are dropped and the
    /// window ends there ([`Self::window_end`]). A pass over the
    /// references per window then counts any number of blocks in bounded
    /// memory; a window holds at least one chunk.
    pub fn window(nr_blocks: u64, from: u64, budget: usize) -> Result<Self> {
        let mut rc = Self::new(nr_blocks)?;
        debug_assert!(from.is_multiple_of(CHUNK as u64));
        rc.lo_chunk = from.min(nr_blocks) / CHUNK as u64;
        rc.budget = budget;
        Ok(rc)
    }

    /// This window, ended by `end` at the latest (a chunk boundary or
    /// `nr_blocks`; at least one chunk is kept). Before counting.
    pub fn ending_by(mut self, end: u64) -> Self {
        debug_assert!(self.slots.is_empty());
        let least = self.window_start().saturating_add(CHUNK as u64);
        self.hi = self.hi.min(end.max(least));
        self
    }

    /// The first block counted.
    pub fn window_start(&self) -> u64 {
        (self.lo_chunk * CHUNK as u64).min(self.nr_blocks)
    }

    /// The block after the last one counted (`nr_blocks` unless a budget
    /// shrank the window).
    pub fn window_end(&self) -> u64 {
        self.hi
    }

    /// Whether references to `b` are counted.
    #[inline]
    pub fn in_window(&self, b: u64) -> bool {
        b >= self.window_start() && b < self.hi
    }

    /// Moves the blocks of `blocks` in the window to its front, in order;
    /// their number. A pass over the references per window then costs
    /// little for the blocks of the other windows.
    pub fn keep_window(&self, blocks: &mut [u64]) -> usize {
        let (lo, hi) = (self.window_start(), self.hi);
        let mut n = 0;
        for i in 0..blocks.len() {
            let b = blocks[i];
            blocks[n] = b;
            n += usize::from(b >= lo && b < hi);
        }
        n
    }

    /// The slot of chunk `c` (absolute), if any.
    #[inline]
    fn slot(&self, c: u64) -> u32 {
        let rel = c.wrapping_sub(self.lo_chunk);
        usize::try_from(rel)
            .ok()
            .and_then(|r| self.slots.get(r))
            .copied()
            .unwrap_or(0)
    }

    /// Adds one reference to `b` (< nr_blocks) and returns the count before.
    #[inline]
    pub fn inc(&mut self, b: u64) -> u32 {
        debug_assert!(b < self.nr_blocks);
        let (c, off) = (b / CHUNK as u64, (b % CHUNK as u64) as usize);
        let slot = self.slot(c);
        if slot == 0 {
            return self.inc_new_chunk(c, off, b);
        }
        let (big, nr_overflow, nr_dense, heap) = (
            &mut self.big,
            &mut self.nr_overflow,
            &mut self.nr_dense,
            &mut self.bytes,
        );
        let chunk = &mut self.chunks[slot as usize - 1];
        let key = (off as u32) << 8;
        if let Chunk::One(e) = *chunk {
            if e & !0xFF != key {
                *chunk = Chunk::Sparse(vec![e]);
                *heap += 4;
            }
        }
        if let Chunk::Dense(nibbles) = chunk {
            if nib_get(nibbles, off) >= NIB_MAX {
                *chunk = Chunk::Wide(widen(nibbles));
                *heap += CHUNK - DENSE_BYTES;
            }
        }
        match chunk {
            Chunk::Dense(nibbles) => {
                let n = nib_get(nibbles, off);
                nib_set(nibbles, off, n + 1);
                *nr_overflow += u64::from(n == 2);
                n as u32
            }
            Chunk::Wide(bytes) => {
                let (y, before) = bump(big, nr_overflow, b, bytes[off]);
                bytes[off] = y;
                before
            }
            Chunk::One(e) => {
                let (y, before) = bump(big, nr_overflow, b, *e as u8);
                *e = key | y as u32;
                before
            }
            Chunk::Sparse(list) => match list.binary_search_by_key(&key, |e| e & !0xFF) {
                Ok(i) => {
                    let (y, before) = bump(big, nr_overflow, b, list[i] as u8);
                    list[i] = key | y as u32;
                    before
                }
                Err(i) if list.len() < SPARSE_MAX => {
                    list.insert(i, key | 1);
                    *heap += 4;
                    0
                }
                Err(_) => {
                    *heap = heap.saturating_sub(4 * list.len());
                    *chunk = if list.iter().all(|&e| (e as u8) < NIB_MAX) {
                        let mut nibbles = vec![0u8; DENSE_BYTES].into_boxed_slice();
                        for &e in list.iter() {
                            let (o, x) = sparse_entry(e);
                            nib_set(&mut nibbles, o, x);
                        }
                        nib_set(&mut nibbles, off, 1);
                        Chunk::Dense(nibbles)
                    } else {
                        let mut bytes = vec![0u8; CHUNK].into_boxed_slice();
                        for &e in list.iter() {
                            let (o, x) = sparse_entry(e);
                            bytes[o] = x;
                        }
                        bytes[off] = 1;
                        Chunk::Wide(bytes)
                    };
                    *heap += chunk_bytes(chunk);
                    *nr_dense += 1;
                    0
                }
            },
        }
    }

    /// [`Self::inc`] for each of `blocks` (each < nr_blocks), faster where
    /// neighbours fall in the same dense chunk, as a leaf's mappings do.
    pub fn inc_all(&mut self, blocks: &[u64]) {
        let mut i = 0;
        while i < blocks.len() {
            let c = blocks[i] / CHUNK as u64;
            let slot = self.slot(c) as usize;
            let base = c * CHUNK as u64;
            let in_chunk = |i: usize| {
                blocks.get(i).and_then(|&b| {
                    let off = b.wrapping_sub(base);
                    (off < CHUNK as u64).then_some(off as usize)
                })
            };
            match slot.checked_sub(1).map(|s| &mut self.chunks[s]) {
                Some(Chunk::Dense(nibbles)) => {
                    // The hot loop of a check (a fixed-size chunk: no
                    // bounds check).
                    if let Ok(nibbles) = <&mut [u8; DENSE_BYTES]>::try_from(&mut **nibbles) {
                        let mut threes = 0;
                        for &b in &blocks[i..] {
                            let off = b.wrapping_sub(base);
                            if off >= CHUNK as u64 {
                                break;
                            }
                            let (byte, shift) = (&mut nibbles[off as usize / 2], 4 * (off & 1));
                            let x = (*byte >> shift) & 15;
                            if x + 1 >= NIB_MAX {
                                break;
                            }
                            *byte += 1 << shift;
                            threes += u64::from(x == 2);
                            i += 1;
                        }
                        self.nr_overflow += threes;
                    }
                }
                Some(Chunk::Wide(bytes)) => {
                    while let Some(off) = in_chunk(i) {
                        let x = bytes[off];
                        if x >= MAX_SMALL {
                            break;
                        }
                        bytes[off] = x + 1;
                        self.nr_overflow += u64::from(x == 2);
                        i += 1;
                    }
                }
                _ => {}
            }
            // The rest of the chunk's blocks, or a block the fast paths
            // leave to the general one.
            if i < blocks.len() && in_chunk(i).is_some() || slot == 0 {
                self.inc(blocks[i]);
                i += 1;
            }
        }
        if self.bytes > self.budget {
            self.shed();
        }
    }

    /// Drops the counts of the highest chunks, keeping at most three
    /// quarters of the budget (and at least the window's first chunk); the
    /// window ends where they began.
    #[cold]
    fn shed(&mut self) {
        let (mut keep, mut bytes) = (0, 0);
        for (rel, &s) in self.slots.iter().enumerate() {
            let size = s
                .checked_sub(1)
                .map_or(0, |s| chunk_bytes(&self.chunks[s as usize]));
            if rel > 0 && bytes + size > self.budget / 4 * 3 {
                break;
            }
            bytes += size;
            keep = rel + 1;
        }
        let mut old = std::mem::take(&mut self.chunks);
        for s in self.slots.drain(keep..).filter(|&s| s != 0) {
            let chunk = &old[s as usize - 1];
            self.nr_overflow -= (0..CHUNK)
                .filter(|&o| chunk_byte(chunk, o).is_some_and(|x| x >= 3))
                .count() as u64;
        }
        self.nr_dense = 0;
        for s in self.slots.iter_mut().filter(|s| **s != 0) {
            let chunk = std::mem::replace(&mut old[*s as usize - 1], Chunk::One(0));
            self.nr_dense += u64::from(matches!(chunk, Chunk::Dense(_) | Chunk::Wide(_)));
            self.chunks.push(chunk);
            *s = self.chunks.len() as u32;
        }
        self.bytes = bytes;
        self.hi = ((self.lo_chunk + keep as u64) * CHUNK as u64).min(self.hi);
        let hi = self.hi;
        self.big.retain(|&b, _| b < hi);
    }

    #[cold]
    fn inc_new_chunk(&mut self, c: u64, off: usize, b: u64) -> u32 {
        if !self.in_window(b) {
            return 0;
        }
        let c = (c - self.lo_chunk) as usize;
        if self.slots.len() <= c {
            self.slots.resize(c + 1, 0);
        }
        // Where most chunks filled up, the next will too: start it dense
        // rather than pay for the sorted list first.
        if self.nr_dense * 2 > self.chunks.len() as u64 {
            let mut bytes = vec![0u8; DENSE_BYTES].into_boxed_slice();
            nib_set(&mut bytes, off, 1);
            self.chunks.push(Chunk::Dense(bytes));
            self.nr_dense += 1;
            self.bytes += DENSE_BYTES;
        } else {
            self.chunks.push(Chunk::One(((off as u32) << 8) | 1));
        }
        self.slots[c] = self.chunks.len() as u32;
        0
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
        // Only the window's blocks are counted.
        for b in begin.max(self.window_start())..end.min(self.hi) {
            if self.inc(b) == u32::MAX {
                return Err(Error::invalid(format!(
                    "block {b}: reference count overflows"
                )));
            }
        }
        if self.bytes > self.budget {
            self.shed();
        }
        Ok(())
    }

    /// The byte of `b` (0 when nothing is counted or past the end).
    fn byte(&self, b: u64) -> u8 {
        let (c, off) = (b / CHUNK as u64, (b % CHUNK as u64) as usize);
        match self.slot(c) {
            0 => 0,
            s => chunk_byte(&self.chunks[s as usize - 1], off).unwrap_or(0),
        }
    }

    /// The count of `b`, or None where only "at least 3" is kept
    /// ([`OVERFLOW_SEEN`]). Blocks past the end count 0.
    pub fn get(&self, b: u64) -> Option<u32> {
        match self.byte(b) {
            OVERFLOW_SEEN => None,
            x => Some(self.resolve(b, x)),
        }
    }

    /// The count a byte of [`Self::chunk`] stands for.
    pub fn resolve(&self, b: u64, x: u8) -> u32 {
        match x {
            BIG => self.big.get(&b).copied().unwrap_or(0),
            x => x as u32,
        }
    }

    /// Notes that the space map's overflow tree holds an entry for `b`,
    /// whose count (at least 3) has been compared already.
    pub fn mark_overflow(&mut self, b: u64) {
        if b >= self.nr_blocks {
            return;
        }
        let (c, off) = (b / CHUNK as u64, (b % CHUNK as u64) as usize);
        let s = self.slot(c);
        if s == 0 {
            return;
        }
        match &mut self.chunks[s as usize - 1] {
            Chunk::Dense(nibbles) => nib_set(nibbles, off, NIB_SEEN),
            Chunk::Wide(bytes) => bytes[off] = OVERFLOW_SEEN,
            Chunk::One(e) => {
                if *e >> 8 == off as u32 {
                    *e |= OVERFLOW_SEEN as u32;
                }
            }
            Chunk::Sparse(list) => {
                let key = (off as u32) << 8;
                if let Ok(i) = list.binary_search_by_key(&key, |e| e & !0xFF) {
                    list[i] = key | OVERFLOW_SEEN as u32;
                }
            }
        }
    }

    /// The counts of bitmap `i`'s blocks, or None when all are zero.
    pub fn chunk(&self, i: u64) -> Option<ChunkView<'_>> {
        let s = self.slot(i);
        match self.chunks.get((s as usize).checked_sub(1)?)? {
            Chunk::Dense(nibbles) => Some(ChunkView::Dense(DenseView::Nibbles(nibbles))),
            Chunk::Wide(bytes) => Some(ChunkView::Dense(DenseView::Bytes(bytes))),
            Chunk::One(e) => Some(ChunkView::Sparse(std::slice::from_ref(e))),
            Chunk::Sparse(list) => Some(ChunkView::Sparse(list)),
        }
    }

    /// The first block of `r` with a count other than zero; chunks with
    /// nothing counted are passed whole.
    pub fn first_counted_in(&self, r: std::ops::Range<u64>) -> Option<u64> {
        let end = r.end.min(self.nr_blocks);
        let mut b = r.start;
        while b < end {
            let base = b / CHUNK as u64 * CHUNK as u64;
            let stop = (base + CHUNK as u64).min(end);
            let (from, to) = ((b - base) as usize, (stop - base) as usize);
            let found = match self.chunk(b / CHUNK as u64) {
                None => None,
                Some(ChunkView::Dense(d)) => (from..to).position(|o| d.byte(o) != 0),
                Some(ChunkView::Sparse(list)) => {
                    let i = list.partition_point(|&e| sparse_entry(e).0 < from);
                    let off = list.get(i).map(|&e| sparse_entry(e).0);
                    off.filter(|&o| o < to).map(|o| o - from)
                }
            };
            if let Some(i) = found {
                return Some(b + i as u64);
            }
            b = stop;
        }
        None
    }

    /// Number of blocks with a count of 3 or more (the overflow tree's entries).
    pub fn nr_overflow(&self) -> u64 {
        self.nr_overflow
    }

    /// Heap bytes held, roughly (for tests and reports).
    pub fn heap_bytes(&self) -> usize {
        let chunks: usize = self
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::One(_) => 0,
                Chunk::Sparse(l) => 4 * l.capacity(),
                Chunk::Dense(b) | Chunk::Wide(b) => b.len(),
            })
            .sum();
        4 * self.slots.capacity()
            + std::mem::size_of::<Chunk>() * self.chunks.capacity()
            + chunks
            + 16 * self.big.capacity()
    }
}

/// The heap bytes of a chunk's counts (as `RefCounts::bytes` adds them).
fn chunk_bytes(c: &Chunk) -> usize {
    match c {
        Chunk::One(_) => 0,
        Chunk::Sparse(l) => 4 * l.len(),
        Chunk::Dense(b) | Chunk::Wide(b) => b.len(),
    }
}

/// The byte of block `off` of a chunk, if it is counted.
fn chunk_byte(c: &Chunk, off: usize) -> Option<u8> {
    let x = match c {
        Chunk::Dense(nibbles) => NIB_BYTE[nib_get(nibbles, off) as usize],
        Chunk::Wide(bytes) => bytes[off],
        Chunk::One(e) => (e >> 8 == off as u32).then_some(*e as u8)?,
        Chunk::Sparse(list) => list
            .binary_search_by_key(&((off as u32) << 8), |e| e & !0xFF)
            .map(|i| list[i] as u8)
            .ok()?,
    };
    (x != 0).then_some(x)
}

/// One more reference to `b`, whose byte is `x`: the new byte and the
/// count before.
#[inline]
fn bump(big: &mut FxHashMap<u64, u32>, nr_overflow: &mut u64, b: u64, x: u8) -> (u8, u32) {
    if x < MAX_SMALL {
        *nr_overflow += u64::from(x == 2);
        return (x + 1, x as u32);
    }
    bump_big(big, b, x)
}

/// A count past [`MAX_SMALL`] (byte `x`): the new byte and the count before.
#[cold]
fn bump_big(big: &mut FxHashMap<u64, u32>, b: u64, x: u8) -> (u8, u32) {
    match x {
        MAX_SMALL => {
            big.insert(b, MAX_SMALL as u32 + 1);
            (BIG, MAX_SMALL as u32)
        }
        _ => {
            let c = big.entry(b).or_insert(MAX_SMALL as u32 + 1);
            let before = *c;
            *c = c.saturating_add(1);
            (x, before)
        }
    }
}

#[cfg(test)]
#[path = "counts_tests.rs"]
mod tests;
