//! A visitor that passes events on, counting mappings into a progress bar.

use crate::tools::cli::Progress;
use thin::ir::{PoolInfo, Run, Visitor};
use thin::{DeviceDetails, Result};

pub struct Counted<'a, V: Visitor> {
    pub inner: V,
    pub progress: &'a Progress,
}

impl<V: Visitor> Visitor for Counted<'_, V> {
    fn superblock_begin(&mut self, p: &PoolInfo) -> Result<()> {
        self.inner.superblock_begin(p)
    }
    fn device_begin(&mut self, id: u64, d: &DeviceDetails) -> Result<()> {
        self.inner.device_begin(id, d)
    }
    #[inline]
    fn run(&mut self, r: &Run) -> Result<()> {
        self.progress.add(r.len);
        self.inner.run(r)
    }
    fn device_end(&mut self) -> Result<()> {
        self.inner.device_end()
    }
    fn superblock_end(&mut self) -> Result<()> {
        self.inner.superblock_end()
    }
}
