//! `prefetch` caches what validates and leaves the rest for `read_lock` to
//! report.

use pdata::block_manager::BlockManager;
use pdata::btree::node::NODE_VALIDATOR;
use pdata::btree::{self, NoRefs};
use pdata::io::{BlockDevice, MemoryDevice};
use pdata::transaction_manager::TransactionManager;
use pdata::{Block, Error};
use std::sync::Arc;

#[test]
fn prefetch_keeps_bad_blocks_for_read_lock_to_report() {
    let dev = Arc::new(MemoryDevice::new(64));
    let bm = BlockManager::new(dev.clone(), 64, false);
    // Block 3 is garbage: prefetch must neither fail nor cache it.
    let junk: Block = [0xa5u8; 4096];
    dev.write_blocks(3, &[&junk]).unwrap();
    bm.prefetch(&[2, 3, 4, 999], &NODE_VALIDATOR);
    let e = bm.read_lock(3, &NODE_VALIDATOR).err();
    assert!(
        matches!(
            e,
            Some(Error::Checksum { block: 3, .. } | Error::BlockNumber { block: 3, .. })
        ),
        "{e:?}"
    );
    assert!(matches!(
        bm.read_lock(999, &NODE_VALIDATOR),
        Err(Error::OutOfBounds { block: 999, .. })
    ));
}

#[test]
fn walk_with_prefetch_sees_every_entry() {
    let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(4096));
    let mut tm = TransactionManager::format(BlockManager::new(dev, 128, true)).unwrap();
    let mut root = btree::empty_tree(&mut tm, 8).unwrap();
    for k in 0..20_000u64 {
        root = btree::insert(&mut tm, root, &[k * 3], &k.to_le_bytes(), &mut NoRefs(8))
            .unwrap()
            .0;
    }
    let mut n = 0u64;
    btree::walk(&tm, root, &mut |k, v| {
        assert_eq!(k, n * 3);
        assert_eq!(v, n.to_le_bytes());
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 20_000);
}
