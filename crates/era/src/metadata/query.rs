//! Read-only queries the tools need, on the live state or on the metadata
//! snapshot: the archived writesets, a writeset's bits as runs, the era
//! array, and the blocks written since an era (era_invalidate's answer).
//!
//! Era 0 in the era array means "not written since the array was made":
//! it is the array's initial value, and the kernel never writes in era 0
//! (the first resume starts era 1), so such entries are never counted.

use super::{EraMetadata, ERA_VALUE_SIZE};
use crate::error::{EraError, Result};
use crate::format::superblock::Superblock;
use crate::format::writeset::{WritesetDisk, NO_WRITESET, WRITESET_DISK_SIZE};
use pdata::bitset::{BITS_PER_WORD, WORD_SIZE};
use pdata::block_manager::{le32, le64, BlockRead};
use pdata::{array, bitset, btree};
use std::ops::Range;

/// A run of blocks, `begin..end`.
pub type Run = Range<u64>;

/// What the queries read: the live superblock, or the snapshot's (whose
/// current writeset is not its own: it was empty when taken and is not
/// referenced, so it is left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraView {
    pub nr_blocks: u32,
    pub current_era: u32,
    pub current_writeset: Option<WritesetDisk>,
    pub writeset_tree_root: u64,
    pub era_array_root: u64,
}

impl EraView {
    pub fn live(sb: &Superblock) -> Self {
        let ws = sb.current_writeset;
        EraView {
            nr_blocks: sb.nr_blocks,
            current_era: sb.current_era,
            current_writeset: (ws.root != NO_WRITESET).then_some(ws),
            writeset_tree_root: sb.writeset_tree_root,
            era_array_root: sb.era_array_root,
        }
    }

    pub fn snapshot(sb: &Superblock) -> Self {
        EraView {
            current_writeset: None,
            ..EraView::live(sb)
        }
    }

    /// The archived writesets, by era.
    pub fn writesets(&self, r: &impl BlockRead) -> Result<Vec<(u32, WritesetDisk)>> {
        let mut out = Vec::new();
        btree::walk(r, self.writeset_tree_root, &mut |k, v| {
            let era = u32::try_from(k).map_err(|_| {
                pdata::Error::corrupt(self.writeset_tree_root, "writeset tree", "key past 2^32")
            })?;
            if v.len() != WRITESET_DISK_SIZE {
                return Err(pdata::Error::corrupt(
                    self.writeset_tree_root,
                    "writeset tree",
                    format!("values of {} bytes, not {WRITESET_DISK_SIZE}", v.len()),
                ));
            }
            out.push((era, WritesetDisk::unpack(v)));
            Ok(())
        })?;
        Ok(out)
    }

    /// The writesets of era `since` or later: archived, then the current one.
    pub fn writesets_since(&self, r: &impl BlockRead, since: u32) -> Result<Vec<WritesetDisk>> {
        let mut sets: Vec<WritesetDisk> = self
            .writesets(r)?
            .into_iter()
            .filter(|(era, _)| *era >= since)
            .map(|(_, ws)| ws)
            .collect();
        if self.current_era >= since {
            sets.extend(self.current_writeset);
        }
        Ok(sets)
    }

    /// The runs of set bits of a writeset, below `limit` as well as its
    /// own size.
    pub fn writeset_runs(
        &self,
        r: &impl BlockRead,
        ws: &WritesetDisk,
        limit: u64,
    ) -> Result<Vec<Run>> {
        let mut runs: Vec<Run> = Vec::new();
        let end = limit.min(u64::from(ws.nr_bits));
        bitset::walk(r, ws.root, u64::from(ws.nr_bits), |b, set| {
            if set && b < end {
                push_block(&mut runs, b);
            }
            Ok(())
        })?;
        Ok(runs)
    }

    /// The era array: the era each block was last written in, as far as
    /// the archived writesets have been digested.
    pub fn era_array(&self, r: &impl BlockRead) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.nr_blocks as usize);
        array::walk(r, self.era_array_root, ERA_VALUE_SIZE, |_, v| {
            out.push(le32(v, 0));
            Ok(())
        })?;
        if out.len() != self.nr_blocks as usize {
            return Err(EraError::Invalid(format!(
                "the era array has {} entries for {} blocks",
                out.len(),
                self.nr_blocks
            )));
        }
        Ok(out)
    }

    /// The blocks written in era `since` or later, merged into runs: the
    /// archived writesets of those eras, the current writeset, and the era
    /// array's entries of those eras. One bit per block in memory; the
    /// writesets are folded in a word at a time.
    pub fn written_since(&self, r: &impl BlockRead, since: u32) -> Result<Vec<Run>> {
        let n = u64::from(self.nr_blocks);
        let mut marks = vec![0u64; bitset::nr_words(n) as usize];
        let mut seen = 0u64;
        // A block of entries at a time: no call per entry.
        array::walk_blocks(r, self.era_array_root, ERA_VALUE_SIZE, |first, values| {
            for (i, v) in values.chunks_exact(ERA_VALUE_SIZE).enumerate() {
                let b = first + i as u64;
                let era = le32(v, 0);
                if b < n && era >= since && era != 0 {
                    marks[(b / BITS_PER_WORD) as usize] |= 1 << (b % BITS_PER_WORD);
                }
            }
            seen = first + (values.len() / ERA_VALUE_SIZE) as u64;
            Ok(())
        })?;
        if seen != n {
            return Err(EraError::Invalid(format!(
                "the era array has {seen} entries for {n} blocks"
            )));
        }
        for ws in &self.writesets_since(r, since)? {
            or_writeset(r, ws, n, &mut marks)?;
        }
        let mut runs = Vec::new();
        for (i, &word) in marks.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                let j = u64::from(w.trailing_zeros());
                push_block(&mut runs, i as u64 * BITS_PER_WORD + j);
                w &= w - 1;
            }
        }
        Ok(runs)
    }
}

/// ORs the writeset's bits below `limit` (and its own size) into `marks`,
/// a word at a time; the bitset must hold exactly the words its size needs.
fn or_writeset(r: &impl BlockRead, ws: &WritesetDisk, limit: u64, marks: &mut [u64]) -> Result<()> {
    let nr_bits = u64::from(ws.nr_bits);
    let words = bitset::nr_words(nr_bits);
    let end = limit.min(nr_bits);
    let mut seen = 0u64;
    array::walk_blocks(r, ws.root, WORD_SIZE, |first_word, values| {
        for (k, v) in values.chunks_exact(WORD_SIZE).enumerate() {
            let i = first_word + k as u64;
            if i >= words {
                return Err(pdata::Error::corrupt(
                    ws.root,
                    "bitset",
                    "longer than its bits need",
                ));
            }
            let first = i * BITS_PER_WORD;
            if first < end {
                let live = (end - first).min(BITS_PER_WORD);
                let mask = if live == BITS_PER_WORD {
                    !0
                } else {
                    (1u64 << live) - 1
                };
                marks[i as usize] |= le64(v, 0) & mask;
            }
            seen = i + 1;
        }
        Ok(())
    })?;
    if seen != words {
        return Err(pdata::Error::corrupt(
            ws.root,
            "bitset",
            format!("{seen} words where {nr_bits} bits need {words}"),
        )
        .into());
    }
    Ok(())
}

/// Appends block `b` (increasing) to `runs`, extending the last run.
pub(crate) fn push_block(runs: &mut Vec<Run>, b: u64) {
    match runs.last_mut() {
        Some(r) if r.end == b => r.end = b + 1,
        _ => runs.push(b..b + 1),
    }
}

impl EraMetadata {
    /// The metadata snapshot's view, if there is a snapshot.
    pub fn snapshot_view(&self) -> Result<Option<EraView>> {
        match self.metadata_snap() {
            None => Ok(None),
            Some(loc) => Ok(Some(EraView::snapshot(&self.read_snapshot(loc)?))),
        }
    }

    /// The archived writesets of the live state, by era.
    pub fn writesets(&self) -> Result<Vec<(u32, WritesetDisk)>> {
        self.tm.check_alive()?;
        self.view().writesets(&self.tm)
    }

    /// The runs of set bits of a writeset (clipped to the origin's size).
    pub fn writeset_runs(&self, ws: &WritesetDisk) -> Result<Vec<Run>> {
        self.tm.check_alive()?;
        self.view()
            .writeset_runs(&self.tm, ws, u64::from(self.sb.nr_blocks))
    }

    pub fn era_array(&self) -> Result<Vec<u32>> {
        self.tm.check_alive()?;
        self.view().era_array(&self.tm)
    }

    /// era_invalidate's answer on the live state.
    pub fn written_since(&self, era: u32) -> Result<Vec<Run>> {
        self.tm.check_alive()?;
        self.view().written_since(&self.tm, era)
    }

    /// era_invalidate --metadata-snapshot's answer; `NoSnapshot` without one.
    pub fn snapshot_written_since(&self, era: u32) -> Result<Vec<Run>> {
        self.tm.check_alive()?;
        let view = self.snapshot_view()?.ok_or(EraError::NoSnapshot)?;
        view.written_since(&self.tm, era)
    }
}
