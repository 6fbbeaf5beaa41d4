//! Plays a recovery plan to a [`Visitor`].

use super::reader::Reader;
use crate::format::block_time::BlockTime;
use crate::ir::{PoolInfo, RunJoiner, Visitor};
use crate::{DeviceDetails, Result};

/// A device as it will be recovered.
pub(crate) struct PlannedDevice {
    pub id: u64,
    pub details: DeviceDetails,
    /// Roots of whole mapping sub-trees, in key order, keys disjoint.
    pub subtrees: Vec<u64>,
}

pub(crate) struct Plan {
    pub pool: PoolInfo,
    pub devices: Vec<PlannedDevice>,
}

/// Mappings to data blocks at or past `pool.nr_data_blocks` are left out
/// (the plan's counts already leave them out).
pub(crate) fn emit(plan: &Plan, r: &Reader, out: &mut dyn Visitor) -> Result<()> {
    let limit = plan.pool.nr_data_blocks;
    out.superblock_begin(&plan.pool)?;
    for d in &plan.devices {
        out.device_begin(d.id, &d.details)?;
        let mut joiner = RunJoiner::new();
        let mut failed = None;
        for &root in &d.subtrees {
            pdata::btree::walk(r, root, &mut |k, v| {
                let bt = BlockTime::from_bytes(v);
                if bt.block >= limit {
                    return Ok(());
                }
                if let Some(run) = joiner.push(k, bt.block, bt.time) {
                    if let Err(e) = out.run(&run) {
                        failed = Some(e);
                        return Err(pdata::Error::invalid("output failed"));
                    }
                }
                Ok(())
            })
            .map_err(|e| failed.take().unwrap_or(e.into()))?;
        }
        if let Some(run) = joiner.finish() {
            out.run(&run)?;
        }
        out.device_end()?;
    }
    out.superblock_end()
}
