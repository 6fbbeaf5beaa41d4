//! Which mappings of each device point at data blocks nothing else maps
//! (`thin_ls`'s EXCLUSIVE): a data block is shared when two mappings of
//! any devices point at it, counting a mapping reached through a shared
//! sub-tree once per device that reaches it.
//!
//! Every node is read once to count references (a sub-tree shared by
//! snapshots is not walked again) and the data blocks of the first window
//! ([`MappingLeaves`]); then the leaves no other node shares are read again
//! to count their exclusive entries, window by window. Last, each device's
//! tree is walked down through its unshared nodes to sum its leaves.

use super::leaves::MappingLeaves;
use super::{read_mapping_node, too_deep, MAX_TREE_DEPTH};
use crate::Result;
use pdata::block_manager::BlockRead;
use pdata::btree::node::Node;

/// For each mapping-tree root in `roots`, how many of its mappings point at
/// a data block mapped nowhere else. `nr_metadata_blocks` bounds node
/// locations, `nr_data_blocks` data blocks; the data blocks' counts take
/// about `budget` bytes at most, window by window.
pub fn exclusive_mappings(
    r: &impl BlockRead,
    roots: &[u64],
    nr_metadata_blocks: u64,
    nr_data_blocks: u64,
    budget: usize,
) -> Result<Vec<u64>> {
    let (walk, mut data) =
        MappingLeaves::walk(r, roots, nr_metadata_blocks, nr_data_blocks, budget)?;
    // Each unshared leaf's exclusive entries (at most a leaf's 254).
    let mut exclusive = vec![0u8; walk.refs.len()];
    loop {
        walk.each_leaf(r, &data, |l| walk.once(l), &mut |leaf, blocks| {
            let n = blocks.iter().filter(|&&b| data.get(b) == Some(1)).count();
            let e = &mut exclusive[leaf as usize];
            *e = e.saturating_add(n as u8);
            Ok(())
        })?;
        if !walk.next_window(r, &mut data)? {
            break;
        }
    }
    roots
        .iter()
        .map(|&root| sum_exclusive(r, &walk, &exclusive, root, 0))
        .collect()
}

/// Exclusive mappings under `loc`: none below a shared node, since all its
/// mappings are reached by two devices (or twice by one).
fn sum_exclusive(
    r: &impl BlockRead,
    walk: &MappingLeaves,
    exclusive: &[u8],
    loc: u64,
    depth: usize,
) -> Result<u64> {
    if !walk.once(loc) {
        return Ok(0);
    }
    // An empty leaf is not recorded: read, it gives nothing.
    if walk.is_leaf(loc) {
        return Ok(u64::from(exclusive[loc as usize]));
    }
    if depth > MAX_TREE_DEPTH {
        return Err(too_deep(loc).into());
    }
    let b = read_mapping_node(r, loc)?;
    let n = Node(&b);
    let kids: Vec<u64> = (0..n.nr_entries()).map(|i| n.value_u64(i)).collect();
    drop(b);
    let mut sum = 0;
    for k in kids {
        sum += sum_exclusive(r, walk, exclusive, k, depth + 1)?;
    }
    Ok(sum)
}

/// The highest mapped thin block of the tree at `root` (None when empty).
pub fn highest_mapped(r: &impl BlockRead, root: u64) -> Result<Option<u64>> {
    let mut loc = root;
    for _ in 0..=MAX_TREE_DEPTH {
        let b = read_mapping_node(r, loc)?;
        let n = Node(&b);
        let Some(last) = n.nr_entries().checked_sub(1) else {
            return Ok(None);
        };
        if n.is_leaf() {
            return Ok(Some(n.key(last)));
        }
        loc = n.value_u64(last);
    }
    Err(too_deep(loc).into())
}
