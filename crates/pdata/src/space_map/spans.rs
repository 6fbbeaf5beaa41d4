//! Which data blocks each leaf refers to, coarsely: the regions its
//! references fall in, as two intervals. Counting window by window
//! ([`RefCounts::window`]) then reads again only the leaves that refer
//! into the window at hand, so a pool counted in n windows costs about one
//! pass over its leaves, not n. Two intervals, because a snapshot's leaf
//! refers both to its origin's old blocks and to the new ones written since.
//!
//! Four bytes per metadata block from `base` (0 for a block not recorded):
//! the first and last region of the lower interval, then of the upper one,
//! a byte each, + 1. Regions are 2^shift data blocks, at most
//! [`MAX_REGIONS`] of them.

use super::counts::{RefCounts, CHUNK};
use std::ops::Range;

/// Regions over the data device at most: a region number + 1 fits a byte.
const MAX_REGIONS: u64 = u8::MAX as u64;

#[derive(Debug, Default)]
pub struct LeafSpans {
    /// `spans[i]` is block `base + i`'s.
    base: u64,
    shift: u32,
    spans: Vec<u32>,
}

/// A set of regions, a bit each.
type Regions = [u64; 4];

fn add_interval(set: &mut Regions, first: u64, last: u64) {
    for r in first..=last.min(MAX_REGIONS - 1) {
        set[(r / 64) as usize] |= 1 << (r % 64);
    }
}

/// The numbers of the bits set in `words`, ascending.
pub(crate) fn ones(words: &[u64]) -> impl Iterator<Item = u64> + '_ {
    words.iter().enumerate().flat_map(|(i, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            (w != 0).then(|| {
                let b = w.trailing_zeros() as u64;
                w &= w - 1;
                i as u64 * 64 + b
            })
        })
    })
}

/// The set's lowest and highest regions split at its widest gap: two
/// intervals (the same one twice when there is no gap). None if empty.
fn two_intervals(set: &Regions) -> Option<[u64; 4]> {
    let mut regions = ones(set);
    let first = regions.next()?;
    let (mut prev, mut gap) = (first, (first, first));
    for r in regions {
        if r - prev > gap.1 - gap.0 {
            gap = (prev, r);
        }
        prev = r;
    }
    Some(if gap.0 == gap.1 {
        [first, prev, first, prev]
    } else {
        [first, gap.0, gap.1, prev]
    })
}

impl LeafSpans {
    /// Spans of the leaves among blocks `leaves` referring to a data
    /// device of `nr_data` blocks. The spans are allocated whole, zeroed:
    /// the pages of blocks never recorded are never touched.
    pub fn new(nr_data: u64, leaves: Range<u64>) -> Self {
        let mut shift = 0;
        while nr_data.saturating_sub(1) >> shift >= MAX_REGIONS {
            shift += 1;
        }
        let len = usize::try_from(leaves.end.saturating_sub(leaves.start)).unwrap_or(0);
        LeafSpans {
            base: leaves.start,
            shift,
            spans: vec![0; len],
        }
    }

    fn index(&self, loc: u64) -> Option<usize> {
        loc.checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
    }

    /// The intervals of region numbers recorded for `loc`.
    fn intervals(&self, loc: u64) -> Option<[u64; 4]> {
        let span = self.index(loc).and_then(|i| self.spans.get(i)).copied()?;
        (span != 0).then(|| span.to_be_bytes().map(|b| u64::from(b) - 1))
    }

    /// Records that leaf `loc` refers to the data blocks `blocks` (none:
    /// nothing recorded), adding to what it held.
    pub fn record_all(&mut self, loc: u64, blocks: &[u64]) {
        let shift = self.shift;
        self.widen(loc, |set| {
            // A leaf's neighbours mostly share a region.
            let mut last = u64::MAX;
            for &block in blocks {
                let r = block >> shift;
                if r != last {
                    add_interval(set, r, r);
                    last = r;
                }
            }
        });
    }

    /// Adds the regions `add` sets to those of `loc`.
    fn widen(&mut self, loc: u64, add: impl FnOnce(&mut Regions)) {
        let Some(i) = self.index(loc).filter(|&i| i < self.spans.len()) else {
            return;
        };
        let mut set = Regions::default();
        if let Some([a, b, c, d]) = self.intervals(loc) {
            add_interval(&mut set, a, b);
            add_interval(&mut set, c, d);
        }
        add(&mut set);
        let Some(iv) = two_intervals(&set) else {
            return;
        };
        // Region numbers are below MAX_REGIONS: + 1 fits the byte.
        self.spans[i] = u32::from_be_bytes(iv.map(|r| (r + 1) as u8));
    }

    /// Whether leaf `loc` may refer to a block of `counts`' window.
    pub fn refers_into(&self, loc: u64, counts: &RefCounts) -> bool {
        let Some([a, b, c, d]) = self.intervals(loc) else {
            return false;
        };
        let (start, end) = (counts.window_start(), counts.window_end());
        if end <= start {
            return false;
        }
        let (first, last) = (start >> self.shift, (end - 1) >> self.shift);
        let meets = |lo: u64, hi: u64| lo <= last && hi >= first;
        meets(a, b) || meets(c, d)
    }

    /// Whether leaf `loc` was recorded (it refers to some data block).
    pub fn contains(&self, loc: u64) -> bool {
        self.intervals(loc).is_some()
    }

    /// The next at most `max` leaves from `*from` on that may refer into
    /// `counts`' window, ascending; `*from` moves past them. Taken a piece
    /// at a time, so that a window the budget ends early skips the leaves
    /// beyond it.
    pub fn next_piece(&self, from: &mut u64, counts: &RefCounts, max: usize) -> Vec<u64> {
        let piece: Vec<u64> = self
            .leaves_from(*from)
            .filter(|&l| self.refers_into(l, counts))
            .take(max)
            .collect();
        if let Some(&last) = piece.last() {
            *from = last + 1;
        }
        piece
    }

    /// The leaves recorded, ascending.
    pub fn leaves(&self) -> impl Iterator<Item = u64> + '_ {
        self.leaves_from(self.base)
    }

    /// The leaves recorded from `from` on, ascending.
    pub fn leaves_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        let (base, skip) = (self.base, from.saturating_sub(self.base));
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.spans
            .iter()
            .enumerate()
            .skip(skip)
            .filter(|(_, &s)| s != 0)
            .map(move |(i, _)| base + i as u64)
    }
}

/// The end to give the window after one of `prev_len` blocks: the same
/// density again, with room to spare (a window ended early only costs one
/// more; one ended late makes its pass read the leaves beyond it until the
/// budget ends it).
pub fn next_window_end(start: u64, prev_len: u64, nr_blocks: u64) -> u64 {
    let len = prev_len.saturating_mul(3) / 2;
    start
        .saturating_add(len.max(CHUNK as u64))
        .next_multiple_of(CHUNK as u64)
        .min(nr_blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_select_the_leaves_of_a_window() {
        let nr = 1 << 32;
        let mut s = LeafSpans::new(nr, 100..110);
        assert_eq!(s.shift, 25);
        // Old blocks and new ones, as a snapshot's leaf holds.
        s.record_all(100, &[5, 7, 1 << 20, 3 << 30]);
        s.record_all(102, &[1 << 31]);
        s.record_all(99, &[0]); // outside: ignored
        s.record_all(110, &[0]);
        s.record_all(103, &[]);
        assert_eq!(s.leaves().collect::<Vec<_>>(), vec![100, 102]);
        assert_eq!(s.leaves_from(101).collect::<Vec<_>>(), vec![102]);
        assert!(s.contains(100) && !s.contains(101) && !s.contains(103));
        let c = CHUNK as u64;
        let w = |from: u64, to| {
            let from = from / c * c;
            RefCounts::window(nr, from, usize::MAX).map(|r| r.ending_by(to))
        };
        let first = w(0, c).unwrap_or_else(|e| panic!("{e}"));
        let middle = w(1 << 31, (1 << 31) + c).unwrap_or_else(|e| panic!("{e}"));
        let last = w(3 << 30, nr).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.refers_into(100, &first) && !s.refers_into(100, &middle));
        assert!(s.refers_into(100, &last) && !s.refers_into(101, &first));
        assert!(!s.refers_into(102, &first) && s.refers_into(102, &middle));
        s.record_all(100, &[1 << 31]);
        assert!(s.refers_into(100, &middle));
    }

    #[test]
    fn two_intervals_split_at_the_widest_gap() {
        let mut set = Regions::default();
        for (a, b) in [(3, 5), (9, 9), (40, 41), (254, 300)] {
            add_interval(&mut set, a, b);
        }
        assert_eq!(two_intervals(&set), Some([3, 41, 254, 254]));
        assert_eq!(two_intervals(&Regions::default()), None);
    }

    #[test]
    fn next_window_ends_on_a_chunk() {
        let c = CHUNK as u64;
        assert_eq!(next_window_end(c, 2 * c, 100 * c), 4 * c);
        assert_eq!(next_window_end(c, 0, 100 * c), 2 * c);
        assert_eq!(next_window_end(c, 1000 * c, 100 * c + 5), 100 * c + 5);
    }
}
