//! B-tree against a BTreeMap: random inserts, overwrites and removals over
//! several transactions (committed or aborted), then every node checked
//! (shape, key order, fill, reference count 1) and the contents compared.

use pdata::block_manager::{put_le64, BlockManager, Validator};
use pdata::btree::{self, node::Node, NoRefs};
use pdata::checksum::{seal, verify};
use pdata::io::{BlockDevice, MemoryDevice};
use pdata::space_map::format::SmRoot;
use pdata::transaction_manager::TransactionManager;
use pdata::{Block, Error};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A minimal superblock for tests: the tree root and the space-map root.
struct TestSuperblock;
static TEST_SB: TestSuperblock = TestSuperblock;
const SALT: u32 = 0x5eed;

impl Validator for TestSuperblock {
    fn name(&self) -> &'static str {
        "test superblock"
    }
    fn check(&self, loc: u64, data: &Block) -> pdata::Result<()> {
        if !verify(data, SALT) {
            return Err(Error::Checksum {
                block: loc,
                kind: self.name(),
            });
        }
        Ok(())
    }
    fn prepare_for_write(&self, _loc: u64, data: &mut Block) -> pdata::Result<()> {
        seal(data, SALT);
        Ok(())
    }
}

fn commit(tm: &mut TransactionManager, root: u64) -> SmRoot {
    let sm_root = tm.pre_commit().unwrap();
    let mut sb = pdata::block_manager::new_block_buffer();
    put_le64(&mut sb[..], 8, root);
    sm_root.pack(&mut sb[16..144]);
    tm.commit(0, &TEST_SB, sb).unwrap();
    sm_root
}

fn read_committed(dev: &Arc<MemoryDevice>) -> (u64, SmRoot) {
    let image = dev.image();
    let sb = &image[..4096];
    (
        pdata::block_manager::le64(sb, 8),
        SmRoot::unpack(&sb[16..48]),
    )
}

fn check_tree(tm: &TransactionManager, root: u64, model: &BTreeMap<u64, u64>) {
    let mut got = BTreeMap::new();
    btree::walk(tm, root, &mut |k, v| {
        got.insert(k, u64::from_le_bytes(v.try_into().unwrap()));
        Ok(())
    })
    .unwrap();
    assert_eq!(&got, model);
    btree::walk_nodes(tm, root, &mut |loc, n: Node<'_>, depth| {
        n.check_shape().unwrap();
        n.check_key_order().unwrap();
        if depth > 0 {
            assert!(
                n.nr_entries() >= n.max_entries() / 3,
                "node {loc} underfull"
            );
        }
        assert_eq!(tm.ref_count(loc).unwrap(), 1, "node {loc}");
        Ok(())
    })
    .unwrap();
    for (k, v) in model.iter().step_by(97) {
        let mut out = [0u8; 8];
        assert!(btree::lookup(tm, root, &[*k], &mut out).unwrap());
        assert_eq!(u64::from_le_bytes(out), *v);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u64, u64),
    Remove(u64, u64),
    Commit,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..5000, 1u64..600, any::<u64>()).prop_map(|(k, n, v)| Op::Insert(k, n, v)),
        3 => (0u64..5000, 1u64..900).prop_map(|(k, n)| Op::Remove(k, n)),
        2 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

fn run(ops: Vec<Op>) {
    let dev = Arc::new(MemoryDevice::new(4096));
    let bm = BlockManager::new(dev.clone(), 256, true);
    let mut tm = TransactionManager::format(bm).unwrap();
    let mut root = btree::empty_tree(&mut tm, 8).unwrap();
    commit(&mut tm, root);
    let mut model = BTreeMap::new();
    let mut committed = (root, model.clone());
    for op in ops {
        match op {
            Op::Insert(k, n, v) => {
                for i in 0..n {
                    let key = (k + i * 7) % 5000;
                    root = btree::insert(
                        &mut tm,
                        root,
                        &[key],
                        &(v ^ i).to_le_bytes(),
                        &mut NoRefs(8),
                    )
                    .unwrap()
                    .0;
                    model.insert(key, v ^ i);
                }
            }
            Op::Remove(k, n) => {
                let (r, count) =
                    btree::remove_range(&mut tm, root, k, k + n, &mut NoRefs(8)).unwrap();
                root = r;
                let gone: Vec<u64> = model.range(k..k + n).map(|(k, _)| *k).collect();
                assert_eq!(count, gone.len() as u64);
                for g in gone {
                    model.remove(&g);
                }
                assert!(matches!(
                    btree::remove(&mut tm, root, &[9999], &mut NoRefs(8)),
                    Err(Error::NotFound)
                ));
            }
            Op::Commit => {
                commit(&mut tm, root);
                committed = (root, model.clone());
                check_tree(&tm, root, &model);
            }
            Op::Abort => {
                let (_, sm_root) = read_committed(&dev);
                tm.abort(&sm_root).unwrap();
                (root, model) = committed.clone();
                check_tree(&tm, root, &model);
            }
        }
    }
    commit(&mut tm, root);
    check_tree(&tm, root, &model);
    // Reopen from disk alone.
    let (disk_root, sm_root) = read_committed(&dev);
    let bm = BlockManager::new(dev.clone() as Arc<dyn BlockDevice>, 64, true);
    let tm = TransactionManager::open(bm, &sm_root).unwrap();
    check_tree(&tm, disk_root, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48), ..ProptestConfig::default() })]
    #[test]
    fn btree_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}

#[test]
fn corrupt_node_is_an_error_naming_the_block() {
    let dev = Arc::new(MemoryDevice::new(1024));
    let bm = BlockManager::new(dev.clone(), 256, true);
    let mut tm = TransactionManager::format(bm).unwrap();
    let mut root = btree::empty_tree(&mut tm, 8).unwrap();
    for k in 0..2000u64 {
        root = btree::insert(&mut tm, root, &[k], &k.to_le_bytes(), &mut NoRefs(8))
            .unwrap()
            .0;
    }
    commit(&mut tm, root);
    let mut leaf = 0;
    btree::walk_nodes(&tm, root, &mut |loc, n: Node<'_>, _| {
        if n.is_leaf() && leaf == 0 {
            leaf = loc;
        }
        Ok(())
    })
    .unwrap();
    drop(tm);
    let (_, sm_root) = read_committed(&dev);
    for (offset, what) in [
        (100usize, "checksum"),
        (8, "claims to be block"),
        (4, "checksum"),
    ] {
        let mut image = dev.image();
        image[leaf as usize * 4096 + offset] ^= 0x40;
        let bad = Arc::new(MemoryDevice::from_image(image));
        let bm = BlockManager::new(bad, 64, true);
        let tm = TransactionManager::open(bm, &sm_root).unwrap();
        let mut out = [0u8; 8];
        let err = btree::walk(&tm, root, &mut |_, _| Ok(()))
            .and_then(|_| btree::lookup(&tm, root, &[0], &mut out).map(|_| ()))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("block {leaf}")), "{msg}");
        assert!(msg.contains(what), "{msg}");
    }
}
