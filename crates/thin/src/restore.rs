//! Builds metadata from a [`Visitor`] event stream through the live
//! operations, one insert per mapping: the writing half of `thin_restore`.

use crate::ir::{PoolInfo, Run, Visitor};
use crate::{DeviceDetails, Result, ThinError, ThinMetadata};
use pdata::io::BlockDevice;
use std::sync::Arc;

pub struct Restorer {
    dev: Arc<dyn BlockDevice>,
    md: Option<ThinMetadata>,
    pool: PoolInfo,
    current: Option<u64>,
}

impl Restorer {
    pub fn new(dev: Arc<dyn BlockDevice>) -> Self {
        Restorer {
            dev,
            md: None,
            pool: PoolInfo::default(),
            current: None,
        }
    }

    fn md(&mut self) -> Result<&mut ThinMetadata> {
        self.md
            .as_mut()
            .ok_or_else(|| ThinError::Invalid("no superblock before the devices".into()))
    }
}

impl Visitor for Restorer {
    fn superblock_begin(&mut self, pool: &PoolInfo) -> Result<()> {
        if self.md.is_some() {
            return Err(ThinError::Invalid("a second superblock".into()));
        }
        self.md = Some(ThinMetadata::format(
            self.dev.clone(),
            pool.data_block_size,
            pool.nr_data_blocks,
            true,
        )?);
        self.pool = pool.clone();
        Ok(())
    }

    fn device_begin(&mut self, dev_id: u64, details: &DeviceDetails) -> Result<()> {
        self.md()?.restore_device(dev_id, *details)?;
        self.current = Some(dev_id);
        Ok(())
    }

    fn run(&mut self, run: &Run) -> Result<()> {
        let dev = self
            .current
            .ok_or_else(|| ThinError::Invalid("a mapping outside a device".into()))?;
        let md = self.md()?;
        for k in 0..run.len {
            md.restore_mapping(dev, run.origin + k, run.data + k, run.time)?;
        }
        Ok(())
    }

    fn device_end(&mut self) -> Result<()> {
        self.current = None;
        Ok(())
    }

    fn superblock_end(&mut self) -> Result<()> {
        let (time, trans, flags) = (self.pool.time, self.pool.transaction_id, self.pool.flags);
        let md = self.md()?;
        md.restore_superblock(time, trans, flags);
        md.commit()
    }
}
