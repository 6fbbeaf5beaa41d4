//! How reference counts follow the values of the thin trees.

use crate::format::block_time::BlockTime;
use pdata::block_manager::le64;
use pdata::btree::{self, BlockRefs, ValueType};
use pdata::space_map::DiskSpaceMap;
use pdata::tm_ops::TransactionOps;
use pdata::Result;

/// Bottom level of the mapping tree: block_time values, each holding one
/// data space-map reference on its data block. Equal = same data block.
pub struct DataRefs<'a>(pub &'a mut DiskSpaceMap);

impl ValueType for DataRefs<'_> {
    fn size(&self) -> usize {
        8
    }

    fn inc(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        for v in values.chunks_exact(8) {
            self.0.inc(tm, BlockTime::from_bytes(v).block)?;
        }
        Ok(())
    }

    fn dec(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        for v in values.chunks_exact(8) {
            self.0.dec(tm, BlockTime::from_bytes(v).block)?;
        }
        Ok(())
    }

    fn equal(&self, old: &[u8], new: &[u8]) -> bool {
        BlockTime::from_bytes(old).block == BlockTime::from_bytes(new).block
    }
}

/// Top level of the mapping tree seen as a tree of its own: each value is a
/// device's mapping tree; releasing it deletes that tree (or, if shared,
/// drops one reference to its root).
pub struct SubtreeRefs<'a>(pub &'a mut DiskSpaceMap);

impl ValueType for SubtreeRefs<'_> {
    fn size(&self) -> usize {
        8
    }

    /// Sharing a device's tree adds one reference to its root.
    fn inc(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        BlockRefs.inc(tm, values)
    }

    fn dec(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        for v in values.chunks_exact(8) {
            btree::delete_tree(tm, le64(v, 0), 1, &mut DataRefs(self.0))?;
        }
        Ok(())
    }
}
