//! Test scaffolding for arrays and bitsets: a memory device, a tiny
//! superblock holding a list of array roots, commit and reopen, and a full
//! reference-count audit of the device.

use crate::block_manager::{
    le32, le64, new_block_buffer, put_le32, put_le64, BlockManager, BlockRead, SealedValidator,
};
use crate::btree::node::{Node, NODE_VALIDATOR};
use crate::checksum::SALT_THIN_SUPERBLOCK;
use crate::io::{BlockDevice, MemoryDevice};
use crate::space_map::format::{
    nr_bitmaps, unpack_metadata_index, SmRoot, INDEX_VALIDATOR, SM_ROOT_AREA_SIZE,
};
use crate::transaction_manager::TransactionManager;
use crate::{Block, Result};
use rustc_hash::FxHashMap;
use std::sync::Arc;

const SB_BLOCKNR: usize = 8;
const SB_SM_ROOT: usize = 16;
const SB_NR_ROOTS: usize = SB_SM_ROOT + SM_ROOT_AREA_SIZE;
const SB_ROOTS: usize = SB_NR_ROOTS + 8;

/// A test-only superblock: blocknr at 8, the space-map root at 16, then a
/// count and a list of array roots.
pub static TEST_SB: SealedValidator = SealedValidator {
    name: "test superblock",
    blocknr_offset: SB_BLOCKNR,
    salt: SALT_THIN_SUPERBLOCK,
    reserved: 0..0,
};

pub struct Env {
    pub dev: Arc<MemoryDevice>,
    pub tm: TransactionManager,
    sm_root: Option<SmRoot>,
}

impl Env {
    pub fn new(nr_blocks: u64) -> Env {
        let dev = Arc::new(MemoryDevice::new(nr_blocks));
        let d: Arc<dyn BlockDevice> = dev.clone();
        let tm = TransactionManager::format(BlockManager::new(d, 1024, true)).unwrap();
        Env {
            dev,
            tm,
            sm_root: None,
        }
    }

    /// Commits the transaction with `roots` in the superblock.
    pub fn commit(&mut self, roots: &[u64]) -> Result<()> {
        let sm_root = self.tm.pre_commit()?;
        let mut sb = new_block_buffer();
        sm_root.pack(&mut sb[SB_SM_ROOT..SB_SM_ROOT + SM_ROOT_AREA_SIZE]);
        put_le32(&mut sb[..], SB_NR_ROOTS, roots.len() as u32);
        for (i, r) in roots.iter().enumerate() {
            put_le64(&mut sb[..], SB_ROOTS + 8 * i, *r);
        }
        self.tm.commit(0, &TEST_SB, sb)?;
        self.sm_root = Some(sm_root);
        Ok(())
    }

    /// Forgets everything in memory and opens the committed state from the
    /// device. Returns the roots the superblock holds.
    pub fn reopen(&mut self) -> Result<Vec<u64>> {
        let d: Arc<dyn BlockDevice> = self.dev.clone();
        let bm = BlockManager::new(d, 1024, true);
        let (sm_root, roots) = {
            let sb = bm.read_lock(0, &TEST_SB)?;
            let n = le32(&sb[..], SB_NR_ROOTS) as usize;
            let roots = (0..n).map(|i| le64(&sb[..], SB_ROOTS + 8 * i)).collect();
            (SmRoot::unpack(&sb[SB_SM_ROOT..]), roots)
        };
        self.tm = TransactionManager::open(bm, &sm_root)?;
        self.sm_root = Some(sm_root);
        Ok(roots)
    }

    /// Overwrites block `loc` on the device with `f` applied to it (no
    /// re-sealing): simulates on-disk corruption.
    pub fn corrupt_on_disk(&self, loc: u64, f: impl FnOnce(&mut Block)) {
        let mut b = new_block_buffer();
        self.dev.read_block(loc, &mut b).unwrap();
        f(&mut b);
        self.dev.write_block(loc, &b).unwrap();
    }

    /// Right after a commit: every block of the device has the count the
    /// committed structures give it: the superblock, the space map's own
    /// blocks, and the spines and array blocks of `roots` (a root listed
    /// twice is referenced twice). Returns the number of spine nodes and
    /// array blocks.
    pub fn audit(&self, roots: &[u64]) -> usize {
        let tm = &self.tm;
        let mut expected: FxHashMap<u64, u32> = FxHashMap::default();
        expected.insert(0, 1);
        let sm = self.sm_root.expect("audit after a commit");
        *expected.entry(sm.bitmap_root).or_default() += 1;
        {
            let index = tm.read_lock(sm.bitmap_root, &INDEX_VALIDATOR).unwrap();
            for ie in unpack_metadata_index(&index, nr_bitmaps(sm.nr_blocks)) {
                *expected.entry(ie.blocknr).or_default() += 1;
            }
        }
        if sm.ref_count_root != 0 {
            *expected.entry(sm.ref_count_root).or_default() += 1;
            crate::btree::walk_nodes(tm, sm.ref_count_root, &mut |_, n, _| {
                if n.is_internal() {
                    for i in 0..n.nr_entries() {
                        *expected.entry(n.value_u64(i)).or_default() += 1;
                    }
                }
                Ok(())
            })
            .unwrap();
        }
        let structure = spine_refs(tm, roots, &mut expected);
        for b in 0..tm.nr_metadata_blocks() {
            let want = expected.get(&b).copied().unwrap_or(0);
            assert_eq!(tm.ref_count(b).unwrap(), want, "count of block {b}");
        }
        structure
    }
}

/// Adds the references the spines of `roots` hold to `expected`: one per
/// listed root, one per child pointer and array-block pointer of every
/// distinct spine node. Returns the number of distinct nodes and blocks.
pub fn spine_refs(
    tm: &(impl BlockRead + ?Sized),
    roots: &[u64],
    expected: &mut FxHashMap<u64, u32>,
) -> usize {
    let mut seen = rustc_hash::FxHashSet::default();
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
            } else {
                seen.insert(child);
            }
        }
    }
    seen.len()
}
