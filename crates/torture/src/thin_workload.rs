//! The dm-thin workload: a seeded script of pool operations (thins,
//! snapshots, provisioning, shared mappings, removals, deletions, metadata
//! snapshots, resizes, aborts and reopenings) over several transactions,
//! against a model of every device's mappings.

use crate::rng::Rng;
use crate::workload::{Session, Workload};
use pdata::btree;
use pdata::io::BlockDevice;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use thin::check::check;
use thin::format::block_time::BlockTime;
use thin::ThinMetadata;

/// A small cache, so dirty blocks are evicted (written back) mid-transaction.
const CACHE_BLOCKS: usize = 64;

/// Metadata device size at the start (4 MiB).
pub const DEVICE_BLOCKS: u64 = 1024;
/// Data blocks at format time.
pub const DATA_BLOCKS: u64 = 20_000;
const DATA_BLOCK_SIZE: u32 = 128;
/// Thin device ids the script uses.
const DEV_IDS: u64 = 10;
/// Thin blocks the script maps, per device.
const VBLOCKS: u64 = 2048;

/// Device id -> (thin block -> data block).
pub type Devices = BTreeMap<u64, BTreeMap<u64, u64>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub transaction_id: u64,
    pub nr_data_blocks: u64,
    pub nr_metadata_blocks: u64,
    pub devices: Devices,
    /// The devices the metadata snapshot holds, if one is held.
    pub snapshot: Option<Devices>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThinState {
    Unformatted,
    Pool(Pool),
}

#[derive(Clone, Debug)]
pub enum Op {
    CreateThin(u64),
    CreateSnap {
        dev: u64,
        origin: u64,
    },
    Delete(u64),
    /// Provisions `n` blocks from `vblock` on.
    Provision {
        dev: u64,
        vblock: u64,
        n: u64,
    },
    /// Maps `vblock` of `dev` to the data block `from`'s `from_vblock` maps.
    Share {
        dev: u64,
        vblock: u64,
        from: u64,
        from_vblock: u64,
    },
    Remove {
        dev: u64,
        vblock: u64,
    },
    RemoveRange {
        dev: u64,
        begin: u64,
        end: u64,
    },
    ReserveSnap,
    ReleaseSnap,
    ResizeData(u64),
    ResizeMetadata(u64),
    Commit,
    Abort,
    Reopen,
}

/// What the generator knows: which thin blocks are mapped (not to what).
#[derive(Clone, Default)]
struct GenModel {
    devs: BTreeMap<u64, BTreeSet<u64>>,
    snap: bool,
    nr_data: u64,
    nr_meta: u64,
}

fn pick<T: Copy>(rng: &mut Rng, items: impl Iterator<Item = T>) -> Option<T> {
    let v: Vec<T> = items.collect();
    if v.is_empty() {
        None
    } else {
        Some(v[rng.below(v.len() as u64) as usize])
    }
}

fn gen_op(rng: &mut Rng, g: &GenModel, metadata_resizes: &mut u32) -> Option<Op> {
    let existing = |rng: &mut Rng| pick(rng, g.devs.keys().copied());
    let free = |rng: &mut Rng| pick(rng, (0..DEV_IDS).filter(|d| !g.devs.contains_key(d)));
    // CreateThin, CreateSnap, Delete, Provision, Share, Remove, RemoveRange,
    // metadata snapshot, ResizeData, ResizeMetadata, Abort, Reopen.
    const W: [u32; 12] = [9, 9, 3, 36, 9, 9, 6, 6, 3, 3, 1, 1];
    let mut weights = W;
    if g.devs.is_empty() {
        weights = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    }
    match rng.weighted(&weights) {
        0 => free(rng).map(Op::CreateThin),
        1 => {
            let dev = free(rng)?;
            let origin = existing(rng)?;
            Some(Op::CreateSnap { dev, origin })
        }
        2 => (g.devs.len() > 1)
            .then(|| existing(rng))
            .flatten()
            .map(Op::Delete),
        3 => {
            let dev = existing(rng)?;
            let n = rng.range(1, 40);
            let vblock = rng.below(VBLOCKS - n);
            Some(Op::Provision { dev, vblock, n })
        }
        4 => {
            let from = pick(
                rng,
                g.devs
                    .iter()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(d, _)| *d),
            )?;
            let from_vblock = pick(rng, g.devs[&from].iter().copied())?;
            let dev = existing(rng)?;
            Some(Op::Share {
                dev,
                vblock: rng.below(VBLOCKS),
                from,
                from_vblock,
            })
        }
        5 => {
            let dev = pick(
                rng,
                g.devs
                    .iter()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(d, _)| *d),
            )?;
            let vblock = pick(rng, g.devs[&dev].iter().copied())?;
            Some(Op::Remove { dev, vblock })
        }
        6 => {
            let dev = existing(rng)?;
            let begin = rng.below(VBLOCKS);
            let end = begin + rng.range(1, 300);
            Some(Op::RemoveRange { dev, begin, end })
        }
        7 => Some(if g.snap {
            Op::ReleaseSnap
        } else {
            Op::ReserveSnap
        }),
        8 => Some(Op::ResizeData(g.nr_data + rng.range(1, 20_000))),
        9 => {
            if *metadata_resizes >= 2 {
                return None;
            }
            *metadata_resizes += 1;
            Some(Op::ResizeMetadata(g.nr_meta + rng.range(1, 300)))
        }
        10 => Some(Op::Abort),
        _ => Some(Op::Reopen),
    }
}

fn gen_apply(g: &mut GenModel, committed: &mut GenModel, op: &Op) {
    match op {
        Op::CreateThin(d) => {
            g.devs.insert(*d, BTreeSet::new());
        }
        Op::CreateSnap { dev, origin } => {
            let m = g.devs[origin].clone();
            g.devs.insert(*dev, m);
        }
        Op::Delete(d) => {
            g.devs.remove(d);
        }
        Op::Provision { dev, vblock, n } => {
            let m = g
                .devs
                .get_mut(dev)
                .expect("generated for an existing device");
            m.extend(*vblock..vblock + n);
        }
        Op::Share { dev, vblock, .. } => {
            g.devs.get_mut(dev).expect("existing").insert(*vblock);
        }
        Op::Remove { dev, vblock } => {
            g.devs.get_mut(dev).expect("existing").remove(vblock);
        }
        Op::RemoveRange { dev, begin, end } => {
            let m = g.devs.get_mut(dev).expect("existing");
            let gone: Vec<u64> = m.range(begin..end).copied().collect();
            for v in gone {
                m.remove(&v);
            }
        }
        Op::ReserveSnap => {
            *committed = g.clone();
            g.snap = true;
        }
        Op::ReleaseSnap => g.snap = false,
        Op::ResizeData(n) => g.nr_data = *n,
        Op::ResizeMetadata(n) => g.nr_meta = *n,
        Op::Commit => *committed = g.clone(),
        Op::Abort | Op::Reopen => *g = committed.clone(),
    }
}

/// A script of `transactions` transactions of about `ops` operations each
/// (from 1 to 2·ops − 1), every one ending in a commit.
pub fn generate(seed: u64, ops: usize, transactions: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let mut g = GenModel {
        nr_data: DATA_BLOCKS,
        nr_meta: DEVICE_BLOCKS,
        ..GenModel::default()
    };
    let mut committed = g.clone();
    let mut script = Vec::new();
    let mut metadata_resizes = 0;
    for _ in 0..transactions {
        let n = rng.range(1, (2 * ops.max(1) - 1) as u64);
        let mut done = 0;
        while done < n {
            if let Some(op) = gen_op(&mut rng, &g, &mut metadata_resizes) {
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

pub struct ThinWorkload {
    script: Arc<Vec<Op>>,
}

impl ThinWorkload {
    pub fn new(seed: u64, ops: usize, transactions: usize) -> ThinWorkload {
        ThinWorkload {
            script: Arc::new(generate(seed, ops, transactions)),
        }
    }

    pub fn script(&self) -> &[Op] {
        &self.script
    }
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn read_devices(md: &ThinMetadata, mapping_root: u64) -> Result<Devices, String> {
    let tm = md.transaction_manager();
    let mut tops = Vec::new();
    btree::walk(tm, mapping_root, &mut |k, v| {
        tops.push((k, u64::from_le_bytes(v.try_into().expect("8-byte values"))));
        Ok(())
    })
    .map_err(e2s)?;
    let mut out = Devices::new();
    for (dev, root) in tops {
        let mut m = BTreeMap::new();
        btree::walk(tm, root, &mut |k, v| {
            m.insert(k, BlockTime::from_bytes(v).block);
            Ok(())
        })
        .map_err(e2s)?;
        out.insert(dev, m);
    }
    Ok(out)
}

/// Everything a handle sees of the pool.
fn read_pool(md: &mut ThinMetadata) -> Result<Pool, String> {
    let mut devices = Devices::new();
    for dev in md.devices().map_err(e2s)? {
        let m: BTreeMap<u64, u64> = md
            .mappings(dev)
            .map_err(e2s)?
            .into_iter()
            .map(|(v, b, _)| (v, b))
            .collect();
        let details = md.device_details(dev).map_err(e2s)?;
        if details.mapped_blocks != m.len() as u64 {
            return Err(format!(
                "device {dev}: details say {} mapped blocks, the tree holds {}",
                details.mapped_blocks,
                m.len()
            ));
        }
        devices.insert(dev, m);
    }
    let snapshot = match md.metadata_snap().map_err(e2s)? {
        Some(sb) => Some(read_devices(md, sb.data_mapping_root)?),
        None => None,
    };
    Ok(Pool {
        transaction_id: md.transaction_id(),
        nr_data_blocks: md.nr_data_blocks(),
        nr_metadata_blocks: md.nr_metadata_blocks(),
        devices,
        snapshot,
    })
}

fn nr_mappings(d: &Devices) -> usize {
    d.values().map(|m| m.len()).sum()
}

impl Workload for ThinWorkload {
    type State = ThinState;
    type Session = ThinSession;

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

    fn unformatted(&self) -> ThinState {
        ThinState::Unformatted
    }

    fn formatted(&self) -> ThinState {
        ThinState::Pool(Pool {
            transaction_id: 0,
            nr_data_blocks: DATA_BLOCKS,
            nr_metadata_blocks: DEVICE_BLOCKS,
            devices: Devices::new(),
            snapshot: None,
        })
    }

    fn format(&self, dev: Arc<dyn BlockDevice>, mutation: bool) -> Result<ThinSession, String> {
        let mut md = ThinMetadata::format_with_cache(
            dev.clone(),
            DATA_BLOCK_SIZE,
            DATA_BLOCKS,
            false,
            CACHE_BLOCKS,
        )
        .map_err(e2s)?;
        if mutation {
            md.transaction_manager_mut().enable_seed_bug_mutation();
        }
        let ThinState::Pool(p) = self.formatted() else {
            unreachable!()
        };
        Ok(ThinSession {
            dev,
            md,
            script: self.script.clone(),
            mutation,
            model: p.clone(),
            committed: p,
        })
    }

    fn open(
        &self,
        dev: Arc<dyn BlockDevice>,
        mutation: bool,
        committed: ThinState,
    ) -> Result<ThinSession, String> {
        let ThinState::Pool(p) = committed else {
            return Err("opening an unformatted device".into());
        };
        let mut md = ThinMetadata::open_with_cache(dev.clone(), true, CACHE_BLOCKS).map_err(e2s)?;
        if mutation {
            md.transaction_manager_mut().enable_seed_bug_mutation();
        }
        Ok(ThinSession {
            dev,
            md,
            script: self.script.clone(),
            mutation,
            model: p.clone(),
            committed: p,
        })
    }

    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<ThinState, String> {
        let mut b0 = [0u8; pdata::BLOCK_SIZE];
        dev.read_block(0, &mut b0).map_err(e2s)?;
        if b0.iter().all(|&b| b == 0) {
            return Ok(ThinState::Unformatted);
        }
        let report = check(dev.clone()).map_err(|e| format!("check failed: {e}"))?;
        if !report.errors.is_empty() {
            let n = report.errors.len();
            let first: Vec<&str> = report.errors.iter().take(3).map(|s| s.as_str()).collect();
            return Err(format!("check: {n} errors: {}", first.join("; ")));
        }
        if !report.leaks.is_empty() {
            let n = report.leaks.len();
            return Err(format!("check: {n} leaks: {}", report.leaks[0]));
        }
        let mut md = ThinMetadata::open(dev, false).map_err(|e| format!("open: {e}"))?;
        let pool = read_pool(&mut md)?;
        if nr_mappings(&pool.devices) as u64 != report.nr_mappings {
            return Err(format!(
                "check counted {} mappings, the pool reads {}",
                report.nr_mappings,
                nr_mappings(&pool.devices)
            ));
        }
        Ok(ThinState::Pool(pool))
    }

    fn summary(&self, s: &ThinState) -> String {
        match s {
            ThinState::Unformatted => "unformatted".into(),
            ThinState::Pool(p) => format!(
                "transaction {}: {} devices, {} mappings, {} data blocks, {} metadata blocks{}",
                p.transaction_id,
                p.devices.len(),
                nr_mappings(&p.devices),
                p.nr_data_blocks,
                p.nr_metadata_blocks,
                match &p.snapshot {
                    Some(d) => format!(", metadata snapshot of {} mappings", nr_mappings(d)),
                    None => String::new(),
                }
            ),
        }
    }
}

pub struct ThinSession {
    dev: Arc<dyn BlockDevice>,
    md: ThinMetadata,
    script: Arc<Vec<Op>>,
    mutation: bool,
    model: Pool,
    committed: Pool,
}

impl ThinSession {
    fn commit_now(&mut self) -> Result<(), String> {
        let txn = self.model.transaction_id;
        self.md.set_transaction_id(txn, txn + 1).map_err(e2s)?;
        self.model.transaction_id = txn + 1;
        self.md.commit().map_err(e2s)?;
        self.committed = self.model.clone();
        Ok(())
    }

    fn dev_mut(&mut self, dev: u64) -> Result<&mut BTreeMap<u64, u64>, String> {
        self.model
            .devices
            .get_mut(&dev)
            .ok_or_else(|| format!("script error: device {dev} is not in the model"))
    }
}

impl Session for ThinSession {
    type State = ThinState;

    fn commit_target(&self, i: usize) -> Option<ThinState> {
        match self.script[i] {
            Op::Commit => {
                let mut p = self.model.clone();
                p.transaction_id += 1;
                Some(ThinState::Pool(p))
            }
            Op::ReserveSnap => Some(ThinState::Pool(self.model.clone())),
            _ => None,
        }
    }

    fn step(&mut self, i: usize) -> Result<(), String> {
        let op = self.script[i].clone();
        match op {
            Op::CreateThin(d) => {
                self.md.create_thin(d).map_err(e2s)?;
                self.model.devices.insert(d, BTreeMap::new());
            }
            Op::CreateSnap { dev, origin } => {
                self.md.create_snap(dev, origin).map_err(e2s)?;
                let m = self.dev_mut(origin)?.clone();
                self.model.devices.insert(dev, m);
            }
            Op::Delete(d) => {
                self.md.delete(d).map_err(e2s)?;
                self.model.devices.remove(&d);
            }
            Op::Provision { dev, vblock, n } => {
                for v in vblock..vblock + n {
                    let b = self.md.provision(dev, v).map_err(e2s)?;
                    self.dev_mut(dev)?.insert(v, b);
                }
            }
            Op::Share {
                dev,
                vblock,
                from,
                from_vblock,
            } => {
                let b = *self
                    .dev_mut(from)?
                    .get(&from_vblock)
                    .ok_or("script error: sharing an unmapped block")?;
                self.md.insert(dev, vblock, b).map_err(e2s)?;
                self.dev_mut(dev)?.insert(vblock, b);
            }
            Op::Remove { dev, vblock } => {
                self.md.remove(dev, vblock).map_err(e2s)?;
                self.dev_mut(dev)?.remove(&vblock);
            }
            Op::RemoveRange { dev, begin, end } => {
                let n = self.md.remove_range(dev, begin, end).map_err(e2s)?;
                let m = self.dev_mut(dev)?;
                let gone: Vec<u64> = m.range(begin..end).map(|(k, _)| *k).collect();
                for k in &gone {
                    m.remove(k);
                }
                if n != gone.len() as u64 {
                    return Err(format!(
                        "remove_range removed {n} mappings, the model {}",
                        gone.len()
                    ));
                }
            }
            Op::ReserveSnap => {
                self.md.reserve_metadata_snap().map_err(e2s)?;
                self.committed = self.model.clone();
                self.model.snapshot = Some(self.model.devices.clone());
            }
            Op::ReleaseSnap => {
                self.md.release_metadata_snap().map_err(e2s)?;
                self.model.snapshot = None;
            }
            Op::ResizeData(n) => {
                self.md.resize_data(n).map_err(e2s)?;
                self.model.nr_data_blocks = n;
            }
            Op::ResizeMetadata(n) => {
                self.md.resize_metadata(n).map_err(e2s)?;
                self.model.nr_metadata_blocks = n;
            }
            Op::Commit => self.commit_now()?,
            Op::Abort => {
                self.md.abort().map_err(e2s)?;
                self.model = self.committed.clone();
            }
            Op::Reopen => {
                let mut md = ThinMetadata::open_with_cache(self.dev.clone(), true, CACHE_BLOCKS)
                    .map_err(e2s)?;
                if self.mutation {
                    md.transaction_manager_mut().enable_seed_bug_mutation();
                }
                self.md = md;
                self.model = self.committed.clone();
            }
        }
        Ok(())
    }

    fn committed(&self) -> ThinState {
        ThinState::Pool(self.committed.clone())
    }

    fn probe_commit(&mut self) -> bool {
        self.md.commit().is_ok()
    }

    fn abort(&mut self) -> Result<(), String> {
        self.md.abort().map_err(e2s)
    }

    fn handle_state(&mut self) -> Result<ThinState, String> {
        read_pool(&mut self.md).map(ThinState::Pool)
    }

    fn adopt(&mut self, s: ThinState) {
        if let ThinState::Pool(p) = s {
            self.model = p.clone();
            self.committed = p;
        }
    }

    fn extra(&mut self) -> Result<ThinState, String> {
        let id = (100..)
            .find(|d| !self.model.devices.contains_key(d))
            .expect("a free id");
        self.md.create_thin(id).map_err(e2s)?;
        self.model.devices.insert(id, BTreeMap::new());
        let b = self.md.provision(id, 7).map_err(e2s)?;
        self.dev_mut(id)?.insert(7, b);
        self.commit_now()?;
        Ok(self.committed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdata::io::MemoryDevice;

    #[test]
    fn script_runs_and_matches_the_model() {
        let w = ThinWorkload::new(1, 10, 6);
        let mem = Arc::new(MemoryDevice::new(DEVICE_BLOCKS));
        let mut s = w.format(mem.clone(), false).unwrap();
        for i in 0..w.nr_steps() {
            s.step(i)
                .unwrap_or_else(|e| panic!("{}: {e}", w.describe_step(i)));
            if matches!(w.script()[i], Op::Commit) {
                let got = w.read_disk(mem.clone()).unwrap();
                assert_eq!(got, s.committed(), "{}", w.describe_step(i));
            }
        }
        let ThinState::Pool(p) = s.committed() else {
            panic!()
        };
        assert_eq!(p.transaction_id, 6);
        assert_eq!(s.handle_state().unwrap(), s.committed());
        let after = s.extra().unwrap();
        assert_eq!(w.read_disk(mem).unwrap(), after);
    }

    #[test]
    fn scripts_are_reproducible() {
        let a = format!("{:?}", generate(5, 8, 4));
        assert_eq!(a, format!("{:?}", generate(5, 8, 4)));
        assert_ne!(a, format!("{:?}", generate(6, 8, 4)));
    }
}
