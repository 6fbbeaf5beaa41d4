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
//! Each written sector is stamped with a unique version and its own
//! address, so a read tells exactly which write it came from.

use crate::rng::Rng;
use pdata::io::{BlockDevice, Event, MemoryDevice, RecordingDevice, WHOLE_BLOCK};
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

/// Every value each sector of a volume has held, oldest first.
type History = Vec<Vec<u64>>;

/// What the workload did, for the crash checks.
#[derive(Default)]
struct Model {
    vols: BTreeMap<u64, History>,
    ever_deleted: BTreeSet<u64>,
    /// At each completed flush (log length): per volume, per sector, the
    /// index in its history that is durable from then on.
    flushes: Vec<(usize, BTreeMap<u64, Vec<u32>>)>,
}

impl Model {
    fn flushed(&mut self, pos: usize) {
        let idx = self
            .vols
            .iter()
            .map(|(&d, h)| (d, h.iter().map(|v| (v.len() - 1) as u32).collect()))
            .collect();
        self.flushes.push((pos, idx));
    }

    fn set(&mut self, dev: u64, first: u64, values: impl Iterator<Item = u64>) {
        let h = self.vols.get_mut(&dev).expect("a live volume");
        for (i, v) in values.enumerate() {
            h[(first + i as u64) as usize].push(v);
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

/// Runs the workload from `seed` (`steps` requests), then checks
/// `crashes` crash images; with `mutation`, commits skip the data flush.
pub fn run_serve(seed: u64, steps: usize, crashes: usize, mutation: bool) -> ServeReport {
    let mut rep = ServeReport {
        steps,
        ..Default::default()
    };
    let meta0 = Arc::new(MemoryDevice::new(META_BLOCKS));
    {
        let mut md =
            ThinMetadata::format(meta0.clone(), BLOCK_SECTORS as u32, NR_DATA_BLOCKS, false)
                .expect("format");
        md.create_thin(0).expect("create_thin");
        md.create_thin(1).expect("create_thin");
        md.commit().expect("commit");
    }
    let meta_image = meta0.image();
    let data_image = vec![0u8; (DATA_DEV_BLOCKS * BLOCK_SIZE as u64) as usize];
    // Both devices on one clock: a crash position is a time on it.
    let clock = Arc::new(AtomicU64::new(0));
    let recorded = |image: &Vec<u8>| {
        Arc::new(RecordingDevice::with_clock(
            Arc::new(MemoryDevice::from_image(image.clone())),
            clock.clone(),
        ))
    };
    let (meta_rec, data_rec) = (recorded(&meta_image), recorded(&data_image));
    let now = || clock.load(Ordering::SeqCst) as usize;
    let pool = Pool::open(meta_rec.clone(), data_rec.clone(), true).expect("open the pool");
    if mutation {
        pool.enable_mutation();
    }
    let mut m = Model::default();
    for d in [0, 1] {
        m.vols.insert(d, vec![vec![0]; VOL_SECTORS as usize]);
    }
    m.flushed(0);
    let mut rng = Rng::new(seed);
    let mut version = 0u64;
    let mut next_id = 2;
    for step in 0..steps {
        let alive: Vec<u64> = m.vols.keys().copied().collect();
        let dev = alive[rng.below(alive.len() as u64) as usize];
        let b = rng.below(VOL_BLOCKS);
        let r = match rng.weighted(&[45, 8, 6, 12, 4, 3, 2]) {
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
                        version += 1;
                        version
                    })
                    .collect();
                let mut buf = Vec::with_capacity((n * SECTOR) as usize);
                for (i, &v) in versions.iter().enumerate() {
                    buf.extend_from_slice(&stamp(v, first + i as u64));
                }
                let fua = rng.chance(0.1);
                match pool.write(dev, first * SECTOR, &buf, fua) {
                    Ok(()) => {
                        rep.writes += 1;
                        m.set(dev, first, versions.into_iter());
                        if fua {
                            m.flushed(now());
                        }
                        Ok(())
                    }
                    Err(PoolError::NoSpace) => {
                        rep.enospc += 1;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            1 => {
                let k = rng.range(1, (VOL_BLOCKS - b).min(4));
                pool.discard(dev, b * BLOCK_BYTES, k * BLOCK_BYTES)
                    .map(|()| {
                        m.set(
                            dev,
                            b * BLOCK_SECTORS,
                            std::iter::repeat_n(0, (k * BLOCK_SECTORS) as usize),
                        );
                    })
            }
            2 => {
                let s = rng.below(BLOCK_SECTORS);
                let n = rng.range(1, BLOCK_SECTORS - s);
                let first = b * BLOCK_SECTORS + s;
                match pool.write_zeroes(dev, first * SECTOR, n * SECTOR, rng.chance(0.5), false) {
                    Ok(()) => {
                        m.set(dev, first, std::iter::repeat_n(0, n as usize));
                        Ok(())
                    }
                    Err(PoolError::NoSpace) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            3 => pool.flush().map(|()| {
                rep.flushes += 1;
                m.flushed(now());
            }),
            4 if m.vols.len() < 5 => {
                let id = next_id;
                next_id += 1;
                pool.message(&Message::CreateSnap {
                    dev: id,
                    origin: dev,
                })
                .map(|()| {
                    let h = m.vols[&dev]
                        .iter()
                        .map(|v| vec![*v.last().expect("a value")])
                        .collect();
                    m.vols.insert(id, h);
                    m.flushed(now());
                })
            }
            5 if dev >= 2 => pool.message(&Message::Delete(dev)).map(|()| {
                m.vols.remove(&dev);
                m.ever_deleted.insert(dev);
                m.flushed(now());
            }),
            6 if m.vols.len() < 5 => {
                let id = next_id;
                next_id += 1;
                pool.message(&Message::CreateThin(id)).map(|()| {
                    m.vols.insert(id, vec![vec![0]; VOL_SECTORS as usize]);
                    m.flushed(now());
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            rep.violations.push(format!("step {step}: {e}"));
            return rep;
        }
    }
    let logs = [&meta_rec, &data_rec].map(|r| (r.ticks(), r.take()));
    let nr_events = now();
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
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&p) = points.get(i) else { break };
                let mut r = Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let meta = crash_image(&meta_image, &logs[0], p, &mut r);
                let data = crash_image(&data_image, &logs[1], p, &mut r);
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
fn check_image(m: &Model, p: usize, meta: Vec<u8>, data: Vec<u8>) -> Result<(), String> {
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
        let Some(hist) = m.vols.get(&d) else {
            if m.ever_deleted.contains(&d) {
                continue;
            }
            return Err(format!("volume {d} was never created"));
        };
        pool.read(d, 0, &mut buf)
            .map_err(|e| format!("read {d}: {e}"))?;
        let from = flushed.and_then(|f| f.get(&d));
        for (s, values) in hist.iter().enumerate() {
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
