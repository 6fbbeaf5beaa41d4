//! Crash consistency of a served pool, data and metadata together: a
//! seeded workload of thin_serve's requests (writes, FUA, flushes, trims,
//! zeroes, snapshots, deletions, running out of data space) runs on
//! `thin::pool::Pool` over two recorded memory devices with one clock.
//! Every crash image (for each device: every write before its last
//! completed flush, any subset of the later ones, in any order, whole or
//! torn at sectors) must pass the full metadata check with no leak, and
//! every sector of every volume must read back
//! * what it held at the last completed flush, or something written to it
//!   since (acknowledged writes are durable after a flush), and
//! * never anything that was not written to that sector of that volume
//!   (or of its origin before the snapshot).
//!
//! A request that failed (see [`crate::serve_inject`]) may have done any
//! part of its work: its values are possible from then on, never required.
//!
//! Each written sector is stamped with a unique version and its own
//! address, so a read tells exactly which write it came from.

use crate::rng::Rng;
use pdata::io::{BlockDevice, Event, FlakeyDevice, MemoryDevice, RecordingDevice, WHOLE_BLOCK};
use pdata::BLOCK_SIZE;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thin::pool::{Message, Pool, PoolError};
use thin::ThinMetadata;

const SECTOR: u64 = 512;
/// 64 KiB data blocks.
const BLOCK_SECTORS: u64 = 128;
const BLOCK_BYTES: u64 = BLOCK_SECTORS * SECTOR;
/// Each volume: 16 data blocks.
const VOL_BLOCKS: u64 = 16;
const VOL_SECTORS: u64 = VOL_BLOCKS * BLOCK_SECTORS;
/// Data blocks in the pool: two volumes and some snapshots' worth, so that
/// snapshots run it out of space.
const NR_DATA_BLOCKS: u64 = 40;
const META_BLOCKS: u64 = 512;
const DATA_DEV_BLOCKS: u64 = NR_DATA_BLOCKS * BLOCK_BYTES / BLOCK_SIZE as u64;

/// A sector's content for `version` (0: zeros) at `sector` of a volume.
fn stamp(version: u64, sector: u64) -> [u8; SECTOR as usize] {
    let mut s = [0u8; SECTOR as usize];
    if version != 0 {
        for (i, c) in s.chunks_exact_mut(16).enumerate() {
            c[..8].copy_from_slice(&version.to_le_bytes());
            c[8..].copy_from_slice(&(sector ^ (i as u64) << 48).to_le_bytes());
        }
    }
    s
}

/// The version a sector read back holds, if it is a well-formed stamp of
/// this sector.
fn decode(s: &[u8], sector: u64) -> Option<u64> {
    let v = u64::from_le_bytes(s[..8].try_into().ok()?);
    (s == stamp(v, sector)).then_some(v)
}

/// One volume's sectors: every value each has held (or may hold, after a
/// failed request), oldest first, and the index of the last acknowledged
/// one.
#[derive(Clone)]
pub(crate) struct Vol {
    values: Vec<Vec<u64>>,
    acked: Vec<u32>,
}

impl Vol {
    fn zeroed() -> Vol {
        Vol {
            values: vec![vec![0]; VOL_SECTORS as usize],
            acked: vec![0; VOL_SECTORS as usize],
        }
    }

    /// A snapshot of this volume: each sector holds its acknowledged value
    /// or a later failed one.
    fn snapshot(&self) -> Vol {
        Vol {
            values: self
                .values
                .iter()
                .zip(&self.acked)
                .map(|(v, &a)| v[a as usize..].to_vec())
                .collect(),
            acked: vec![0; VOL_SECTORS as usize],
        }
    }
}

/// What the workload did, for the checks.
#[derive(Default)]
pub(crate) struct Model {
    vols: BTreeMap<u64, Vol>,
    /// Volumes a failed message may have created (and their content).
    maybe: BTreeMap<u64, Vol>,
    /// Volumes deleted, or that a failed message may have deleted.
    ever_deleted: BTreeSet<u64>,
    /// At each completed flush (time on the clock): per volume, per sector,
    /// the index in its history that is durable from then on.
    flushes: Vec<(usize, BTreeMap<u64, Vec<u32>>)>,
}

impl Model {
    pub(crate) fn flushed(&mut self, pos: usize) {
        let idx = self
            .vols
            .iter()
            .map(|(&d, v)| (d, v.acked.clone()))
            .collect();
        self.flushes.push((pos, idx));
    }

    /// When each completed flush was, on the clock.
    pub(crate) fn flush_times(&self) -> impl Iterator<Item = usize> + '_ {
        self.flushes.iter().map(|(at, _)| *at)
    }

    /// Sectors from `first` took `values`; unless `acked`, only maybe.
    fn set(&mut self, dev: u64, first: u64, values: impl Iterator<Item = u64>, acked: bool) {
        let vol = self.vols.get_mut(&dev).expect("a live volume");
        for (i, v) in values.enumerate() {
            let s = (first + i as u64) as usize;
            vol.values[s].push(v);
            if acked {
                vol.acked[s] = (vol.values[s].len() - 1) as u32;
            }
        }
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct ServeReport {
    pub steps: usize,
    pub writes: usize,
    pub enospc: usize,
    pub flushes: usize,
    pub log_events: usize,
    pub crash_images: usize,
    pub violations: Vec<String>,
}

/// The pool's two devices: memory, recorded on one clock, under a fault
/// injector each (no rules unless a harness adds them).
pub(crate) struct Rig {
    pub(crate) clock: Arc<AtomicU64>,
    /// The images both devices start from (a formatted pool with volumes
    /// 0 and 1; zeros).
    base: [Arc<Vec<u8>>; 2],
    mem: [Arc<MemoryDevice>; 2],
    rec: [Arc<RecordingDevice>; 2],
    /// Metadata (0) and data (1) as the pool sees them.
    pub(crate) fl: [Arc<FlakeyDevice>; 2],
}

/// The images a rig starts from, made once.
fn base_images() -> [Arc<Vec<u8>>; 2] {
    static BASE: std::sync::OnceLock<[Arc<Vec<u8>>; 2]> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let meta = Arc::new(MemoryDevice::new(META_BLOCKS));
        let mut md =
            ThinMetadata::format(meta.clone(), BLOCK_SECTORS as u32, NR_DATA_BLOCKS, false)
                .expect("format");
        md.create_thin(0).expect("create_thin");
        md.create_thin(1).expect("create_thin");
        md.commit().expect("commit");
        drop(md);
        let data = vec![0u8; (DATA_DEV_BLOCKS * BLOCK_SIZE as u64) as usize];
        [Arc::new(meta.image()), Arc::new(data)]
    })
    .clone()
}

impl Rig {
    pub(crate) fn new() -> Rig {
        let base = base_images();
        let clock = Arc::new(AtomicU64::new(0));
        let mem = base
            .clone()
            .map(|b| Arc::new(MemoryDevice::from_image(b.to_vec())));
        let rec = mem
            .clone()
            .map(|m| Arc::new(RecordingDevice::with_clock(m, clock.clone())));
        let fl = rec.clone().map(|r| Arc::new(FlakeyDevice::new(r)));
        Rig {
            clock,
            base,
            mem,
            rec,
            fl,
        }
    }

    /// The devices a pool opens: the fault injectors, over which a harness
    /// may put layers of its own.
    pub(crate) fn devices(&self) -> [Arc<dyn BlockDevice>; 2] {
        self.fl.clone().map(|f| {
            let d: Arc<dyn BlockDevice> = f;
            d
        })
    }

    /// The pool on `devs` (metadata, data), layers over the rig's devices.
    pub(crate) fn open(&self, devs: [Arc<dyn BlockDevice>; 2]) -> Result<Pool, PoolError> {
        let [meta, data] = devs;
        Pool::open(meta, data, true)
    }

    /// Events logged so far on the clock.
    pub(crate) fn now(&self) -> usize {
        self.clock.load(Ordering::SeqCst) as usize
    }

    /// Each device's log: (ticks, events).
    pub(crate) fn logs(&self) -> [(Vec<u64>, Vec<Event>); 2] {
        self.rec.clone().map(|r| (r.ticks(), r.events()))
    }

    /// What the devices hold now (every logged write landed).
    pub(crate) fn images(&self) -> [Vec<u8>; 2] {
        self.mem.clone().map(|m| m.image())
    }

    /// A crash image of both devices at time `p` (see [`crash_image`]).
    pub(crate) fn crash_images(
        &self,
        logs: &[(Vec<u64>, Vec<Event>); 2],
        p: usize,
        rng: &mut Rng,
    ) -> [Vec<u8>; 2] {
        let meta = crash_image(&self.base[0], &logs[0], p, rng);
        let data = crash_image(&self.base[1], &logs[1], p, rng);
        [meta, data]
    }
}

/// The seeded workload, one request at a time, and its model.
pub(crate) struct Driver {
    rng: Rng,
    version: u64,
    next_id: u64,
    pub(crate) m: Model,
    pub(crate) rep: ServeReport,
}

impl Driver {
    pub(crate) fn new(seed: u64) -> Driver {
        let mut m = Model::default();
        for d in [0, 1] {
            m.vols.insert(d, Vol::zeroed());
        }
        m.flushed(0);
        Driver {
            rng: Rng::new(seed),
            version: 0,
            next_id: 2,
            m,
            rep: ServeReport::default(),
        }
    }

    /// Runs the next request on `pool` (`now`: the clock). A failed request
    /// leaves its possible effects in the model and is returned described.
    pub(crate) fn step(&mut self, pool: &Pool, now: &dyn Fn() -> usize) -> Result<(), String> {
        let (rng, m) = (&mut self.rng, &mut self.m);
        let alive: Vec<u64> = m.vols.keys().copied().collect();
        let dev = alive[rng.below(alive.len() as u64) as usize];
        let b = rng.below(VOL_BLOCKS);
        let fail = |what: String, e: PoolError| Err(format!("{what}: {e}"));
        match rng.weighted(&[45, 8, 6, 12, 4, 3, 2]) {
            0 => {
                // A write inside one data block: running out of space
                // leaves it undone as a whole.
                let whole = rng.chance(0.3);
                let s = if whole { 0 } else { rng.below(BLOCK_SECTORS) };
                let n = if whole {
                    BLOCK_SECTORS
                } else {
                    rng.range(1, BLOCK_SECTORS - s)
                };
                let first = b * BLOCK_SECTORS + s;
                let versions: Vec<u64> = (0..n)
                    .map(|_| {
                        self.version += 1;
                        self.version
                    })
                    .collect();
                let mut buf = Vec::with_capacity((n * SECTOR) as usize);
                for (i, &v) in versions.iter().enumerate() {
                    buf.extend_from_slice(&stamp(v, first + i as u64));
                }
                let fua = rng.chance(0.1);
                match pool.write(dev, first * SECTOR, &buf, fua) {
                    Ok(()) => {
                        self.rep.writes += 1;
                        m.set(dev, first, versions.into_iter(), true);
                        if fua {
                            m.flushed(now());
                        }
                        Ok(())
                    }
                    Err(PoolError::NoSpace) => {
                        self.rep.enospc += 1;
                        Ok(())
                    }
                    Err(e) => {
                        m.set(dev, first, versions.into_iter(), false);
                        fail(format!("write of {dev} at sector {first} (+{n})"), e)
                    }
                }
            }
            1 => {
                let k = rng.range(1, (VOL_BLOCKS - b).min(4));
                let r = pool.discard(dev, b * BLOCK_BYTES, k * BLOCK_BYTES);
                let zeros = std::iter::repeat_n(0, (k * BLOCK_SECTORS) as usize);
                m.set(dev, b * BLOCK_SECTORS, zeros, r.is_ok());
                r.or_else(|e| fail(format!("discard of {dev} at block {b} (+{k})"), e))
            }
            2 => {
                let s = rng.below(BLOCK_SECTORS);
                let n = rng.range(1, BLOCK_SECTORS - s);
                let first = b * BLOCK_SECTORS + s;
                let r = pool.write_zeroes(dev, first * SECTOR, n * SECTOR, rng.chance(0.5), false);
                let zeros = std::iter::repeat_n(0, n as usize);
                match r {
                    Ok(()) => {
                        m.set(dev, first, zeros, true);
                        Ok(())
                    }
                    Err(PoolError::NoSpace) => Ok(()),
                    Err(e) => {
                        m.set(dev, first, zeros, false);
                        fail(format!("write_zeroes of {dev} at sector {first} (+{n})"), e)
                    }
                }
            }
            3 => match pool.flush() {
                Ok(()) => {
                    self.rep.flushes += 1;
                    m.flushed(now());
                    Ok(())
                }
                Err(e) => fail("flush".into(), e),
            },
            4 if m.vols.len() < 5 => {
                let id = self.next_id;
                self.next_id += 1;
                let snap = m.vols[&dev].snapshot();
                match pool.message(&Message::CreateSnap {
                    dev: id,
                    origin: dev,
                }) {
                    Ok(()) => {
                        m.vols.insert(id, snap);
                        m.flushed(now());
                        Ok(())
                    }
                    Err(e) => {
                        m.maybe.insert(id, snap);
                        fail(format!("create_snap {id} of {dev}"), e)
                    }
                }
            }
            5 if dev >= 2 => {
                // Gone at once or not, it may be gone after a crash.
                m.ever_deleted.insert(dev);
                match pool.message(&Message::Delete(dev)) {
                    Ok(()) => {
                        m.vols.remove(&dev);
                        m.flushed(now());
                        Ok(())
                    }
                    Err(e) => fail(format!("delete {dev}"), e),
                }
            }
            6 if m.vols.len() < 5 => {
                let id = self.next_id;
                self.next_id += 1;
                match pool.message(&Message::CreateThin(id)) {
                    Ok(()) => {
                        m.vols.insert(id, Vol::zeroed());
                        m.flushed(now());
                        Ok(())
                    }
                    Err(e) => {
                        m.maybe.insert(id, Vol::zeroed());
                        fail(format!("create_thin {id}"), e)
                    }
                }
            }
            _ => Ok(()),
        }
    }
}

/// Runs the workload from `seed` (`steps` requests), then checks
/// `crashes` crash images; with `mutation`, commits skip the data flush.
pub fn run_serve(seed: u64, steps: usize, crashes: usize, mutation: bool) -> ServeReport {
    let rig = Rig::new();
    let pool = rig.open(rig.devices()).expect("open the pool");
    if mutation {
        pool.enable_mutation();
    }
    let mut d = Driver::new(seed);
    d.rep.steps = steps;
    for step in 0..steps {
        if let Err(e) = d.step(&pool, &|| rig.now()) {
            d.rep.violations.push(format!("step {step}: {e}"));
            return d.rep;
        }
    }
    let logs = rig.logs();
    let nr_events = rig.now();
    let (m, mut rep, mut rng) = (d.m, d.rep, d.rng);
    rep.log_events = nr_events;
    // Crash points: around every flush, and random ones.
    let mut points: Vec<usize> = Vec::new();
    for (ticks, events) in &logs {
        for (t, e) in ticks.iter().zip(events) {
            if matches!(e, Event::Flush) {
                points.extend([*t as usize, *t as usize + 1]);
            }
        }
    }
    rng.shuffle(&mut points);
    points.truncate(crashes / 2);
    while points.len() < crashes {
        points.push(rng.below(nr_events as u64 + 1) as usize);
    }
    points.sort_unstable();
    let found = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&p) = points.get(i) else { break };
                let mut r = Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let [meta, data] = rig.crash_images(&logs, p, &mut r);
                if let Err(e) = check_image(&m, p, meta, data) {
                    found
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("crash at event {p}: {e}"));
                }
            });
        }
    });
    rep.crash_images = points.len();
    let mut v = found.into_inner().unwrap_or_else(|p| p.into_inner());
    v.sort();
    rep.violations.extend(v);
    rep
}

/// A device's image after a crash at time `p` on the shared clock: every
/// write before its last flush, then a shuffled subset of the later ones,
/// some torn.
fn crash_image(
    base: &[u8],
    (ticks, events): &(Vec<u64>, Vec<Event>),
    p: usize,
    rng: &mut Rng,
) -> Vec<u8> {
    let upto = ticks.partition_point(|&t| (t as usize) < p);
    let mut chosen: Vec<(usize, usize, u8)> = pdata::io::in_flight(events, upto)
        .into_iter()
        .filter(|_| rng.chance(0.5))
        .map(|(i, j, _)| (i, j, WHOLE_BLOCK))
        .collect();
    rng.shuffle(&mut chosen);
    for c in &mut chosen {
        if rng.chance(0.2) {
            c.2 = rng.below(256) as u8;
        }
    }
    pdata::io::crash_image(base, events, upto, &chosen)
}

/// The checks of one crash image (see the module's comment).
pub(crate) fn check_image(m: &Model, p: usize, meta: Vec<u8>, data: Vec<u8>) -> Result<(), String> {
    let meta: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(meta));
    let report = thin::check::check(meta.clone()).map_err(|e| format!("check failed: {e}"))?;
    if let Some(e) = report.errors.first() {
        return Err(format!("check: {e}"));
    }
    if let Some(l) = report.leaks.first() {
        return Err(format!("check: leak {l}"));
    }
    let data: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(data));
    let pool = Pool::open(meta, data, false).map_err(|e| format!("open: {e}"))?;
    check_volumes(&pool, m, p)
}

/// Every volume `pool` holds reads back as the model allows at time `p`,
/// and none durable at the last flush before `p` is missing.
pub(crate) fn check_volumes(pool: &Pool, m: &Model, p: usize) -> Result<(), String> {
    let devices = pool.devices().map_err(|e| e.to_string())?;
    let flushed = m
        .flushes
        .iter()
        .rev()
        .find(|(at, _)| *at <= p)
        .map(|(_, f)| f);
    if let Some(f) = flushed {
        for d in f.keys() {
            if !devices.contains(d) && !m.ever_deleted.contains(d) {
                return Err(format!("volume {d}, durable at the last flush, is missing"));
            }
        }
    }
    let mut buf = vec![0u8; (VOL_SECTORS * SECTOR) as usize];
    for d in devices {
        let Some(vol) = m.vols.get(&d).or_else(|| m.maybe.get(&d)) else {
            if m.ever_deleted.contains(&d) {
                continue;
            }
            return Err(format!("volume {d} was never created"));
        };
        pool.read(d, 0, &mut buf)
            .map_err(|e| format!("read {d}: {e}"))?;
        let from = flushed.and_then(|f| f.get(&d));
        for (s, values) in vol.values.iter().enumerate() {
            let got = &buf[s * SECTOR as usize..(s + 1) * SECTOR as usize];
            let Some(v) = decode(got, s as u64) else {
                return Err(format!(
                    "volume {d} sector {s}: content never written there"
                ));
            };
            let lo = from.map_or(0, |f| f[s] as usize);
            if !values[lo..].contains(&v) {
                let why = if values.contains(&v) {
                    "older than the last flush"
                } else {
                    "never written there"
                };
                return Err(format!("volume {d} sector {s}: version {v} ({why})"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_workload_survives_every_crash() {
        for seed in 1..=3 {
            let r = run_serve(seed, 250, 120, false);
            eprintln!(
                "seed {seed}: {} writes, {} ENOSPC, {} flushes, {} events, {} crash images",
                r.writes, r.enospc, r.flushes, r.log_events, r.crash_images
            );
            assert!(r.violations.is_empty(), "seed {seed}: {:#?}", r.violations);
            assert!(r.writes > 50 && r.crash_images == 120, "{r:?}");
        }
    }

    #[test]
    fn skipping_the_data_flush_is_caught() {
        let caught = (1..=3).any(|seed| {
            let v = run_serve(seed, 250, 120, true).violations;
            eprintln!(
                "mutation, seed {seed}: {} violations, first {:?}",
                v.len(),
                v.first()
            );
            !v.is_empty()
        });
        assert!(caught, "the mutation went unnoticed");
    }
}
