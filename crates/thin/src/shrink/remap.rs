//! The event-stream filter of a shrink: a walk of the old metadata goes
//! in, the same pool comes out with the new size and every run's data
//! blocks at their planned places (a block shared by several devices maps
//! to the same new block in each, so it stays shared).

use super::Plan;
use crate::ir::{PoolInfo, Run, Visitor};
use crate::{DeviceDetails, Result};

pub struct Remapped<'p, V: Visitor> {
    pub plan: &'p Plan,
    pub inner: V,
}

impl<V: Visitor> Visitor for Remapped<'_, V> {
    fn superblock_begin(&mut self, pool: &PoolInfo) -> Result<()> {
        self.inner.superblock_begin(&PoolInfo {
            nr_data_blocks: self.plan.new_nr_blocks,
            metadata_snap: None,
            ..pool.clone()
        })
    }

    fn device_begin(&mut self, dev_id: u64, details: &DeviceDetails) -> Result<()> {
        self.inner.device_begin(dev_id, details)
    }

    fn run(&mut self, run: &Run) -> Result<()> {
        let inner = &mut self.inner;
        self.plan.remap_run(run, &mut |r| inner.run(r))
    }

    fn device_end(&mut self) -> Result<()> {
        self.inner.device_end()
    }

    fn superblock_end(&mut self) -> Result<()> {
        self.inner.superblock_end()
    }
}
