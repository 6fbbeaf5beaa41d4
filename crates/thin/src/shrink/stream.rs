//! Planning a shrink from an event stream (a pool read from XML), which
//! carries no space map: a block is free when no mapping points at it.

use super::{check_fits, pair, Plan, Result};
use crate::ir::{PoolInfo, Run, Visitor};
use crate::{DeviceDetails, ThinError};
use pdata::space_map::RefCounts;
use std::ops::Range;

/// A visitor that counts the data blocks mapped (memory follows the blocks
/// mapped, not the size of the pool).
#[derive(Default)]
pub struct MappedBlocks {
    pool: Option<PoolInfo>,
    counts: Option<RefCounts>,
}

impl MappedBlocks {
    /// The pool's superblock, once read.
    pub fn pool(&self) -> Option<&PoolInfo> {
        self.pool.as_ref()
    }

    /// Plans moving every mapped block at or above `new_nr_blocks` to the
    /// lowest unmapped blocks below it, as [`super::plan`] does.
    pub fn plan(&self, new_nr_blocks: u64) -> Result<Plan> {
        let counts = self
            .counts
            .as_ref()
            .ok_or_else(|| ThinError::Invalid("no superblock in the input".into()))?;
        let old_nr_blocks = counts.nr_blocks();
        let mut plan = Plan::unmoved(old_nr_blocks, new_nr_blocks);
        if new_nr_blocks >= old_nr_blocks {
            return Ok(plan);
        }
        let moving = count_counted(counts, new_nr_blocks..old_nr_blocks);
        if moving == 0 {
            return Ok(plan);
        }
        let free = new_nr_blocks - count_counted(counts, 0..new_nr_blocks);
        check_fits(new_nr_blocks, moving, free)?;
        let targets = uncounted(counts, new_nr_blocks, moving);
        pair(&mut plan, counts, targets);
        Ok(plan)
    }
}

/// How many blocks of `r` have a count.
fn count_counted(counts: &RefCounts, r: Range<u64>) -> u64 {
    let (mut n, mut b) = (0, r.start);
    while let Some(c) = counts.first_counted_in(b..r.end) {
        n += 1;
        b = c + 1;
    }
    n
}

/// The lowest runs of blocks below `end` without a count, `need` blocks
/// in all (there are that many).
fn uncounted(counts: &RefCounts, end: u64, need: u64) -> Vec<Range<u64>> {
    let (mut out, mut got, mut b) = (Vec::new(), 0, 0);
    while got < need && b < end {
        let next = counts.first_counted_in(b..end).unwrap_or(end);
        let n = (next - b).min(need - got);
        if n > 0 {
            out.push(b..b + n);
            got += n;
        }
        // Past the counted run that starts at `next`.
        b = next;
        while b < end && counts.get(b) != Some(0) {
            b += 1;
        }
    }
    out
}

impl Visitor for MappedBlocks {
    fn superblock_begin(&mut self, pool: &PoolInfo) -> crate::Result<()> {
        self.counts = Some(RefCounts::new(pool.nr_data_blocks)?);
        self.pool = Some(pool.clone());
        Ok(())
    }

    fn device_begin(&mut self, _: u64, _: &DeviceDetails) -> crate::Result<()> {
        Ok(())
    }

    fn run(&mut self, run: &Run) -> crate::Result<()> {
        let counts = self
            .counts
            .as_mut()
            .ok_or_else(|| ThinError::Invalid("a mapping before the superblock".into()))?;
        let nr_blocks = counts.nr_blocks();
        if run.data.saturating_add(run.len) > nr_blocks {
            return Err(ThinError::DataBlockOutOfRange {
                block: run.data.max(nr_blocks),
                nr_blocks,
            });
        }
        Ok(counts.inc_range(run.data, run.len)?)
    }

    fn device_end(&mut self) -> crate::Result<()> {
        Ok(())
    }

    fn superblock_end(&mut self) -> crate::Result<()> {
        Ok(())
    }
}
