//! The raw B-tree + space-map workload, straight on pdata: three slots for
//! single-level trees of u64 values, with inserts, removes, range removes,
//! clones (shared roots: reference counts above 2 go to the overflow tree),
//! deletes and metadata space-map growth, through a small block cache so
//! dirty blocks are also written by eviction in the middle of transactions.
//!
//! The superblock is this workload's own ([`superblock`]): it holds the
//! transaction number, the space-map root and the slots' roots.

mod audit;
pub mod superblock;

use crate::rng::Rng;
use crate::script::{e2s, Client, Disk, Scripted, Step};
use pdata::block_manager::{le64, BlockManager, BlockRead};
use pdata::btree::{self, NoRefs};
use pdata::io::BlockDevice;
use pdata::space_map::format::SmRoot;
use pdata::transaction_manager::TransactionManager;
use pdata::Error;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use superblock::{pack_superblock, read_superblock, Superblock, SLOTS, SUPERBLOCK};

pub const DEVICE_BLOCKS: u64 = 512;
/// Blocks the handle caches (the block manager's minimum).
const CACHE_BLOCKS: usize = 64;
const KEYS: u64 = 200_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trees {
    pub txn: u64,
    pub nr_metadata_blocks: u64,
    pub slots: Vec<Option<BTreeMap<u64, u64>>>,
}

pub type BtreeState = Disk<Trees>;

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
}

fn value_of(salt: u64, key: u64) -> u64 {
    let mut r = Rng::new(salt ^ key.wrapping_mul(0x2545_f491_4f6c_dd1d));
    r.next_u64()
}

/// What the generator knows: which keys each slot holds.
#[derive(Clone)]
pub struct GenModel {
    slots: Vec<Option<BTreeSet<u64>>>,
    nr_meta: u64,
}

/// The workload: the B-tree client and its script.
pub type BtreeWorkload = Scripted<Btree>;

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

/// The B-tree client.
pub struct Btree;

/// The transaction manager and the slots' roots as the transaction has them.
pub struct BtreeHandle {
    tm: TransactionManager,
    roots: [u64; SLOTS],
    /// The space map of the last commit, where an abort goes back to.
    committed_sm: SmRoot,
}

impl BtreeHandle {
    fn open(dev: Arc<dyn BlockDevice>) -> pdata::Result<BtreeHandle> {
        let bm = BlockManager::new(dev, CACHE_BLOCKS, true);
        let sb = read_superblock(&bm)?;
        let tm = TransactionManager::open(bm, &sb.sm)?;
        Ok(BtreeHandle {
            tm,
            roots: sb.roots,
            committed_sm: sb.sm,
        })
    }

    fn commit_as(&mut self, txn: u64) -> pdata::Result<()> {
        let sm = self.tm.pre_commit()?;
        let sb = pack_superblock(&Superblock {
            txn,
            sm,
            roots: self.roots,
        });
        self.tm.commit(0, &SUPERBLOCK, sb)?;
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

    fn apply(&mut self, model: &mut Trees, op: &Op) -> pdata::Result<()> {
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
                let m = model.slots[slot].get_or_insert_with(BTreeMap::new);
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
                if let Some(m) = model.slots[slot].as_mut() {
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
                if let Some(m) = model.slots[slot].as_mut() {
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
                model.slots[dst] = model.slots[src].clone();
            }
            Op::Delete(slot) => {
                self.delete_slot(slot)?;
                model.slots[slot] = None;
            }
            Op::ExtendMetadata(n) => {
                self.tm.extend_metadata(n)?;
                model.nr_metadata_blocks = n;
            }
        }
        Ok(())
    }
}

impl Client for Btree {
    type Op = Op;
    type Gen = GenModel;
    type Model = Trees;
    type Handle = BtreeHandle;
    const DEVICE_BLOCKS: u64 = DEVICE_BLOCKS;

    fn gen_start(&self) -> GenModel {
        GenModel {
            slots: vec![None; SLOTS],
            nr_meta: DEVICE_BLOCKS,
        }
    }

    fn gen_step(&self, rng: &mut Rng, g: &GenModel, grown: &mut u32) -> Option<Step<Op>> {
        let full = |rng: &mut Rng| {
            let v: Vec<usize> = (0..SLOTS).filter(|&s| g.slots[s].is_some()).collect();
            (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize])
        };
        // Insert, Remove, RemoveRange, Clone, Delete, Extend, Abort, Reopen.
        let op = match rng.weighted(&[30, 10, 5, 5, 2, 2, 1, 1]) {
            0 => {
                let n = rng.range(1, 1000);
                let stride = rng.range(1, 8);
                Op::Insert {
                    slot: rng.below(SLOTS as u64) as usize,
                    key: rng.below(KEYS - n * stride),
                    n,
                    stride,
                    salt: rng.next_u64(),
                }
            }
            1 => {
                let slot = full(rng)?;
                let keys = g.slots[slot].as_ref().expect("full slot");
                if keys.is_empty() {
                    return None;
                }
                let key = *keys.iter().nth(rng.below(keys.len() as u64) as usize)?;
                Op::Remove { slot, key }
            }
            2 => {
                let slot = full(rng)?;
                let begin = rng.below(KEYS);
                Op::RemoveRange {
                    slot,
                    begin,
                    end: begin + rng.range(1, 6000),
                }
            }
            3 => {
                let src = full(rng)?;
                let dst = rng.below(SLOTS as u64) as usize;
                (dst != src).then_some(Op::Clone { dst, src })?
            }
            4 => Op::Delete(full(rng)?),
            5 => {
                if *grown >= 2 {
                    return None;
                }
                *grown += 1;
                Op::ExtendMetadata(g.nr_meta + rng.range(1, 200))
            }
            6 => return Some(Step::Abort),
            _ => return Some(Step::Reopen),
        };
        Some(Step::Op(op))
    }

    fn gen_apply(&self, g: &mut GenModel, _committed: &mut GenModel, op: &Op) {
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
        }
    }

    fn formatted(&self) -> Trees {
        Trees {
            txn: 0,
            nr_metadata_blocks: DEVICE_BLOCKS,
            slots: vec![None; SLOTS],
        }
    }

    fn format(&self, dev: Arc<dyn BlockDevice>) -> Result<BtreeHandle, String> {
        let tm =
            TransactionManager::format(BlockManager::new(dev, CACHE_BLOCKS, true)).map_err(e2s)?;
        let mut h = BtreeHandle {
            tm,
            roots: [0; SLOTS],
            committed_sm: SmRoot::default(),
        };
        h.commit_as(0).map_err(e2s)?;
        Ok(h)
    }

    fn open(&self, dev: Arc<dyn BlockDevice>) -> Result<BtreeHandle, String> {
        BtreeHandle::open(dev).map_err(e2s)
    }

    fn enable_mutation(&self, h: &mut BtreeHandle) {
        h.tm.enable_seed_bug_mutation();
    }

    fn apply(
        &self,
        h: &mut BtreeHandle,
        model: &mut Trees,
        _committed: &mut Trees,
        op: &Op,
    ) -> Result<(), String> {
        h.apply(model, op).map_err(e2s)
    }

    fn next_transaction(&self, model: &Trees) -> Trees {
        let mut t = model.clone();
        t.txn += 1;
        t
    }

    fn commit(&self, h: &mut BtreeHandle, model: &mut Trees) -> Result<(), String> {
        let txn = model.txn + 1;
        h.commit_as(txn).map_err(e2s)?;
        model.txn = txn;
        Ok(())
    }

    fn abort(&self, h: &mut BtreeHandle) -> Result<(), String> {
        h.tm.abort(&h.committed_sm).map_err(e2s)?;
        // The superblock on disk decides: a commit whose last flush failed
        // may be there.
        let sb = read_superblock(h.tm.bm()).map_err(e2s)?;
        h.tm.abort(&sb.sm).map_err(e2s)?;
        h.roots = sb.roots;
        h.committed_sm = sb.sm;
        Ok(())
    }

    fn read_handle(&self, h: &mut BtreeHandle) -> Result<Trees, String> {
        let sb_txn = read_superblock(h.tm.bm()).map_err(e2s)?.txn;
        read_trees(&h.tm, sb_txn, &h.roots)
    }

    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<Trees, String> {
        let bm = BlockManager::new(dev, 4096, false);
        let sb = read_superblock(&bm).map_err(|e| format!("open: {e}"))?;
        let tm = TransactionManager::open(bm, &sb.sm).map_err(|e| format!("open: {e}"))?;
        audit::audit(&tm, &sb)?;
        read_trees(&tm, sb.txn, &sb.roots)
    }

    fn extra(&self, h: &mut BtreeHandle, model: &mut Trees) -> Result<(), String> {
        let slot = (0..SLOTS).find(|&s| h.roots[s] != 0).unwrap_or(0);
        let op = Op::Insert {
            slot,
            key: KEYS + 1,
            n: 3,
            stride: 1,
            salt: 99,
        };
        h.apply(model, &op).map_err(e2s)
    }

    fn summary(&self, t: &Trees) -> String {
        format!(
            "transaction {}: trees of {:?} keys, {} metadata blocks",
            t.txn,
            t.slots
                .iter()
                .map(|s| s.as_ref().map(|m| m.len()))
                .collect::<Vec<_>>(),
            t.nr_metadata_blocks
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::check_script;

    #[test]
    fn script_runs_and_matches_the_model() {
        check_script(&Scripted::new(Btree, 2, 12, 8));
    }
}
