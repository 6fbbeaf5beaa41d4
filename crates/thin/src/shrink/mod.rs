//! Making a pool fit a smaller data device (`thin_shrink`): the plan of
//! which data blocks move where, the copy of their data on the data
//! device, and the event-stream filter that rewrites the mappings while
//! the metadata walk (`crate::dump`) feeds the bulk builder
//! (`crate::restore::Restorer`).
//!
//! Safety rests on one rule: data moves only into blocks that are free in
//! the old metadata's data space map (and that no mapping of the live
//! pool or of its metadata snapshot points at). The old metadata is never
//! written, so until the new metadata replaces it the old pool is intact
//! and usable, whatever happened halfway; a run repeated on the same old
//! metadata makes the same plan and the same copy.
//!
//! Memory: the blocks to move are counted in a [`RefCounts`] holding only
//! blocks at or above the new size, and the plan is a list of ranges;
//! both follow the blocks moved, not the size of the device.

mod copy;
mod remap;
mod stream;

pub use copy::{copy_data, DataDevice};
pub use remap::Remapped;
pub use stream::MappedBlocks;

use crate::ir::Run;
use crate::query::device_roots;
use crate::query::free_space::{free_ranges_until, visit_mapped_blocks};
use crate::{ThinError, ThinMetadata};
use pdata::live::LiveMetadata;
use pdata::space_map::RefCounts;
use std::ops::{ControlFlow, Range};

#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error(transparent)]
    Thin(#[from] ThinError),
    #[error(transparent)]
    Pdata(#[from] pdata::Error),
    #[error("{moved} mapped data blocks lie at or above block {nr_blocks}, but only {free} blocks below it are free: {missing} blocks missing; nothing was written")]
    DoesNotFit {
        nr_blocks: u64,
        moved: u64,
        free: u64,
        missing: u64,
    },
    #[error("data block {0} is mapped but free in the data space map: the metadata is damaged (run thin_check); nothing was written")]
    MappedButFree(u64),
    #[error("the data device holds {size} bytes, but the pool's data reaches byte {needed}: is this the pool's data device?")]
    DataTooSmall { size: u64, needed: u64 },
    #[error("{op} the data device at byte {offset} failed: {source}")]
    DataIo {
        op: &'static str,
        offset: u64,
        source: std::io::Error,
    },
}

pub type Result<T, E = ShrinkError> = std::result::Result<T, E>;

/// `len` data blocks moving from `from..` to `to..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub from: u64,
    pub to: u64,
    pub len: u64,
}

/// Which data blocks move where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub old_nr_blocks: u64,
    pub new_nr_blocks: u64,
    /// In increasing order of `from`, and so of `to`: sources and targets
    /// are paired in ascending order. Every mapped block at or above
    /// `new_nr_blocks` is in exactly one move.
    pub moves: Vec<Move>,
}

impl Plan {
    /// Nothing moved (yet).
    fn unmoved(old_nr_blocks: u64, new_nr_blocks: u64) -> Plan {
        Plan {
            old_nr_blocks,
            new_nr_blocks,
            moves: Vec::new(),
        }
    }

    pub fn blocks_moved(&self) -> u64 {
        self.moves.iter().map(|m| m.len).sum()
    }

    /// Where data block `b` lives after the shrink.
    pub fn new_location(&self, b: u64) -> Option<u64> {
        if b < self.new_nr_blocks {
            return Some(b);
        }
        let m = self.moves.get(self.move_at(b))?;
        (m.from <= b).then(|| m.to + (b - m.from))
    }

    /// The index of the first move that ends after `b`.
    fn move_at(&self, b: u64) -> usize {
        self.moves.partition_point(|m| m.from + m.len <= b)
    }

    /// `run` with its data blocks at their new places, in pieces where the
    /// moves split it, each passed to `f` in origin order.
    pub fn remap_run(
        &self,
        run: &Run,
        f: &mut dyn FnMut(&Run) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let (mut origin, mut data, mut left) = (run.origin, run.data, run.len);
        while left > 0 {
            let (to, n) = if data < self.new_nr_blocks {
                (data, left.min(self.new_nr_blocks - data))
            } else {
                match self.moves.get(self.move_at(data)) {
                    Some(m) if m.from <= data => {
                        let off = data - m.from;
                        (m.to + off, left.min(m.len - off))
                    }
                    _ => {
                        return Err(ThinError::Invalid(format!(
                            "data block {data} is mapped but has no place in the shrunk pool (did the metadata change?)"
                        )))
                    }
                }
            };
            f(&Run {
                origin,
                data: to,
                len: n,
                time: run.time,
            })?;
            origin += n;
            data += n;
            left -= n;
        }
        Ok(())
    }
}

/// Plans shrinking the pool of `md` to `new_nr_blocks` data blocks: every
/// data block the live pool maps at or above the new size moves to a block
/// below it that is free in the data space map, the lowest first. A
/// metadata snapshot's mappings are not moved (the shrunk metadata holds
/// no snapshot), but their blocks are never targets. A new size at or
/// above the current one moves nothing.
pub fn plan(md: &ThinMetadata, new_nr_blocks: u64) -> Result<Plan> {
    let tm = md.transaction_manager();
    let sb = md.superblock();
    let old_nr_blocks = sb.data_sm_root.nr_blocks;
    let mut plan = Plan::unmoved(old_nr_blocks, new_nr_blocks);
    if new_nr_blocks >= old_nr_blocks {
        return Ok(plan);
    }
    let live: Vec<u64> = device_roots(tm, sb.data_mapping_root)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();

    // The distinct blocks to move.
    let mut moving = RefCounts::new(old_nr_blocks)?;
    let mut nr_moving = 0u64;
    visit_mapped_blocks(tm, &live, &mut |b| {
        if b >= old_nr_blocks {
            return Err(ThinError::DataBlockOutOfRange {
                block: b,
                nr_blocks: old_nr_blocks,
            });
        }
        if b >= new_nr_blocks && moving.inc(b) == 0 {
            nr_moving += 1;
        }
        Ok(())
    })?;
    if nr_moving == 0 {
        return Ok(plan);
    }

    // The lowest free blocks below the new size take them; the space map
    // is read only as far as it takes to find them.
    let mut targets: Vec<Range<u64>> = Vec::new();
    let mut free = 0u64;
    free_ranges_until(tm, &sb.data_sm_root, new_nr_blocks, &mut |r| {
        let n = (r.end - r.start).min(nr_moving - free);
        targets.push(r.start..r.start + n);
        free += n;
        Ok(if free == nr_moving {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    check_fits(new_nr_blocks, nr_moving, free)?;

    // A target some mapping points at would overwrite its data: the space
    // map is wrong, and nothing may be copied.
    let mut roots = live;
    if let Some(snap) = md.metadata_snap()? {
        roots.extend(
            device_roots(tm, snap.data_mapping_root)?
                .into_iter()
                .map(|(_, r)| r),
        );
    }
    let mut damaged = None;
    visit_mapped_blocks(tm, &roots, &mut |b| {
        let i = targets.partition_point(|t| t.end <= b);
        if targets.get(i).is_some_and(|t| t.start <= b) {
            damaged.get_or_insert(b);
        }
        Ok(())
    })?;
    if let Some(b) = damaged {
        return Err(ShrinkError::MappedButFree(b));
    }

    pair(&mut plan, &moving, targets);
    Ok(plan)
}

/// Refuses when `moved` blocks need a place and only `free` blocks below
/// `new_nr_blocks` can take them.
fn check_fits(new_nr_blocks: u64, moved: u64, free: u64) -> Result<()> {
    if free < moved {
        return Err(ShrinkError::DoesNotFit {
            nr_blocks: new_nr_blocks,
            moved,
            free,
            missing: moved - free,
        });
    }
    Ok(())
}

/// Pairs the blocks counted in `moving` at or above the new size with the
/// blocks of `targets`, both in ascending order, into `plan`'s moves,
/// joining what runs on.
fn pair(plan: &mut Plan, moving: &RefCounts, targets: Vec<Range<u64>>) {
    let mut src = plan.new_nr_blocks;
    for t in targets {
        let mut to = t.start;
        while to < t.end {
            let Some(from) = moving.first_counted_in(src..plan.old_nr_blocks) else {
                return;
            };
            match plan.moves.last_mut() {
                Some(m) if m.from + m.len == from && m.to + m.len == to => m.len += 1,
                _ => plan.moves.push(Move { from, to, len: 1 }),
            }
            src = from + 1;
            to += 1;
        }
    }
}

#[cfg(test)]
mod tests;
