//! A reference-count audit of committed cache metadata: every block's count
//! in the metadata space map equals the references the superblock, the space
//! map's own blocks, and the spines of the four arrays hold (no leak, no
//! missing count). Until the cache checker exists this is the tests' full
//! check.

use cache::format::superblock::{Superblock, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR};
use pdata::block_manager::{BlockManager, BlockRead};
use pdata::btree::node::{Node, NODE_VALIDATOR};
use pdata::io::BlockDevice;
use pdata::space_map::format::{nr_bitmaps, unpack_metadata_index, INDEX_VALIDATOR};
use pdata::transaction_manager::TransactionManager;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

/// Audits the metadata committed on `dev`; panics naming the first block
/// whose count is wrong.
pub fn audit(dev: Arc<dyn BlockDevice>) {
    let bm = BlockManager::new(dev, 1024, false);
    let sb = {
        let b = bm
            .read_lock(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR)
            .unwrap();
        Superblock::unpack(&b)
    };
    let tm = TransactionManager::open(bm, &sb.metadata_sm_root).unwrap();
    let mut expected: FxHashMap<u64, u32> = FxHashMap::default();
    expected.insert(SUPERBLOCK_LOCATION, 1);
    let sm = &sb.metadata_sm_root;
    *expected.entry(sm.bitmap_root).or_default() += 1;
    {
        let index = tm.read_lock(sm.bitmap_root, &INDEX_VALIDATOR).unwrap();
        for ie in unpack_metadata_index(&index, nr_bitmaps(sm.nr_blocks)) {
            *expected.entry(ie.blocknr).or_default() += 1;
        }
    }
    if sm.ref_count_root != 0 {
        *expected.entry(sm.ref_count_root).or_default() += 1;
        pdata::btree::walk_nodes(&tm, sm.ref_count_root, &mut |_, n, _| {
            if n.is_internal() {
                for i in 0..n.nr_entries() {
                    *expected.entry(n.value_u64(i)).or_default() += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    }
    let mut roots = vec![sb.mapping_root, sb.discard_root];
    if sb.hint_root != 0 {
        roots.push(sb.hint_root);
    }
    if sb.version >= 2 {
        roots.push(sb.dirty_root);
    }
    spine_refs(&tm, &roots, &mut expected);
    for b in 0..tm.nr_metadata_blocks() {
        let want = expected.get(&b).copied().unwrap_or(0);
        assert_eq!(
            tm.ref_count(b).unwrap(),
            want,
            "count of metadata block {b}"
        );
    }
}

/// One reference per root, per child pointer and per array-block pointer of
/// every distinct spine node.
fn spine_refs(tm: &impl BlockRead, roots: &[u64], expected: &mut FxHashMap<u64, u32>) {
    let mut seen = FxHashSet::default();
    let mut stack = Vec::new();
    for &r in roots {
        *expected.entry(r).or_default() += 1;
        stack.push(r);
    }
    while let Some(loc) = stack.pop() {
        if !seen.insert(loc) {
            continue;
        }
        let b = tm.read_lock(loc, &NODE_VALIDATOR).unwrap();
        let n = Node(&b);
        for i in 0..n.nr_entries() {
            let child = n.value_u64(i);
            *expected.entry(child).or_default() += 1;
            if n.is_internal() {
                stack.push(child);
            }
        }
    }
}
