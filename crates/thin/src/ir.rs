//! A pool as a stream of events: what `thin_dump` writes, what
//! `thin_restore` reads, what `thin_repair` recovers. Readers (a metadata
//! walk, an XML parser, a repair scan) call a [`Visitor`]; writers (XML or
//! text output, the metadata builder) implement it.
//!
//! Order: `superblock_begin`, then for each device in increasing id order
//! `device_begin`, its runs in increasing origin order, `device_end`; then
//! `superblock_end`.

use crate::{DeviceDetails, Result};

/// The pool-wide fields a dump carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolInfo {
    pub uuid: String,
    pub time: u32,
    pub transaction_id: u64,
    pub flags: u32,
    pub version: u32,
    pub data_block_size: u32,
    pub nr_data_blocks: u64,
    /// The metadata snapshot's block, when a dump names it.
    pub metadata_snap: Option<u64>,
}

/// `len` consecutive mappings: origin+i -> data+i, all with `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub origin: u64,
    pub data: u64,
    pub len: u64,
    pub time: u32,
}

/// Receives a pool, event by event.
pub trait Visitor {
    fn superblock_begin(&mut self, pool: &PoolInfo) -> Result<()>;
    fn device_begin(&mut self, dev_id: u64, details: &DeviceDetails) -> Result<()>;
    fn run(&mut self, run: &Run) -> Result<()>;
    fn device_end(&mut self) -> Result<()>;
    fn superblock_end(&mut self) -> Result<()>;
}

/// Joins single mappings into maximal runs (origin +1, data +1, same time)
/// before passing them on.
pub struct RunJoiner {
    pending: Option<Run>,
}

impl RunJoiner {
    pub fn new() -> Self {
        RunJoiner { pending: None }
    }

    /// Adds one mapping; gives back the run it closed, if any.
    #[inline]
    pub fn push(&mut self, origin: u64, data: u64, time: u32) -> Option<Run> {
        if let Some(r) = &mut self.pending {
            if origin == r.origin + r.len && data == r.data + r.len && time == r.time {
                r.len += 1;
                return None;
            }
        }
        self.pending.replace(Run {
            origin,
            data,
            len: 1,
            time,
        })
    }

    /// The last open run.
    pub fn finish(&mut self) -> Option<Run> {
        self.pending.take()
    }
}

impl Default for RunJoiner {
    fn default() -> Self {
        Self::new()
    }
}
