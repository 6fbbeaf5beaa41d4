//! A reference-count audit of committed cache metadata: every block's count
//! in the metadata space map equals the references the superblock, the space
//! map's own blocks, and the spines of the four arrays hold (no leak, no
//! missing count). Until the cache checker exists this is the tests' full
//! check.

use cache::format::superblock::{Superblock, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR};
use pdata::audit::RefAudit;
use pdata::block_manager::BlockManager;
use pdata::io::BlockDevice;
use pdata::transaction_manager::TransactionManager;
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
    let mut a = RefAudit::new();
    a.add(SUPERBLOCK_LOCATION);
    a.space_map(&tm, &sb.metadata_sm_root).unwrap();
    let mut roots = vec![sb.mapping_root, sb.discard_root];
    if sb.hint_root != 0 {
        roots.push(sb.hint_root);
    }
    if sb.version >= 2 {
        roots.push(sb.dirty_root);
    }
    for r in roots {
        a.array(&tm, r).unwrap();
    }
    if let Err(e) = a.verify(&tm) {
        panic!("{e}");
    }
}
