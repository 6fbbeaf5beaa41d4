//! A reference-count audit of committed era metadata: every block's count
//! in the metadata space map equals the references the superblock, the
//! space map's own blocks, the writeset tree (and its bitsets), the era
//! array, the current writeset and the metadata snapshot hold. Until the
//! era checker exists this is the tests' full check.

use era::format::superblock::{Superblock, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR};
use era::format::writeset::{WritesetDisk, NO_WRITESET};
use pdata::audit::RefAudit;
use pdata::block_manager::{BlockManager, BlockRead};
use pdata::io::BlockDevice;
use pdata::transaction_manager::TransactionManager;
use std::sync::Arc;

fn read_sb(r: &impl BlockRead, loc: u64) -> Superblock {
    let b = r.read_lock(loc, &SUPERBLOCK_VALIDATOR).unwrap();
    Superblock::unpack(&b)
}

/// The writeset tree at `root` and the bitsets its values hold.
fn writeset_tree(a: &mut RefAudit, r: &impl BlockRead, root: u64) {
    a.btree(r, root, &mut |a, _, v| {
        a.array(r, WritesetDisk::unpack(v).root)
    })
    .unwrap();
}

/// Audits the metadata committed on `dev`; panics naming the first block
/// whose count is wrong.
pub fn audit(dev: Arc<dyn BlockDevice>) {
    let bm = BlockManager::new(dev, 1024, false);
    let sb = read_sb(&bm, SUPERBLOCK_LOCATION);
    let tm = TransactionManager::open(bm, &sb.metadata_sm_root).unwrap();
    let mut a = RefAudit::new();
    a.add(SUPERBLOCK_LOCATION);
    a.space_map(&tm, &sb.metadata_sm_root).unwrap();
    writeset_tree(&mut a, &tm, sb.writeset_tree_root);
    a.array(&tm, sb.era_array_root).unwrap();
    if sb.current_writeset.root != NO_WRITESET {
        a.array(&tm, sb.current_writeset.root).unwrap();
    }
    if sb.metadata_snap != 0 {
        a.add(sb.metadata_snap);
        let snap = read_sb(&tm, sb.metadata_snap);
        writeset_tree(&mut a, &tm, snap.writeset_tree_root);
        a.array(&tm, snap.era_array_root).unwrap();
    }
    if let Err(e) = a.verify(&tm) {
        panic!("{e}");
    }
}
