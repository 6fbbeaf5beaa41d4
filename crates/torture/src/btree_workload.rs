//! The raw B-tree + space-map workload, straight on pdata: three slots for
//! single-level trees of u64 values, with inserts, removes, range removes,
//! clones (shared roots: reference counts above 2 go to the overflow tree),
//! deletes and metadata space-map growth, through a small block cache so
//! dirty blocks are also written by eviction in the middle of transactions.
//!
//! The superblock is this workload's own: it holds the transaction number,
//! the space-map root and the slots' roots.

use crate::rng::Rng;
use crate::workload::{Session, Workload};
use pdata::block_manager::{
    check_location_and_checksum, le64, new_block_buffer, put_le64, BlockManager, BlockRead,
    Validator,
};
use pdata::btree::{self, node::Node, node::NODE_VALIDATOR, NoRefs};
use pdata::checksum::seal;
use pdata::io::BlockDevice;
use pdata::space_map::format::{
    nr_bitmaps, unpack_metadata_index, SmRoot, INDEX_VALIDATOR, SM_ROOT_AREA_SIZE,
};
use pdata::transaction_manager::TransactionManager;
use pdata::{Block, Error};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const DEVICE_BLOCKS: u64 = 512;
pub const SLOTS: usize = 3;
/// Blocks the handle caches (the block manager's minimum).
const CACHE_BLOCKS: usize = 64;
const KEYS: u64 = 200_000;

const SALT: u32 = 0x7072_7475;
const MAGIC: u64 = 0x6572_7574_726f_7421;
const SB_BLOCKNR: usize = 8;
const SB_MAGIC: usize = 16;
const SB_TXN: usize = 24;
const SB_SM_ROOT: usize = 32;
const SB_ROOTS: usize = SB_SM_ROOT + SM_ROOT_AREA_SIZE;

struct TortureSuperblock;
static SUPERBLOCK: TortureSuperblock = TortureSuperblock;

impl Validator for TortureSuperblock {
    fn name(&self) -> &'static str {
        "torture superblock"
    }
    fn check(&self, loc: u64, data: &Block) -> pdata::Result<()> {
        let found = le64(data, SB_MAGIC);
        if found != MAGIC {
            return Err(Error::Magic {
                block: loc,
                kind: self.name(),
                found,
            });
        }
        check_location_and_checksum(self.name(), loc, data, SB_BLOCKNR, SALT)
    }
    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> pdata::Result<()> {
        put_le64(data, SB_BLOCKNR, loc);
        put_le64(data, SB_MAGIC, MAGIC);
        seal(data, SALT);
        Ok(())
    }
}

struct Superblock {
    txn: u64,
    sm: SmRoot,
    roots: [u64; SLOTS],
}

fn pack_superblock(sb: &Superblock) -> Box<Block> {
    let mut b = new_block_buffer();
    put_le64(&mut b[..], SB_TXN, sb.txn);
    sb.sm
        .pack(&mut b[SB_SM_ROOT..SB_SM_ROOT + SM_ROOT_AREA_SIZE]);
    for (i, r) in sb.roots.iter().enumerate() {
        put_le64(&mut b[..], SB_ROOTS + 8 * i, *r);
    }
    b
}

fn read_superblock(bm: &BlockManager) -> pdata::Result<Superblock> {
    let b = bm.read_lock(0, &SUPERBLOCK)?;
    let mut roots = [0; SLOTS];
    for (i, r) in roots.iter_mut().enumerate() {
        *r = le64(&b[..], SB_ROOTS + 8 * i);
    }
    Ok(Superblock {
        txn: le64(&b[..], SB_TXN),
        sm: SmRoot::unpack(&b[SB_SM_ROOT..]),
        roots,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trees {
    pub txn: u64,
    pub nr_metadata_blocks: u64,
    pub slots: Vec<Option<BTreeMap<u64, u64>>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtreeState {
    Unformatted,
    Trees(Trees),
}

#[derive(Clone, Debug)]
pub enum Op {
    /// Inserts (or overwrites) keys key, key+stride, ... (n of them).
    Insert {
        slot: usize,
        key: u64,
        n: u64,
        stride: u64,
        salt: u64,
    },
    Remove {
        slot: usize,
        key: u64,
    },
    RemoveRange {
        slot: usize,
        begin: u64,
        end: u64,
    },
    /// `dst` becomes another reference to `src`'s tree.
    Clone {
        dst: usize,
        src: usize,
    },
    Delete(usize),
    ExtendMetadata(u64),
    Commit,
    Abort,
    Reopen,
}

fn value_of(salt: u64, key: u64) -> u64 {
    let mut r = Rng::new(salt ^ key.wrapping_mul(0x2545_f491_4f6c_dd1d));
    r.next_u64()
}

#[derive(Clone)]
struct GenModel {
    slots: Vec<Option<BTreeSet<u64>>>,
    nr_meta: u64,
}

fn gen_op(rng: &mut Rng, g: &GenModel, extends: &mut u32) -> Option<Op> {
    let full = |rng: &mut Rng| {
        let v: Vec<usize> = (0..SLOTS).filter(|&s| g.slots[s].is_some()).collect();
        (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize])
    };
    // Insert, Remove, RemoveRange, Clone, Delete, Extend, Abort, Reopen.
    match rng.weighted(&[30, 10, 5, 5, 2, 2, 1, 1]) {
        0 => {
            let n = rng.range(1, 1000);
            let stride = rng.range(1, 8);
            Some(Op::Insert {
                slot: rng.below(SLOTS as u64) as usize,
                key: rng.below(KEYS - n * stride),
                n,
                stride,
                salt: rng.next_u64(),
            })
        }
        1 => {
            let slot = full(rng)?;
            let keys = g.slots[slot].as_ref().expect("full slot");
            if keys.is_empty() {
                return None;
            }
            let key = *keys.iter().nth(rng.below(keys.len() as u64) as usize)?;
            Some(Op::Remove { slot, key })
        }
        2 => {
            let slot = full(rng)?;
            let begin = rng.below(KEYS);
            Some(Op::RemoveRange {
                slot,
                begin,
                end: begin + rng.range(1, 6000),
            })
        }
        3 => {
            let src = full(rng)?;
            let dst = rng.below(SLOTS as u64) as usize;
            (dst != src).then_some(Op::Clone { dst, src })
        }
        4 => full(rng).map(Op::Delete),
        5 => {
            if *extends >= 2 {
                return None;
            }
            *extends += 1;
            Some(Op::ExtendMetadata(g.nr_meta + rng.range(1, 200)))
        }
        6 => Some(Op::Abort),
        _ => Some(Op::Reopen),
    }
}

fn gen_apply(g: &mut GenModel, committed: &mut GenModel, op: &Op) {
    match op {
        Op::Insert {
            slot,
            key,
            n,
            stride,
            ..
        } => {
            let s = g.slots[*slot].get_or_insert_with(BTreeSet::new);
            s.extend((0..*n).map(|j| key + j * stride));
        }
        Op::Remove { slot, key } => {
            if let Some(s) = g.slots[*slot].as_mut() {
                s.remove(key);
            }
        }
        Op::RemoveRange { slot, begin, end } => {
            if let Some(s) = g.slots[*slot].as_mut() {
                let gone: Vec<u64> = s.range(begin..end).copied().collect();
                for k in gone {
                    s.remove(&k);
                }
            }
        }
        Op::Clone { dst, src } => g.slots[*dst] = g.slots[*src].clone(),
        Op::Delete(slot) => g.slots[*slot] = None,
        Op::ExtendMetadata(n) => g.nr_meta = *n,
        Op::Commit => *committed = g.clone(),
        Op::Abort | Op::Reopen => *g = committed.clone(),
    }
}

pub fn generate(seed: u64, ops: usize, transactions: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let mut g = GenModel {
        slots: vec![None; SLOTS],
        nr_meta: DEVICE_BLOCKS,
    };
    let mut committed = g.clone();
    let mut script = Vec::new();
    let mut extends = 0;
    for _ in 0..transactions {
        let n = rng.range(1, (2 * ops.max(1) - 1) as u64);
        let mut done = 0;
        while done < n {
            if let Some(op) = gen_op(&mut rng, &g, &mut extends) {
                gen_apply(&mut g, &mut committed, &op);
                script.push(op);
                done += 1;
            }
        }
        gen_apply(&mut g, &mut committed, &Op::Commit);
        script.push(Op::Commit);
    }
    script
}

pub struct BtreeWorkload {
    script: Arc<Vec<Op>>,
}

impl BtreeWorkload {
    pub fn new(seed: u64, ops: usize, transactions: usize) -> BtreeWorkload {
        BtreeWorkload {
            script: Arc::new(generate(seed, ops, transactions)),
        }
    }
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn read_tree(r: &impl BlockRead, root: u64) -> pdata::Result<BTreeMap<u64, u64>> {
    let mut m = BTreeMap::new();
    btree::walk(r, root, &mut |k, v| {
        m.insert(k, le64(v, 0));
        Ok(())
    })?;
    Ok(m)
}

fn read_trees(tm: &TransactionManager, txn: u64, roots: &[u64; SLOTS]) -> Result<Trees, String> {
    let mut slots = Vec::new();
    for &r in roots {
        slots.push(if r == 0 {
            None
        } else {
            Some(read_tree(tm, r).map_err(e2s)?)
        });
    }
    Ok(Trees {
        txn,
        nr_metadata_blocks: tm.nr_metadata_blocks(),
        slots,
    })
}

/// The full walk: every node valid, and the metadata space map's count of
/// every block equal to the references the structures hold.
fn audit(tm: &TransactionManager, sb: &Superblock) -> Result<(), String> {
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

impl Workload for BtreeWorkload {
    type State = BtreeState;
    type Session = BtreeSession;

    fn device_blocks(&self) -> u64 {
        DEVICE_BLOCKS
    }

    fn nr_steps(&self) -> usize {
        self.script.len()
    }

    fn describe_step(&self, i: usize) -> String {
        format!("step {i} ({:?})", self.script[i])
    }

    fn step_recovers(&self, i: usize) -> bool {
        matches!(self.script[i], Op::Abort | Op::Reopen)
    }

    fn unformatted(&self) -> BtreeState {
        BtreeState::Unformatted
    }

    fn formatted(&self) -> BtreeState {
        BtreeState::Trees(Trees {
            txn: 0,
            nr_metadata_blocks: DEVICE_BLOCKS,
            slots: vec![None; SLOTS],
        })
    }

    fn format(&self, dev: Arc<dyn BlockDevice>, mutation: bool) -> Result<BtreeSession, String> {
        let tm = TransactionManager::format(BlockManager::new(dev.clone(), CACHE_BLOCKS, true))
            .map_err(e2s)?;
        let BtreeState::Trees(t) = self.formatted() else {
            unreachable!()
        };
        let mut s = BtreeSession {
            dev,
            tm,
            script: self.script.clone(),
            mutation,
            roots: [0; SLOTS],
            committed_roots: [0; SLOTS],
            committed_sm: SmRoot::default(),
            model: t.clone(),
            committed: t,
        };
        s.commit_as(0)?;
        if mutation {
            s.tm.enable_seed_bug_mutation();
        }
        Ok(s)
    }

    fn open(
        &self,
        dev: Arc<dyn BlockDevice>,
        mutation: bool,
        committed: BtreeState,
    ) -> Result<BtreeSession, String> {
        let BtreeState::Trees(t) = committed else {
            return Err("opening an unformatted device".into());
        };
        let bm = BlockManager::new(dev.clone(), CACHE_BLOCKS, true);
        let sb = read_superblock(&bm).map_err(e2s)?;
        let mut tm = TransactionManager::open(bm, &sb.sm).map_err(e2s)?;
        if mutation {
            tm.enable_seed_bug_mutation();
        }
        Ok(BtreeSession {
            dev,
            tm,
            script: self.script.clone(),
            mutation,
            roots: sb.roots,
            committed_roots: sb.roots,
            committed_sm: sb.sm,
            model: t.clone(),
            committed: t,
        })
    }

    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<BtreeState, String> {
        let mut b0 = [0u8; pdata::BLOCK_SIZE];
        dev.read_block(0, &mut b0).map_err(e2s)?;
        if b0.iter().all(|&b| b == 0) {
            return Ok(BtreeState::Unformatted);
        }
        let bm = BlockManager::new(dev, 4096, false);
        let sb = read_superblock(&bm).map_err(|e| format!("open: {e}"))?;
        let tm = TransactionManager::open(bm, &sb.sm).map_err(|e| format!("open: {e}"))?;
        audit(&tm, &sb)?;
        read_trees(&tm, sb.txn, &sb.roots).map(BtreeState::Trees)
    }

    fn summary(&self, s: &BtreeState) -> String {
        match s {
            BtreeState::Unformatted => "unformatted".into(),
            BtreeState::Trees(t) => format!(
                "transaction {}: trees of {:?} keys, {} metadata blocks",
                t.txn,
                t.slots
                    .iter()
                    .map(|s| s.as_ref().map(|m| m.len()))
                    .collect::<Vec<_>>(),
                t.nr_metadata_blocks
            ),
        }
    }
}

pub struct BtreeSession {
    dev: Arc<dyn BlockDevice>,
    tm: TransactionManager,
    script: Arc<Vec<Op>>,
    mutation: bool,
    roots: [u64; SLOTS],
    committed_roots: [u64; SLOTS],
    committed_sm: SmRoot,
    model: Trees,
    committed: Trees,
}

impl BtreeSession {
    fn commit_as(&mut self, txn: u64) -> Result<(), String> {
        let sm = self.tm.pre_commit().map_err(e2s)?;
        let sb = pack_superblock(&Superblock {
            txn,
            sm,
            roots: self.roots,
        });
        self.tm.commit(0, &SUPERBLOCK, sb).map_err(e2s)?;
        self.model.txn = txn;
        self.committed = self.model.clone();
        self.committed_roots = self.roots;
        self.committed_sm = sm;
        Ok(())
    }

    fn delete_slot(&mut self, slot: usize) -> pdata::Result<()> {
        if self.roots[slot] != 0 {
            btree::delete_tree(&mut self.tm, self.roots[slot], 1, &mut NoRefs(8))?;
            self.roots[slot] = 0;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> pdata::Result<()> {
        match *op {
            Op::Insert {
                slot,
                key,
                n,
                stride,
                salt,
            } => {
                if self.roots[slot] == 0 {
                    self.roots[slot] = btree::empty_tree(&mut self.tm, 8)?;
                }
                let m = self.model.slots[slot].get_or_insert_with(BTreeMap::new);
                for j in 0..n {
                    let k = key + j * stride;
                    let v = value_of(salt, k);
                    self.roots[slot] = btree::insert(
                        &mut self.tm,
                        self.roots[slot],
                        &[k],
                        &v.to_le_bytes(),
                        &mut NoRefs(8),
                    )?
                    .0;
                    m.insert(k, v);
                }
            }
            Op::Remove { slot, key } => {
                self.roots[slot] =
                    btree::remove(&mut self.tm, self.roots[slot], &[key], &mut NoRefs(8))?;
                if let Some(m) = self.model.slots[slot].as_mut() {
                    m.remove(&key);
                }
            }
            Op::RemoveRange { slot, begin, end } => {
                let (root, n) = btree::remove_range(
                    &mut self.tm,
                    self.roots[slot],
                    begin,
                    end,
                    &mut NoRefs(8),
                )?;
                self.roots[slot] = root;
                if let Some(m) = self.model.slots[slot].as_mut() {
                    let gone: Vec<u64> = m.range(begin..end).map(|(k, _)| *k).collect();
                    for k in &gone {
                        m.remove(k);
                    }
                    if gone.len() as u64 != n {
                        return Err(Error::invalid(format!(
                            "remove_range removed {n} keys, the model {}",
                            gone.len()
                        )));
                    }
                }
            }
            Op::Clone { dst, src } => {
                self.delete_slot(dst)?;
                self.tm.inc(self.roots[src])?;
                self.roots[dst] = self.roots[src];
                self.model.slots[dst] = self.model.slots[src].clone();
            }
            Op::Delete(slot) => {
                self.delete_slot(slot)?;
                self.model.slots[slot] = None;
            }
            Op::ExtendMetadata(n) => {
                self.tm.extend_metadata(n)?;
                self.model.nr_metadata_blocks = n;
            }
            Op::Commit | Op::Abort | Op::Reopen => unreachable!("handled by step"),
        }
        Ok(())
    }

    fn abort_tm(&mut self) -> pdata::Result<()> {
        self.tm.abort(&self.committed_sm)?;
        // The superblock on disk decides: a commit whose last flush failed
        // may be there.
        let sb = read_superblock(self.tm.bm())?;
        self.tm.abort(&sb.sm)?;
        self.roots = sb.roots;
        self.committed_roots = sb.roots;
        self.committed_sm = sb.sm;
        Ok(())
    }
}

impl Session for BtreeSession {
    type State = BtreeState;

    fn commit_target(&self, i: usize) -> Option<BtreeState> {
        match self.script[i] {
            Op::Commit => {
                let mut t = self.model.clone();
                t.txn += 1;
                Some(BtreeState::Trees(t))
            }
            _ => None,
        }
    }

    fn step(&mut self, i: usize) -> Result<(), String> {
        let op = self.script[i].clone();
        match op {
            Op::Commit => self.commit_as(self.model.txn + 1),
            Op::Abort => {
                self.abort_tm().map_err(e2s)?;
                self.model = self.committed.clone();
                Ok(())
            }
            Op::Reopen => {
                let bm = BlockManager::new(self.dev.clone(), CACHE_BLOCKS, true);
                let sb = read_superblock(&bm).map_err(e2s)?;
                let mut tm = TransactionManager::open(bm, &sb.sm).map_err(e2s)?;
                if self.mutation {
                    tm.enable_seed_bug_mutation();
                }
                self.tm = tm;
                self.roots = sb.roots;
                self.committed_roots = sb.roots;
                self.committed_sm = sb.sm;
                self.model = self.committed.clone();
                Ok(())
            }
            op => self.apply(&op).map_err(e2s),
        }
    }

    fn committed(&self) -> BtreeState {
        BtreeState::Trees(self.committed.clone())
    }

    fn probe_commit(&mut self) -> bool {
        let txn = self.model.txn + 1;
        self.commit_as(txn).is_ok()
    }

    fn abort(&mut self) -> Result<(), String> {
        self.abort_tm().map_err(e2s)
    }

    fn handle_state(&mut self) -> Result<BtreeState, String> {
        let sb_txn = read_superblock(self.tm.bm()).map_err(e2s)?.txn;
        read_trees(&self.tm, sb_txn, &self.roots).map(BtreeState::Trees)
    }

    fn adopt(&mut self, s: BtreeState) {
        if let BtreeState::Trees(t) = s {
            self.model = t.clone();
            self.committed = t;
        }
    }

    fn extra(&mut self) -> Result<BtreeState, String> {
        let slot = (0..SLOTS).find(|&s| self.roots[s] != 0).unwrap_or(0);
        self.apply(&Op::Insert {
            slot,
            key: KEYS + 1,
            n: 3,
            stride: 1,
            salt: 99,
        })
        .map_err(e2s)?;
        self.commit_as(self.model.txn + 1)?;
        Ok(self.committed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdata::io::MemoryDevice;

    #[test]
    fn script_runs_and_matches_the_model() {
        let w = BtreeWorkload::new(2, 12, 8);
        let mem = Arc::new(MemoryDevice::new(DEVICE_BLOCKS));
        let mut s = w.format(mem.clone(), false).unwrap();
        assert_eq!(w.read_disk(mem.clone()).unwrap(), w.formatted());
        for i in 0..w.nr_steps() {
            s.step(i)
                .unwrap_or_else(|e| panic!("{}: {e}", w.describe_step(i)));
            if matches!(w.script[i], Op::Commit) {
                let got = w.read_disk(mem.clone()).unwrap();
                assert_eq!(got, s.committed(), "{}", w.describe_step(i));
            }
        }
        assert_eq!(s.handle_state().unwrap(), s.committed());
        let after = s.extra().unwrap();
        assert_eq!(w.read_disk(mem).unwrap(), after);
    }
}
