//! What `thin_migrate` copies: a thin device's content as a stream of
//! extents in thin-block order, from the mapping walk (every block of the
//! volume: mapped runs to copy, unmapped gaps to zero) or, for the
//! incremental form, from the diff against a base device (only what
//! differs: blocks mapped in the device and not to the same data block as
//! in the base are copied, blocks mapped only in the base are zeroed). The
//! I/O is the tool's; this is only the plan, read from committed metadata
//! (the live superblock's or a metadata snapshot's tree), one leaf at a
//! time.

use crate::query::cursor::{Run, RunCursor};
use crate::query::delta::{DeltaCursor, Kind};
use pdata::block_manager::BlockRead;
use pdata::btree;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Pdata(#[from] pdata::Error),
    #[error("thin device {0} does not exist")]
    NoSuchDevice(u64),
    #[error("thin device {dev} maps block {block}, past the end of the volume ({end} blocks)")]
    PastEnd { dev: u64, block: u64, end: u64 },
}

pub type Result<T> = std::result::Result<T, MigrateError>;

/// A stretch of the volume, in thin blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// `len` blocks from thin block `begin` hold data blocks `data..`.
    Copy { begin: u64, data: u64, len: u64 },
    /// `len` blocks from thin block `begin` read as zeros.
    Zero { begin: u64, len: u64 },
}

impl Extent {
    /// One past the last thin block of the extent.
    pub fn end(&self) -> u64 {
        match *self {
            Extent::Copy { begin, len, .. } | Extent::Zero { begin, len } => begin + len,
        }
    }
}

/// The mapping-tree root of thin device `dev` under the top-level tree
/// `mapping_root`.
pub fn device_root(r: &impl BlockRead, mapping_root: u64, dev: u64) -> Result<u64> {
    crate::query::device_root(r, mapping_root, dev)?.ok_or(MigrateError::NoSuchDevice(dev))
}

/// One past the highest thin block the tree `root` maps (0 when it maps
/// none): the least size, in blocks, the volume can have.
pub fn mapped_end(r: &impl BlockRead, root: u64) -> Result<u64> {
    Ok(btree::find_highest(r, root)?.map_or(0, |(k, _)| k.saturating_add(1)))
}

enum Source<'a, R: BlockRead> {
    Full {
        runs: RunCursor<'a, R>,
        /// The next run, read ahead while the gap before it is handed out.
        pending: Option<Run>,
        done: bool,
    },
    Delta(DeltaCursor<'a, R>),
}

/// The extents of device `dev` over a volume of `end` blocks.
pub struct Plan<'a, R: BlockRead> {
    source: Source<'a, R>,
    dev: u64,
    end: u64,
    /// The first thin block not yet handed out (the full plan's gaps).
    next: u64,
}

impl<'a, R: BlockRead> Plan<'a, R> {
    /// Every block of the volume: its mapped runs and the gaps between
    /// (and after) them, for a destination that holds nothing of it.
    pub fn full(r: &'a R, dev: u64, root: u64, end: u64) -> Self {
        let source = Source::Full {
            runs: RunCursor::new(r, root),
            pending: None,
            done: false,
        };
        Plan {
            source,
            dev,
            end,
            next: 0,
        }
    }

    /// Only what differs from the base device (tree `base_root`), for a
    /// destination that holds the base's content. Blocks past `end` that
    /// only the base maps are left alone.
    pub fn delta(r: &'a R, dev: u64, root: u64, base_root: u64, end: u64) -> Self {
        Plan {
            source: Source::Delta(DeltaCursor::new(r, base_root, root)),
            dev,
            end,
            next: 0,
        }
    }

    /// The next extent, in thin-block order; None at the end.
    pub fn next_extent(&mut self) -> Result<Option<Extent>> {
        let (dev, end) = (self.dev, self.end);
        let copy = |begin: u64, data: u64, len: u64| {
            if begin.saturating_add(len) > end {
                return Err(MigrateError::PastEnd {
                    dev,
                    block: begin.max(end),
                    end,
                });
            }
            Ok(Some(Extent::Copy { begin, data, len }))
        };
        match &mut self.source {
            Source::Full {
                runs,
                pending,
                done,
            } => {
                if pending.is_none() && !*done {
                    *pending = runs.next_run()?;
                    *done = pending.is_none();
                }
                let gap_end = pending.map_or(end, |r| r.thin_begin.min(end));
                if self.next < gap_end {
                    let z = Extent::Zero {
                        begin: self.next,
                        len: gap_end - self.next,
                    };
                    self.next = gap_end;
                    return Ok(Some(z));
                }
                let Some(run) = pending.take() else {
                    return Ok(None);
                };
                self.next = run.thin_begin.saturating_add(run.len);
                copy(run.thin_begin, run.data_begin, run.len)
            }
            Source::Delta(diff) => loop {
                let Some(p) = diff.next_piece()? else {
                    return Ok(None);
                };
                match p.kind {
                    Kind::Same => {}
                    // Only the base maps these: zeros, as far as the volume goes.
                    Kind::LeftOnly if p.begin >= end => {}
                    Kind::LeftOnly => {
                        return Ok(Some(Extent::Zero {
                            begin: p.begin,
                            len: p.len.min(end - p.begin),
                        }))
                    }
                    Kind::RightOnly => return copy(p.begin, p.data, p.len),
                    Kind::Different => return copy(p.begin, p.right_data, p.len),
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
