//! The B-tree workload's full walk: every node valid, and the metadata
//! space map's count of every block equal to the references the structures
//! hold.

use super::superblock::Superblock;
use crate::script::e2s;
use pdata::block_manager::BlockRead;
use pdata::btree::node::{Node, NODE_VALIDATOR};
use pdata::space_map::format::{nr_bitmaps, unpack_metadata_index, INDEX_VALIDATOR};
use pdata::transaction_manager::TransactionManager;
use rustc_hash::{FxHashMap, FxHashSet};

pub fn audit(tm: &TransactionManager, sb: &Superblock) -> Result<(), String> {
    let nr = tm.nr_metadata_blocks();
    let mut expected: FxHashMap<u64, u32> = FxHashMap::default();
    let mut errors: Vec<String> = Vec::new();
    let mut bump = |b: u64, what: &str, errors: &mut Vec<String>| {
        if b >= nr {
            errors.push(format!("{what} {b} is beyond the {nr} metadata blocks"));
            false
        } else {
            *expected.entry(b).or_default() += 1;
            true
        }
    };
    bump(0, "superblock", &mut errors);
    let sm = sb.sm;
    if bump(sm.bitmap_root, "space-map index", &mut errors) {
        let index = tm
            .read_lock(sm.bitmap_root, &INDEX_VALIDATOR)
            .map_err(e2s)?;
        for ie in unpack_metadata_index(&index, nr_bitmaps(sm.nr_blocks)) {
            bump(ie.blocknr, "bitmap", &mut errors);
        }
    }
    let mut roots: Vec<u64> = sb.roots.iter().copied().filter(|&r| r != 0).collect();
    if sm.ref_count_root != 0 {
        roots.push(sm.ref_count_root);
    }
    let mut seen = FxHashSet::default();
    let mut stack = Vec::new();
    for r in roots {
        if bump(r, "tree root", &mut errors) {
            stack.push(r);
        }
    }
    while let Some(loc) = stack.pop() {
        if !seen.insert(loc) {
            continue;
        }
        let b = tm.read_lock(loc, &NODE_VALIDATOR).map_err(e2s)?;
        let n = Node(&b);
        if let Err(e) = n.check_shape().and_then(|_| n.check_key_order()) {
            errors.push(format!("node {loc}: {e}"));
            continue;
        }
        if n.is_internal() {
            for i in 0..n.nr_entries() {
                let child = n.value_u64(i);
                if bump(child, "child", &mut errors) {
                    stack.push(child);
                }
            }
        }
    }
    for b in 0..nr {
        let want = expected.get(&b).copied().unwrap_or(0);
        let got = tm.ref_count(b).map_err(e2s)?;
        if got != want {
            errors.push(if want == 0 {
                format!("block {b} leaked (count {got}, unreferenced)")
            } else {
                format!("block {b}: count {got}, referenced {want} times")
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "check: {} errors: {}",
            errors.len(),
            errors[..errors.len().min(3)].join("; ")
        ))
    }
}
