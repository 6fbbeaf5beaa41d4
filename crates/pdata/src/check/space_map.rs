//! A client's space maps against the counts its walk found: the metadata
//! map's index block, overflow entries, then every bitmap (of the metadata
//! map and of a data map) streamed and compared 32 entries at a time.

use super::pipeline;
use super::report::{Problems, Section};
use super::walk::{Client, EngineBlock, TreeKind, Walker};
use super::{RefCounts, OVERFLOW_SEEN};
use crate::block_manager::le64;
use crate::checksum::{verify, SALT_BITMAP, SALT_INDEX};
use crate::space_map::counts::{sparse_entry, ChunkView};
use crate::space_map::format::{
    bitmap_get, entry_pair, nr_bitmaps, unpack_metadata_index, IndexEntry, BITMAP_BLOCKNR_OFFSET,
    BITMAP_HEADER_SIZE, ENTRIES_PER_BITMAP, INDEX_BLOCKNR_OFFSET, MAX_METADATA_BITMAPS,
};
use crate::Block;

type SectionOf<C> = <<C as Client>::Kind as TreeKind>::Section;

/// The blocks a check counts references to: the metadata space map's
/// size, within the device and the largest map the kernel uses; and what
/// is wrong when it is not within them (fatal, under the superblock).
pub fn metadata_len(sm_nr_blocks: u64, dev_nr_blocks: u64) -> (u64, Vec<String>) {
    let (mut len, mut problems) = (sm_nr_blocks, Vec::new());
    if len > dev_nr_blocks {
        problems.push(format!(
            "the metadata space map covers {len} blocks, the device has only {dev_nr_blocks}"
        ));
        len = dev_nr_blocks;
    }
    if len > crate::space_map::format::MAX_METADATA_BLOCKS {
        problems.push(format!(
            "the metadata space map covers {len} blocks, more than {}",
            crate::space_map::format::MAX_METADATA_BLOCKS
        ));
        len = crate::space_map::format::MAX_METADATA_BLOCKS;
    }
    (len, problems)
}

/// Which space map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    Metadata,
    Data,
}

impl Map {
    pub fn name(self) -> &'static str {
        match self {
            Map::Metadata => "metadata",
            Map::Data => "data",
        }
    }
}

/// A bitmap to compare: bitmap `index` of `map`, at block `loc`.
#[derive(Debug, Clone, Copy)]
pub struct BitmapRef {
    pub map: Map,
    pub index: u64,
    pub loc: u64,
}

/// Reads the metadata space map's index block at `root` and counts it and
/// its bitmaps; returns its entries (none when it is damaged, reported
/// under `section`).
pub fn metadata_index<C: Client>(
    w: &mut Walker<C>,
    root: u64,
    nr_blocks: u64,
    section: SectionOf<C>,
) -> Vec<IndexEntry> {
    if !w.reference_other(root, EngineBlock::MetaIndex.into(), section) {
        return Vec::new();
    }
    let mut b = [0u8; crate::BLOCK_SIZE];
    let problem = if w.dev.read_block(root, &mut b).is_err() {
        Some("cannot be read")
    } else if le64(&b, INDEX_BLOCKNR_OFFSET) != root {
        Some("does not hold its own block number")
    } else if !verify(&b, SALT_INDEX) {
        Some("has a bad checksum")
    } else {
        None
    };
    if let Some(p) = problem {
        w.problems.fatal(
            section,
            format!("the metadata space map index at block {root} {p}"),
        );
        return Vec::new();
    }
    let entries = unpack_metadata_index(&b, nr_bitmaps(nr_blocks).min(MAX_METADATA_BITMAPS));
    for (i, e) in entries.iter().enumerate() {
        w.reference_other(e.blocknr, EngineBlock::MetaBitmap(i as u64).into(), section);
    }
    entries
}

/// Compares an overflow-tree entry of the `kind` map with the count found,
/// and marks it seen.
pub fn overflow_entry<S: Section>(
    counts: &mut RefCounts,
    report: &mut Problems<S>,
    section: S,
    kind: &str,
    block: u64,
    count: u32,
) {
    match counts.get(block) {
        Some(found) if found == count && count >= 3 => counts.mark_overflow(block),
        Some(found) => {
            report.fatal(
                section,
                format!(
                    "{kind} block {block}: the space map's overflow tree says {count} references, found {found}"
                ),
            );
            if found >= 3 {
                counts.mark_overflow(block);
            }
        }
        None => report.fatal(
            section,
            format!("{kind} block {block} appears twice in the space map's overflow tree"),
        ),
    }
}

/// Applies the metadata overflow entries (block, count) the walk gathered.
pub fn metadata_overflow<C: Client>(
    w: &mut Walker<C>,
    entries: Vec<(u64, u32)>,
    section: SectionOf<C>,
) {
    for (block, count) in entries {
        if block >= w.meta.nr_blocks() {
            w.problems.fatal(
                section,
                format!(
                    "metadata space map overflow tree: entry for block {block}, beyond the metadata space map"
                ),
            );
            continue;
        }
        overflow_entry(
            &mut w.meta,
            &mut w.problems,
            section,
            "metadata",
            block,
            count,
        );
    }
}

/// What the comparison found.
#[derive(Debug, Default)]
pub struct Tally {
    /// Non-zero entries of each map's bitmaps ([metadata, data]).
    pub in_use: [u64; 2],
    pub leaks: [u64; 2],
    /// Bitmaps holding leaks.
    pub leaky: Vec<BitmapRef>,
}

/// Compares every bitmap with the counts found: the walker's for the
/// metadata map, `data`'s (of the client) for the data map. `nr_blocks` are
/// the maps' sizes ([metadata, data]).
pub fn compare<C: Client>(
    w: &mut Walker<C>,
    data: impl Fn(&C) -> &RefCounts,
    bitmaps: Vec<BitmapRef>,
    nr_blocks: [u64; 2],
    section: SectionOf<C>,
) -> Tally {
    let mut tally = Tally::default();
    compare_some(w, data, bitmaps, nr_blocks, section, &mut tally);
    report_leaks(w, &tally, section);
    tally
}

/// [`compare`] for some of the bitmaps (those whose blocks the counts
/// hold: a client counting the data blocks window by window compares
/// each window's bitmaps), adding to `tally`; [`report_leaks`] at the end.
pub fn compare_some<C: Client>(
    w: &mut Walker<C>,
    data: impl Fn(&C) -> &RefCounts,
    mut bitmaps: Vec<BitmapRef>,
    nr_blocks: [u64; 2],
    section: SectionOf<C>,
    tally: &mut Tally,
) {
    bitmaps.sort_unstable_by_key(|b| b.loc);
    let mut buffers = std::mem::take(&mut w.buffers);
    let (dev, meta, report) = (w.dev, &w.meta, &mut w.problems);
    let data = data(&w.client);
    pipeline::run(
        dev,
        w.progress,
        &bitmaps,
        &mut buffers,
        |b| b.loc,
        |r, b| match b {
            None => Err("cannot be read"),
            Some(b) if le64(b, BITMAP_BLOCKNR_OFFSET) != r.loc => {
                Err("does not hold its own block number")
            }
            Some(b) if !verify(b, SALT_BITMAP) => Err("has a bad checksum"),
            Some(_) => Ok(()),
        },
        |r, b, verdict| {
            let (Some(b), Ok(())) = (b, verdict) else {
                report.fatal(
                    section,
                    format!(
                        "{} space map bitmap {} at block {} {}",
                        r.map.name(),
                        r.index,
                        r.loc,
                        verdict.err().unwrap_or("cannot be read")
                    ),
                );
                return;
            };
            let m = r.map as usize;
            let counts = if r.map == Map::Metadata { meta } else { data };
            let base = r.index * ENTRIES_PER_BITMAP;
            let n = nr_blocks[m].saturating_sub(base).min(ENTRIES_PER_BITMAP) as usize;
            let (in_use, leaks) =
                compare_bitmap(counts, report, section, r.map, b, r.index, base, n);
            tally.in_use[m] += in_use;
            tally.leaks[m] += leaks;
            if leaks > 0 {
                tally.leaky.push(*r);
            }
        },
    );
    w.buffers = buffers;
}

/// The leaks `tally` counted, one line per map.
pub fn report_leaks<C: Client>(w: &mut Walker<C>, tally: &Tally, section: SectionOf<C>) {
    for map in [Map::Metadata, Map::Data] {
        let n = tally.leaks[map as usize];
        if n > 0 {
            w.problems
                .push_leak_text(section, format!("{n} {} blocks have leaked", map.name()));
        }
    }
}

const LOW_PAIR_BITS: u64 = 0x5555_5555_5555_5555;

/// The bitmap word that 8 counts (one byte each, 255 = at least 3) give,
/// in its low 16 bits.
#[inline]
fn encode8(x: u64) -> u64 {
    const B3F: u64 = 0x3F3F_3F3F_3F3F_3F3F;
    // Saturate every byte at 3.
    let big = (((x >> 2) & B3F) + B3F) & 0x4040_4040_4040_4040;
    let mut v = (x & 0x0303_0303_0303_0303) | ((big >> 6) * 3);
    // Gather the 2-bit values: byte i to bits 2i.
    v = (v | (v >> 6)) & 0x000F_000F_000F_000F;
    v = (v | (v >> 12)) & 0x0000_00FF_0000_00FF;
    v = (v | (v >> 24)) & 0xFFFF;
    // The lower bit of a pair is the high bit of the count.
    ((v & 0x5555) << 1) | ((v >> 1) & 0x5555)
}

/// 64-bit words of a bitmap's entries.
const WORDS: usize = ENTRIES_PER_BITMAP as usize / 32;

/// Compares bitmap `b` (blocks base..base+n, bitmap number `index`) with
/// `counts`; returns the blocks in use according to the bitmap, and the
/// leaks. Whole words that match what the counts give are passed at once;
/// a word that differs, or holds a 3 whose overflow entry was not seen, is
/// compared entry by entry.
#[allow(clippy::too_many_arguments)]
fn compare_bitmap<S: Section>(
    counts: &RefCounts,
    report: &mut Problems<S>,
    section: S,
    map: Map,
    b: &Block,
    index: u64,
    base: u64,
    n: usize,
) -> (u64, u64) {
    let chunk = counts.chunk(index);
    // For a sparse chunk: the words its entries give, and which words
    // hold a count of 3 or more not yet matched with an overflow entry.
    let mut sparse_words = [0u64; WORDS];
    let mut unseen_threes = [false; WORDS];
    // For a dense chunk: its counts, a byte each.
    let mut dense = [0u8; ENTRIES_PER_BITMAP as usize];
    if let Some(ChunkView::Dense(d)) = chunk {
        d.expand(&mut dense);
    }
    if let Some(ChunkView::Sparse(list)) = chunk {
        for &e in list {
            let (off, x) = sparse_entry(e);
            sparse_words[off / 32] |= entry_pair(u32::from(x)) << (2 * (off % 32));
            unseen_threes[off / 32] |= x >= 3 && x != OVERFLOW_SEEN;
        }
    }
    let mut in_use = 0;
    let mut leaks = 0;
    for j in 0..n.div_ceil(32) {
        let word = le64(b, BITMAP_HEADER_SIZE + 8 * j);
        let first = base + 32 * j as u64;
        let width = (n - 32 * j).min(32);
        if width == 32 {
            let matches = match chunk {
                None => word == 0,
                Some(ChunkView::Sparse(_)) => sparse_words[j] == word && !unseen_threes[j],
                Some(ChunkView::Dense(_)) => {
                    let c = &dense[32 * j..32 * j + 32];
                    let lane = |i: usize| le64(c, 8 * i);
                    let expected = encode8(lane(0))
                        | (encode8(lane(1)) << 16)
                        | (encode8(lane(2)) << 32)
                        | (encode8(lane(3)) << 48);
                    let threes = word & (word >> 1) & LOW_PAIR_BITS;
                    expected == word && bits(threes).all(|e| c[e] == OVERFLOW_SEEN)
                }
            };
            if matches {
                in_use += ((word | (word >> 1)) & LOW_PAIR_BITS).count_ones() as u64;
                continue;
            }
        }
        for e in 0..width {
            let block = first + e as u64;
            let actual = bitmap_get(b, (32 * j + e) as u64);
            in_use += u64::from(actual != 0);
            leaks += u64::from(compare_entry(counts, report, section, map, block, actual));
        }
    }
    (in_use, leaks)
}

/// Entry numbers (within a word) of the set pairs of `pairs`.
fn bits(mut pairs: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (pairs != 0).then(|| {
            let e = pairs.trailing_zeros() as usize / 2;
            pairs &= pairs - 1;
            e
        })
    })
}

/// One block's space-map count against the references found; true if it
/// is a leak.
fn compare_entry<S: Section>(
    counts: &RefCounts,
    report: &mut Problems<S>,
    section: S,
    map: Map,
    block: u64,
    actual: u32,
) -> bool {
    let kind = map.name();
    let Some(expected) = counts.get(block) else {
        // An overflow entry was found and compared.
        if actual != 3 {
            report.fatal(
                section,
                format!("{kind} block {block}: the bitmap says {actual} but the overflow tree holds an entry"),
            );
        }
        return false;
    };
    if actual == 3 {
        let why = if expected >= 3 {
            "but the overflow tree has no entry for it"
        } else {
            "in the bitmap"
        };
        report.fatal(
            section,
            format!("{kind} block {block}: {expected} references, counted 3 or more {why}"),
        );
        return false;
    }
    if actual == expected {
        return false;
    }
    if actual == 1 && expected == 0 {
        report.leak(section, || {
            format!("{kind} block {block} is counted once but nothing references it")
        });
        return true;
    }
    report.fatal(
        section,
        format!("{kind} block {block}: {expected} references, the space map says {actual}"),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space_map::format::bitmap_set;

    #[test]
    fn encode_matches_bitmap_set() {
        let counts: [u8; 8] = [0, 1, 2, 3, 4, 200, 255, 1];
        let mut b = [0u8; crate::BLOCK_SIZE];
        for (e, &c) in counts.iter().enumerate() {
            bitmap_set(&mut b, e as u64, (c as u32).min(3));
        }
        let x = u64::from_le_bytes(counts);
        assert_eq!(encode8(x), le64(&b, BITMAP_HEADER_SIZE) & 0xFFFF);
    }

    #[test]
    fn pair_positions() {
        assert_eq!(bits(0b0100_0001).collect::<Vec<_>>(), vec![0, 3]);
    }
}
