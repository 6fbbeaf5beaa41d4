//! Two devices' mappings side by side (`thin_delta`, `thin_migrate
//! --delta-id`): both are streamed as runs and merged in thin-block order,
//! each run cut where the other side starts or ends. Nothing is held per
//! mapping; a leaf the two devices share is read twice, from the cache.

use super::cursor::{Run, RunCursor};
use pdata::block_manager::BlockRead;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Mapped on the left only.
    LeftOnly,
    /// Mapped on the right only.
    RightOnly,
    /// Mapped on both sides, to different data blocks.
    Different,
    /// Mapped on both sides to the same data blocks.
    Same,
}

/// `len` thin blocks from `begin`, all of one kind, with the data blocks
/// each side maps them to: `data` is the left side's (the right's for
/// `RightOnly`), `right_data` the right side's for `Different` (else 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub kind: Kind,
    pub begin: u64,
    pub data: u64,
    pub right_data: u64,
    pub len: u64,
}

/// The pieces of the diff of two mapping trees, in thin-block order.
pub struct DeltaCursor<'a, R: BlockRead> {
    left: RunCursor<'a, R>,
    right: RunCursor<'a, R>,
    /// What is left of each side's current run; None at its end.
    l: Option<Run>,
    r: Option<Run>,
    started: bool,
}

impl<'a, R: BlockRead> DeltaCursor<'a, R> {
    pub fn new(r: &'a R, left_root: u64, right_root: u64) -> Self {
        DeltaCursor {
            left: RunCursor::new(r, left_root),
            right: RunCursor::new(r, right_root),
            l: None,
            r: None,
            started: false,
        }
    }

    pub fn next_piece(&mut self) -> pdata::Result<Option<Piece>> {
        if !self.started {
            self.started = true;
            self.l = self.left.next_run()?;
            self.r = self.right.next_run()?;
        }
        let piece = |kind, begin, data, right_data, len| Piece {
            kind,
            begin,
            data,
            right_data,
            len,
        };
        let p = match (self.l, self.r) {
            (None, None) => return Ok(None),
            (Some(lm), None) => piece(Kind::LeftOnly, lm.thin_begin, lm.data_begin, 0, lm.len),
            (None, Some(rm)) => piece(Kind::RightOnly, rm.thin_begin, rm.data_begin, 0, rm.len),
            (Some(lm), Some(rm)) if lm.thin_begin < rm.thin_begin => {
                let len = lm.len.min(rm.thin_begin - lm.thin_begin);
                piece(Kind::LeftOnly, lm.thin_begin, lm.data_begin, 0, len)
            }
            (Some(lm), Some(rm)) if rm.thin_begin < lm.thin_begin => {
                let len = rm.len.min(lm.thin_begin - rm.thin_begin);
                piece(Kind::RightOnly, rm.thin_begin, rm.data_begin, 0, len)
            }
            (Some(lm), Some(rm)) => {
                let kind = if lm.data_begin == rm.data_begin {
                    Kind::Same
                } else {
                    Kind::Different
                };
                let len = lm.len.min(rm.len);
                piece(kind, lm.thin_begin, lm.data_begin, rm.data_begin, len)
            }
        };
        if p.kind != Kind::RightOnly {
            self.l = consume(&mut self.left, self.l, p.len)?;
        }
        if p.kind != Kind::LeftOnly {
            self.r = consume(&mut self.right, self.r, p.len)?;
        }
        Ok(Some(p))
    }
}

/// What is left of `run` after its first `len` blocks (the next run when
/// nothing is).
fn consume<R: BlockRead>(
    c: &mut RunCursor<R>,
    run: Option<Run>,
    len: u64,
) -> pdata::Result<Option<Run>> {
    match run {
        Some(run) if len < run.len => Ok(Some(Run {
            thin_begin: run.thin_begin + len,
            data_begin: run.data_begin + len,
            len: run.len - len,
        })),
        _ => c.next_run(),
    }
}
