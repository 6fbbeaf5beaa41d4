//! A reference-count audit of committed cache metadata: every block's count
//! in the metadata space map equals the references the superblock, the space
//! map's own blocks, and the spines of the four arrays hold (no leak, no
//! missing count). The property tests and the torture workload run it after
//! every commit; the full checker is `cache_check`.

use crate::error::Result;
use crate::format::superblock::SUPERBLOCK_LOCATION;
use crate::metadata::read_superblock;
use pdata::audit::RefAudit;
use pdata::block_manager::BlockManager;
use pdata::io::BlockDevice;
use pdata::transaction_manager::TransactionManager;
use std::sync::Arc;

/// Audits the metadata committed on `dev`; the error names the first block
/// whose count is wrong.
pub fn audit(dev: Arc<dyn BlockDevice>) -> Result<()> {
    let bm = BlockManager::new(dev, 1024, false);
    let sb = read_superblock(&bm)?;
    let tm = TransactionManager::open(bm, &sb.metadata_sm_root)?;
    let mut a = RefAudit::new();
    a.add(SUPERBLOCK_LOCATION);
    a.space_map(&tm, &sb.metadata_sm_root)?;
    let mut roots = vec![sb.mapping_root, sb.discard_root];
    if sb.hint_root != 0 {
        roots.push(sb.hint_root);
    }
    if sb.separate_dirty_bits() {
        roots.push(sb.dirty_root);
    }
    for r in roots {
        a.array(&tm, r)?;
    }
    a.verify(&tm)?;
    Ok(())
}
