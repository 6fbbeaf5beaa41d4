//! Value types: how reference counts follow the values stored in leaves.

use crate::block_manager::le64;
use crate::tm_ops::TransactionOps;
use crate::Result;

/// The reference-count behaviour of a tree's leaf values.
pub trait ValueType {
    /// Bytes per value.
    fn size(&self) -> usize;

    /// `values` (packed) were duplicated: a shared leaf was copied.
    fn inc(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        let _ = (tm, values);
        Ok(())
    }

    /// `values` (packed) were removed or overwritten.
    fn dec(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        let _ = (tm, values);
        Ok(())
    }

    /// Overwriting `old` with `new` releases `old` unless they are equal.
    fn equal(&self, old: &[u8], new: &[u8]) -> bool {
        old == new
    }
}

/// Plain values with no reference counting (details, index entries, counts).
pub struct NoRefs(pub usize);

impl ValueType for NoRefs {
    fn size(&self) -> usize {
        self.0
    }
}

/// le64 metadata block numbers, each holding one reference on its block:
/// the upper levels of multi-level trees (sub-tree roots).
pub struct BlockRefs;

impl ValueType for BlockRefs {
    fn size(&self) -> usize {
        8
    }

    fn inc(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        for v in values.chunks_exact(8) {
            tm.inc(le64(v, 0))?;
        }
        Ok(())
    }

    fn dec(&mut self, tm: &mut dyn TransactionOps, values: &[u8]) -> Result<()> {
        for v in values.chunks_exact(8) {
            tm.dec(le64(v, 0))?;
        }
        Ok(())
    }
}
