//! Read-only questions about committed metadata, for the small tools:
//! mappings as a stream of runs (`thin_delta`), data blocks shared or held
//! by one device (`thin_ls`), reverse maps (`thin_rmap`), free data blocks
//! (`thin_trim`), two devices side by side (`thin_delta`, `thin_migrate`).
//! Nothing here changes the metadata.

pub mod cursor;
pub mod delta;
pub mod free_space;
pub mod leaves;
pub mod rmap;
pub mod usage;

use pdata::block_manager::{BlockRead, ReadRef};
use pdata::btree::node::{Node, NODE_VALIDATOR};
use pdata::btree::{self};

/// Deepest mapping tree walked before giving up (a loop in a damaged tree).
pub const MAX_TREE_DEPTH: usize = 32;

/// Size of a mapping-tree value (a sub-tree root or a block_time).
const MAPPING_VALUE_SIZE: usize = 8;

/// Reads a node of a mapping tree, checking that its leaves hold 8-byte values.
pub(crate) fn read_mapping_node(r: &impl BlockRead, loc: u64) -> pdata::Result<ReadRef> {
    let b = r.read_lock(loc, &NODE_VALIDATOR)?;
    let n = Node(&b);
    if n.is_leaf() && n.value_size() != MAPPING_VALUE_SIZE {
        return Err(pdata::Error::corrupt(
            loc,
            "mapping tree node",
            format!("leaf values are {} bytes, not 8", n.value_size()),
        ));
    }
    Ok(b)
}

pub(crate) fn too_deep(loc: u64) -> pdata::Error {
    pdata::Error::corrupt(loc, "mapping tree node", "tree too deep (a loop?)")
}

/// The mapping-tree root of device `dev` under the top-level tree `mapping_root`.
pub fn device_root(r: &impl BlockRead, mapping_root: u64, dev: u64) -> pdata::Result<Option<u64>> {
    let mut v = [0u8; 8];
    Ok(btree::lookup(r, mapping_root, &[dev], &mut v)?.then(|| u64::from_le_bytes(v)))
}

/// Every device of the top-level tree `mapping_root`, in id order, with its
/// mapping-tree root.
pub fn device_roots(r: &impl BlockRead, mapping_root: u64) -> pdata::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    btree::walk(r, mapping_root, &mut |k, v| {
        out.push((k, pdata::block_manager::le64(v, 0)));
        Ok(())
    })?;
    Ok(out)
}
