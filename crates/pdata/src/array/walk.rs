//! Ordered traversal of an array, checking its shape.

use super::format::ArrayBlock;
use super::spine::read_block;
use super::Geometry;
use crate::block_manager::BlockRead;
use crate::btree;
use crate::{Error, Result};

/// Calls `f(first index, values)` for each array block's values, in order.
pub fn walk(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    g: Geometry,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut next_key = 0u64;
    // The previous array block, if it was not full: only the last may be.
    let mut short: Option<(u64, usize)> = None;
    btree::walk_nodes(r, root, &mut |loc, node, _depth| {
        if !node.is_leaf() {
            return Ok(());
        }
        if node.value_size() != 8 {
            return Err(Error::corrupt(
                loc,
                "array spine",
                format!("value size {} where 8 was expected", node.value_size()),
            ));
        }
        for i in 0..node.nr_entries() {
            let key = node.key(i);
            if key != next_key {
                return Err(Error::corrupt(
                    loc,
                    "array spine",
                    format!("key {key} where {next_key} was expected (a gap in the spine)"),
                ));
            }
            if let Some((prev, nr)) = short {
                return Err(Error::corrupt(
                    prev,
                    "array block",
                    format!("holds {nr} of {} values but is not the last block", g.max),
                ));
            }
            let bloc = node.value_u64(i);
            let blk = read_block(r, bloc, g)?;
            let a = ArrayBlock(&blk);
            let nr = a.nr_entries();
            if nr == 0 {
                return Err(Error::corrupt(bloc, "array block", "empty array block"));
            }
            if nr < g.max as usize {
                short = Some((bloc, nr));
            }
            f(key * g.max, a.values())?;
            next_key += 1;
        }
        Ok(())
    })
}
