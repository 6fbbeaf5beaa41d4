//! The dm-thin workload: a seeded script of pool operations (thins,
//! snapshots, provisioning, shared mappings, removals, deletions, metadata
//! snapshots, resizes, aborts and reopenings) over several transactions,
//! against a model of every device's mappings.

use crate::rng::Rng;
use crate::script::{e2s, Client, Disk, Scripted, Step};
use pdata::btree;
use pdata::io::BlockDevice;
use pdata::live::LiveMetadata;
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

pub type ThinState = Disk<Pool>;

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
}

/// What the generator knows: which thin blocks are mapped (not to what).
#[derive(Clone, Default)]
pub struct GenModel {
    devs: BTreeMap<u64, BTreeSet<u64>>,
    snap: bool,
    nr_data: u64,
    nr_meta: u64,
}

/// The workload: the thin client and its script.
pub type ThinWorkload = Scripted<Thin>;

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

/// The dm-thin client.
pub struct Thin;

fn open_pool(dev: Arc<dyn BlockDevice>) -> Result<ThinMetadata, String> {
    ThinMetadata::open_with_cache(dev, true, CACHE_BLOCKS).map_err(e2s)
}

fn dev_mut(model: &mut Pool, dev: u64) -> Result<&mut BTreeMap<u64, u64>, String> {
    model
        .devices
        .get_mut(&dev)
        .ok_or_else(|| format!("script error: device {dev} is not in the model"))
}

impl Client for Thin {
    type Op = Op;
    type Gen = GenModel;
    type Model = Pool;
    type Handle = ThinMetadata;
    const DEVICE_BLOCKS: u64 = DEVICE_BLOCKS;

    fn gen_start(&self) -> GenModel {
        GenModel {
            nr_data: DATA_BLOCKS,
            nr_meta: DEVICE_BLOCKS,
            ..GenModel::default()
        }
    }

    fn gen_step(&self, rng: &mut Rng, g: &GenModel, grown: &mut u32) -> Option<Step<Op>> {
        let existing = |rng: &mut Rng| rng.pick(g.devs.keys().copied());
        let free = |rng: &mut Rng| rng.pick((0..DEV_IDS).filter(|d| !g.devs.contains_key(d)));
        let mapped = |rng: &mut Rng| {
            let with_mappings = g.devs.iter().filter(|(_, m)| !m.is_empty());
            rng.pick(with_mappings.map(|(d, _)| *d))
        };
        // CreateThin, CreateSnap, Delete, Provision, Share, Remove, RemoveRange,
        // metadata snapshot, ResizeData, ResizeMetadata, Abort, Reopen.
        const W: [u32; 12] = [9, 9, 3, 36, 9, 9, 6, 6, 3, 3, 1, 1];
        let mut weights = W;
        if g.devs.is_empty() {
            weights = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        }
        let op = match rng.weighted(&weights) {
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
                let from = mapped(rng)?;
                let from_vblock = rng.pick(g.devs[&from].iter().copied())?;
                let dev = existing(rng)?;
                Some(Op::Share {
                    dev,
                    vblock: rng.below(VBLOCKS),
                    from,
                    from_vblock,
                })
            }
            5 => {
                let dev = mapped(rng)?;
                let vblock = rng.pick(g.devs[&dev].iter().copied())?;
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
                if *grown >= 2 {
                    return None;
                }
                *grown += 1;
                Some(Op::ResizeMetadata(g.nr_meta + rng.range(1, 300)))
            }
            10 => return Some(Step::Abort),
            _ => return Some(Step::Reopen),
        };
        op.map(Step::Op)
    }

    fn gen_apply(&self, g: &mut GenModel, committed: &mut GenModel, op: &Op) {
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
        }
    }

    fn formatted(&self) -> Pool {
        Pool {
            transaction_id: 0,
            nr_data_blocks: DATA_BLOCKS,
            nr_metadata_blocks: DEVICE_BLOCKS,
            devices: Devices::new(),
            snapshot: None,
        }
    }

    fn format(&self, dev: Arc<dyn BlockDevice>) -> Result<ThinMetadata, String> {
        ThinMetadata::format_with_cache(dev, DATA_BLOCK_SIZE, DATA_BLOCKS, false, CACHE_BLOCKS)
            .map_err(e2s)
    }

    fn open(&self, dev: Arc<dyn BlockDevice>) -> Result<ThinMetadata, String> {
        open_pool(dev)
    }

    fn enable_mutation(&self, md: &mut ThinMetadata) {
        md.transaction_manager_mut().enable_seed_bug_mutation();
    }

    fn apply(
        &self,
        md: &mut ThinMetadata,
        model: &mut Pool,
        committed: &mut Pool,
        op: &Op,
    ) -> Result<(), String> {
        match *op {
            Op::CreateThin(d) => {
                md.create_thin(d).map_err(e2s)?;
                model.devices.insert(d, BTreeMap::new());
            }
            Op::CreateSnap { dev, origin } => {
                md.create_snap(dev, origin).map_err(e2s)?;
                let m = dev_mut(model, origin)?.clone();
                model.devices.insert(dev, m);
            }
            Op::Delete(d) => {
                md.delete(d).map_err(e2s)?;
                model.devices.remove(&d);
            }
            Op::Provision { dev, vblock, n } => {
                for v in vblock..vblock + n {
                    let b = md.provision(dev, v).map_err(e2s)?;
                    dev_mut(model, dev)?.insert(v, b);
                }
            }
            Op::Share {
                dev,
                vblock,
                from,
                from_vblock,
            } => {
                let b = *dev_mut(model, from)?
                    .get(&from_vblock)
                    .ok_or("script error: sharing an unmapped block")?;
                md.insert(dev, vblock, b).map_err(e2s)?;
                dev_mut(model, dev)?.insert(vblock, b);
            }
            Op::Remove { dev, vblock } => {
                md.remove(dev, vblock).map_err(e2s)?;
                dev_mut(model, dev)?.remove(&vblock);
            }
            Op::RemoveRange { dev, begin, end } => {
                let n = md.remove_range(dev, begin, end).map_err(e2s)?;
                let m = dev_mut(model, dev)?;
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
                // Reserving commits first.
                md.reserve_metadata_snap().map_err(e2s)?;
                *committed = model.clone();
                model.snapshot = Some(model.devices.clone());
            }
            Op::ReleaseSnap => {
                md.release_metadata_snap().map_err(e2s)?;
                model.snapshot = None;
            }
            Op::ResizeData(n) => {
                md.resize_data(n).map_err(e2s)?;
                model.nr_data_blocks = n;
            }
            Op::ResizeMetadata(n) => {
                md.resize_metadata(n).map_err(e2s)?;
                model.nr_metadata_blocks = n;
            }
        }
        Ok(())
    }

    fn next_transaction(&self, model: &Pool) -> Pool {
        let mut p = model.clone();
        p.transaction_id += 1;
        p
    }

    fn op_commit_target(&self, op: &Op, model: &Pool) -> Option<Pool> {
        matches!(op, Op::ReserveSnap).then(|| model.clone())
    }

    fn commit(&self, md: &mut ThinMetadata, model: &mut Pool) -> Result<(), String> {
        let txn = model.transaction_id;
        md.set_transaction_id(txn, txn + 1).map_err(e2s)?;
        model.transaction_id = txn + 1;
        md.commit().map_err(e2s)
    }

    fn probe_commit(&self, md: &mut ThinMetadata, _model: &mut Pool) -> bool {
        md.commit().is_ok()
    }

    fn abort(&self, md: &mut ThinMetadata) -> Result<(), String> {
        md.abort().map_err(e2s)
    }

    fn read_handle(&self, md: &mut ThinMetadata) -> Result<Pool, String> {
        read_pool(md)
    }

    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<Pool, String> {
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
        Ok(pool)
    }

    fn extra(&self, md: &mut ThinMetadata, model: &mut Pool) -> Result<(), String> {
        let id = (100..)
            .find(|d| !model.devices.contains_key(d))
            .expect("a free id");
        md.create_thin(id).map_err(e2s)?;
        model.devices.insert(id, BTreeMap::new());
        let b = md.provision(id, 7).map_err(e2s)?;
        dev_mut(model, id)?.insert(7, b);
        Ok(())
    }

    fn summary(&self, p: &Pool) -> String {
        format!(
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
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::check_script;

    #[test]
    fn script_runs_and_matches_the_model() {
        let last = check_script(&Scripted::new(Thin, 1, 10, 6));
        assert_eq!(last.transaction_id, 6);
    }

    #[test]
    fn scripts_are_reproducible() {
        let a = format!("{:?}", Scripted::new(Thin, 5, 8, 4).script());
        assert_eq!(a, format!("{:?}", Scripted::new(Thin, 5, 8, 4).script()));
        assert_ne!(a, format!("{:?}", Scripted::new(Thin, 6, 8, 4).script()));
    }
}
