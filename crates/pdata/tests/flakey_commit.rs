//! The fault-injecting device under the transaction manager: a failed flush
//! in `pre_commit` poisons the transaction. (Lives here, not in `io`, which
//! sits below the transaction manager.)

use pdata::block_manager::BlockManager;
use pdata::btree::{self, NoRefs};
use pdata::io::{FlakeyDevice, IoKinds, MemoryDevice, Rule, Trigger};
use pdata::transaction_manager::TransactionManager;
use std::sync::Arc;

#[test]
fn a_failed_flush_poisons_the_transaction() {
    let mem = Arc::new(MemoryDevice::new(256));
    let f = Arc::new(FlakeyDevice::new(mem));
    let mut tm = TransactionManager::format(BlockManager::new(f.clone(), 64, true)).unwrap();
    let mut root = btree::empty_tree(&mut tm, 8).unwrap();
    for k in 0..100u64 {
        root = btree::insert(&mut tm, root, &[k], &k.to_le_bytes(), &mut NoRefs(8))
            .unwrap()
            .0;
    }
    f.add_rule(Rule::fail(IoKinds::FLUSH, Trigger::Nth(0)));
    assert!(tm.pre_commit().is_err());
    assert!(tm.poisoned().is_some());
    assert!(tm.pre_commit().is_err(), "a poisoned manager must refuse");
}
