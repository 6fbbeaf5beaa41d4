//! Deleting a whole (multi-level) tree: release every node no other tree
//! shares, and every value of the released leaves.

use super::lookup::MAX_DEPTH;
use super::node::{Node, NODE_VALIDATOR};
use super::value::ValueType;
use crate::block_manager::new_block_buffer;
use crate::tm_ops::TransactionOps;
use crate::Result;

/// Drops one reference to the tree at `root` with `levels` levels. A shared
/// node only loses that reference; its children keep theirs.
pub fn delete_tree(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    levels: usize,
    vt: &mut dyn ValueType,
) -> Result<()> {
    del(tm, root, 0, levels, vt, 0)
}

fn del(
    tm: &mut (impl TransactionOps + ?Sized),
    loc: u64,
    level: usize,
    levels: usize,
    vt: &mut dyn ValueType,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH * levels.max(1) {
        return Err(super::cycle(loc));
    }
    if tm.ref_count(loc)? > 1 {
        return tm.dec(loc);
    }
    let mut copy = new_block_buffer();
    copy.copy_from_slice(&tm.read_lock(loc, &NODE_VALIDATOR)?[..]);
    let n = Node(&copy);
    if n.is_internal() {
        for i in 0..n.nr_entries() {
            del(tm, n.value_u64(i), level, levels, vt, depth + 1)?;
        }
    } else if level + 1 < levels {
        for i in 0..n.nr_entries() {
            del(tm, n.value_u64(i), level + 1, levels, vt, depth + 1)?;
        }
    } else {
        vt.dec(tm.as_dyn(), n.values())?;
    }
    tm.dec(loc)
}
