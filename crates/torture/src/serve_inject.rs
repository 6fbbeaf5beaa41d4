//! I/O errors under a served pool: for each k (sampled evenly when there
//! are too many), the serve workload ([`crate::serve_workload`]) runs again
//! with the k-th read, write or flush of the metadata or the data device
//! failing (for odd k a failed write lands all the same, as on a device
//! that wrote it and then reported an error). The pool must do what
//! dm-thin does:
//! * the request that met the error fails (an error is never swallowed);
//! * a failed data write or read fails only its request: dm-thin errors
//!   the bio and keeps its mode, and nothing is mapped to a block whose
//!   fill failed. The workload goes on; the failed write's content may
//!   show, never must, and later FLUSHes succeed (they promise what was
//!   acknowledged);
//! * a failed metadata read fails its request, and the pool too when it
//!   could not finish a change (either is accepted; the pool must then act
//!   on its choice);
//! * a failed metadata write or flush, or data flush, fails the pool
//!   (dm-thin's `metadata_operation_failed`: the transaction is aborted and
//!   no commit, so no FLUSH, succeeds again). Writes, FLUSHes and messages
//!   are refused (stricter than dm-thin's read-only mode, which still
//!   overwrites unshared blocks in place that no FLUSH can make durable);
//!   reads go on from the last commit;
//! * from the fault on, crash images and the devices as they stand pass the
//!   crash enumeration's checks (everything acknowledged before the last
//!   successful FLUSH reads back; nothing never written to a sector does),
//!   and the pool reopens writable and commits.
//!
//! Self-test: a data device that reports its failed writes and flushes as
//! done stands under the pool, which is then a pool that ignores a data
//! flush failure or maps (and commits) a block whose write failed.

use crate::rng::Rng;
use crate::serve_workload::{check_image, check_volumes, Driver, Rig};
use crate::{for_each_parallel, Findings, ProgressFn};
use pdata::io::{BlockDevice, FlakeyDevice, IoKinds, MemoryDevice, Rule, Trigger};
use pdata::Block;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thin::pool::{Message, Pool};

/// Which I/O fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    MetaWrite,
    MetaFlush,
    DataWrite,
    DataFlush,
    MetaRead,
    DataRead,
}

/// What the pool must do after the request that met the fault failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    GoOn,
    Fail,
    /// Either (a metadata read error: dm-thin fails a lookup's request
    /// only, but the pool when a change could not finish).
    Either,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::MetaWrite,
        Target::MetaFlush,
        Target::DataWrite,
        Target::DataFlush,
        Target::MetaRead,
        Target::DataRead,
    ];

    /// The rig's device: 0 metadata, 1 data.
    fn dev(self) -> usize {
        match self {
            Target::MetaWrite | Target::MetaFlush | Target::MetaRead => 0,
            _ => 1,
        }
    }

    fn kinds(self) -> IoKinds {
        match self {
            Target::MetaWrite | Target::DataWrite => IoKinds::WRITE,
            Target::MetaRead | Target::DataRead => IoKinds::READ,
            _ => IoKinds::FLUSH,
        }
    }

    fn after(self) -> After {
        match self {
            Target::DataWrite | Target::DataRead => After::GoOn,
            Target::MetaRead => After::Either,
            _ => After::Fail,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::MetaWrite => "metadata write",
            Target::MetaFlush => "metadata flush",
            Target::DataWrite => "data write",
            Target::DataFlush => "data flush",
            Target::MetaRead => "metadata read",
            Target::DataRead => "data read",
        }
    }
}

/// What the injection covered and found, per target (in `Target::ALL`'s
/// order).
#[derive(Debug, Default, Clone, Copy)]
pub struct ServeInjectReport {
    /// I/Os of each target in the reference run.
    pub reachable: [u64; 6],
    /// Fault points run (all reachable ones, or an even sample).
    pub points: [u64; 6],
    pub violations: [u64; 6],
    /// Of the violations, those found by reading volumes back (crash
    /// images, the devices as they stand, the failed pool's reads).
    pub readback_violations: u64,
    /// Points where reading back found a violation, per target.
    pub caught_by_reading: [u64; 6],
    pub crash_images: u64,
    /// The reference run's I/O on the metadata and the data device.
    pub reference_ios: [pdata::io::IoCounts; 2],
}

/// The self-test's data device: failed writes and flushes look done.
struct Swallow(Arc<dyn BlockDevice>);

impl BlockDevice for Swallow {
    fn nr_blocks(&self) -> u64 {
        self.0.nr_blocks()
    }

    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        self.0.read_blocks(first, bufs)
    }

    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()> {
        let _ = self.0.write_blocks(first, bufs);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// A device whose writes land and then get the answer `judge` (a fault
/// injector over a [`Sink`]) gives them.
struct Landing {
    inner: Arc<dyn BlockDevice>,
    judge: Arc<FlakeyDevice>,
}

impl BlockDevice for Landing {
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }

    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        self.inner.read_blocks(first, bufs)
    }

    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()> {
        self.inner.write_blocks(first, bufs)?;
        self.judge.write_blocks(first, bufs)
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A device that keeps nothing: reads zeros, takes every write.
struct Sink(u64);

impl BlockDevice for Sink {
    fn nr_blocks(&self) -> u64 {
        self.0
    }

    fn read_blocks(&self, _: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        for b in bufs {
            b.fill(0);
        }
        Ok(())
    }

    fn write_blocks(&self, _: u64, _: &[&Block]) -> io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The points to run: every k of each target, or `max_points` in all
/// spread evenly over each target's range.
fn sample(reachable: [u64; 6], max_points: u64) -> Vec<(Target, u64)> {
    let total: u64 = reachable.iter().sum();
    let mut out = Vec::new();
    for (t, &n) in Target::ALL.iter().zip(&reachable) {
        let m = if total <= max_points {
            n
        } else {
            (n * max_points / total).clamp(n.min(1), n)
        };
        out.extend((0..m).map(|i| (*t, i * n / m)));
    }
    out
}

/// Runs every point (see the module's comment); `swallow` is the self-test.
#[allow(clippy::too_many_arguments)]
pub fn inject_serve(
    seed: u64,
    steps: usize,
    max_points: u64,
    images_per_point: usize,
    swallow: bool,
    threads: usize,
    findings: &Findings,
    progress: &ProgressFn<'_>,
) -> ServeInjectReport {
    let mut rep = ServeInjectReport::default();
    // The reference run counts each device's reads, writes and flushes.
    let rig = Rig::new();
    let pool = match rig.open(rig.devices()) {
        Ok(p) => p,
        Err(e) => {
            findings.add(format!("reference run, opening the pool: {e}"));
            rep.violations[0] += 1;
            return rep;
        }
    };
    let mut d = Driver::new(seed);
    for step in 0..steps {
        if let Err(e) = d.step(&pool, &|| rig.now()) {
            findings.add(format!("reference run, step {step}: {e}"));
            rep.violations[0] += 1;
            return rep;
        }
    }
    drop(pool);
    let counts = rig.fl.clone().map(|f| f.counts());
    rep.reference_ios = counts;
    rep.reachable = Target::ALL.map(|t| {
        let c = counts[t.dev()];
        match t.kinds() {
            IoKinds::WRITE => c.writes,
            IoKinds::READ => c.reads,
            _ => c.flushes,
        }
    });
    let points = sample(rep.reachable, max_points);
    let by_target: [AtomicU64; 6] = Default::default();
    let ran: [AtomicU64; 6] = Default::default();
    let readback = AtomicU64::new(0);
    let caught: [AtomicU64; 6] = Default::default();
    let images = AtomicU64::new(0);
    for_each_parallel(
        &points,
        threads,
        "io-error points",
        8,
        progress,
        |&(t, k)| {
            let i = Target::ALL.iter().position(|x| *x == t).unwrap_or(0);
            let fault = format!("{} #{k}", t.name());
            let read_found = std::sync::atomic::AtomicBool::new(false);
            let viol = |found_by_reading: bool, what: String| {
                findings.add(format!("{fault}: {what}"));
                by_target[i].fetch_add(1, Ordering::Relaxed);
                if found_by_reading {
                    readback.fetch_add(1, Ordering::Relaxed);
                    read_found.store(true, Ordering::Relaxed);
                }
            };
            let p = Point {
                seed,
                steps,
                target: t,
                k,
                images_per_point,
                swallow,
            };
            if let Some(n) = p.run(&viol) {
                ran[i].fetch_add(1, Ordering::Relaxed);
                images.fetch_add(n, Ordering::Relaxed);
            }
            if read_found.into_inner() {
                caught[i].fetch_add(1, Ordering::Relaxed);
            }
        },
    );
    rep.points = ran.map(|x| x.into_inner());
    rep.violations = by_target.map(|x| x.into_inner());
    rep.readback_violations = readback.into_inner();
    rep.caught_by_reading = caught.map(|x| x.into_inner());
    rep.crash_images = images.into_inner();
    rep
}

/// One fault point.
struct Point {
    seed: u64,
    steps: usize,
    target: Target,
    k: u64,
    images_per_point: usize,
    swallow: bool,
}

impl Point {
    /// Runs the workload with the fault and checks what follows; reports
    /// violations through `viol` (found by reading back?, what) and returns
    /// the crash images checked, or None when the run never reached the
    /// k-th I/O.
    fn run(&self, viol: &dyn Fn(bool, String)) -> Option<u64> {
        let rig = Rig::new();
        let dev = self.target.dev();
        let mut devs = rig.devices();
        // For odd k a failed write lands all the same (the device wrote it,
        // then reported an error): whatever a failed request did may show.
        let fl = if self.target.kinds() == IoKinds::WRITE && self.k % 2 == 1 {
            let judge = Arc::new(FlakeyDevice::new(Arc::new(Sink(devs[dev].nr_blocks()))));
            devs[dev] = Arc::new(Landing {
                inner: devs[dev].clone(),
                judge: judge.clone(),
            });
            judge
        } else {
            rig.fl[dev].clone()
        };
        fl.add_rule(Rule::fail(self.target.kinds(), Trigger::Nth(self.k)));
        let fault_tick = Arc::new(Mutex::new(None));
        let (ft, clock) = (fault_tick.clone(), rig.clock.clone());
        fl.set_hook(Some(Arc::new(move |_: &pdata::io::Injection| {
            let mut t = ft.lock().unwrap_or_else(|p| p.into_inner());
            t.get_or_insert(clock.load(Ordering::SeqCst) as usize);
        })));
        if self.swallow {
            devs[1] = Arc::new(Swallow(devs[1].clone()));
        }
        let pool = match rig.open(devs) {
            Ok(p) => p,
            Err(e) if fl.nr_injected() == 0 => {
                viol(false, format!("opening the pool: {e}"));
                return Some(0);
            }
            // Reading the metadata failed: opening must fail, and only it.
            Err(_) => {
                let [meta, data] = rig.images();
                if let Err(e) = reopen_and_commit(meta, data) {
                    viol(false, format!("opening again: {e}"));
                }
                return Some(0);
            }
        };
        let mut d = Driver::new(self.seed);
        let now = || rig.now();
        let mut failed_at = None;
        // Whether the pool must (or chose to) go on after the fault.
        let mut goes_on = self.target.after() == After::GoOn;
        for step in 0..self.steps {
            let before = fl.nr_injected();
            let r = d.step(&pool, &now);
            let hit = fl.nr_injected() > before;
            match r {
                Ok(()) if hit => viol(false, format!("step {step} succeeded though it failed")),
                Ok(()) => {}
                Err(_) if hit && failed_at.is_none() => {
                    failed_at = Some(step);
                    if self.target.after() == After::Either {
                        goes_on = pool.flush().is_ok();
                        if goes_on {
                            d.m.flushed(now());
                        }
                    }
                    if !goes_on {
                        break;
                    }
                }
                Err(e) => {
                    let when = if failed_at.is_some() {
                        "after"
                    } else {
                        "before"
                    };
                    viol(false, format!("step {step} failed {when} the fault: {e}"));
                    break;
                }
            }
        }
        let at = (*fault_tick.lock().unwrap_or_else(|p| p.into_inner()))?;
        if failed_at.is_some() {
            self.after_failure(&pool, &mut d, goes_on, &now, viol);
        }
        drop(pool);
        let mut n = 0;
        let logs = rig.logs();
        let end = rig.now();
        let mut rng = Rng::new(self.seed).fork(self.k * 8 + self.target as u64);
        // Where an error ignored would show: when the pool said a FLUSH
        // was done, and just after the devices' flushes, soonest after the
        // fault first; then anywhere after it.
        let mut promised: Vec<usize> = logs
            .iter()
            .flat_map(|(ticks, events)| ticks.iter().zip(events))
            .filter(|(_, e)| matches!(e, pdata::io::Event::Flush))
            .map(|(&t, _)| t as usize + 1)
            .chain(d.m.flush_times())
            .filter(|&t| t > at)
            .collect();
        promised.sort_unstable();
        promised.dedup();
        promised.truncate(4);
        for j in 0..self.images_per_point {
            let p = match j {
                0 => at,
                1 => end,
                _ if j % 2 == 1 && !promised.is_empty() => {
                    promised[rng.below(promised.len() as u64) as usize]
                }
                _ => rng.range(at as u64, end as u64 + 1) as usize,
            };
            let [meta, data] = rig.crash_images(&logs, p, &mut rng);
            n += 1;
            if let Err(e) = check_image(&d.m, p, meta, data) {
                viol(
                    true,
                    format!("crash image at event {p} (fault at {at}): {e}"),
                );
            }
        }
        let [meta, data] = rig.images();
        if let Err(e) = check_image(&d.m, end, meta.clone(), data.clone()) {
            viol(true, format!("the devices as they stand: {e}"));
        } else if let Err(e) = reopen_and_commit(meta, data) {
            viol(false, format!("reopening after the fault: {e}"));
        }
        Some(n)
    }

    /// After the request that met the fault failed: a pool that goes on
    /// (after a data write or read error) takes a FLUSH, and every volume
    /// reads back as the model says; a failed one (any other fault) refuses
    /// writes, FLUSHes and messages, and reads as of the last commit.
    fn after_failure(
        &self,
        pool: &Pool,
        d: &mut Driver,
        goes_on: bool,
        now: &dyn Fn() -> usize,
        viol: &dyn Fn(bool, String),
    ) {
        if goes_on {
            match pool.flush() {
                Ok(()) => d.m.flushed(now()),
                Err(e) => viol(false, format!("a FLUSH after the fault failed: {e}")),
            }
        } else {
            if pool.write(0, 0, &[0u8; 512], false).is_ok() {
                viol(false, "a write succeeded on the failed pool".into());
            }
            if pool.flush().is_ok() {
                viol(false, "a FLUSH succeeded on the failed pool".into());
            }
            if pool.message(&Message::CreateThin(1 << 20)).is_ok() {
                viol(false, "create_thin succeeded on the failed pool".into());
            }
        }
        if let Err(e) = check_volumes(pool, &d.m, now()) {
            viol(true, format!("reading the pool after the fault: {e}"));
        }
    }
}

/// The pool on these images opens writable, takes a write (or is out of
/// space for it) and a message, and commits.
fn reopen_and_commit(meta: Vec<u8>, data: Vec<u8>) -> Result<(), String> {
    let meta: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(meta));
    let data: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(data));
    let pool = Pool::open(meta, data, true).map_err(|e| format!("open: {e}"))?;
    let block = vec![0x5a; pool.block_bytes() as usize];
    let written = match pool.write(0, 0, &block, false) {
        Ok(()) => true,
        Err(thin::pool::PoolError::NoSpace) => false,
        Err(e) => return Err(format!("write: {e}")),
    };
    pool.message(&Message::CreateThin(1 << 20))
        .map_err(|e| format!("create_thin: {e}"))?;
    pool.flush().map_err(|e| format!("flush: {e}"))?;
    let mut back = vec![0; block.len()];
    pool.read(0, 0, &mut back)
        .map_err(|e| format!("read: {e}"))?;
    if written && back != block {
        return Err("the block written does not read back".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        seed: u64,
        steps: usize,
        max_points: u64,
        swallow: bool,
    ) -> (ServeInjectReport, Vec<String>) {
        let f = Findings::new(10);
        let r = inject_serve(seed, steps, max_points, 4, swallow, 2, &f, &|_, _, _| {});
        eprintln!(
            "seed {seed}{}: reachable {:?}, points {:?}, violations {:?} ({} by reading back, at {:?} points), {} crash images; first {:?}",
            if swallow { " (self-test)" } else { "" },
            r.reachable,
            r.points,
            r.violations,
            r.readback_violations,
            r.caught_by_reading,
            r.crash_images,
            f.details().first()
        );
        (r, f.details())
    }

    #[test]
    fn sampling_is_even_and_bounded() {
        let s = sample([100, 10, 50, 40, 0, 0], 40);
        assert!(s.len() <= 40 && s.len() >= 36, "{}", s.len());
        assert!(s.contains(&(Target::MetaFlush, 0)));
        assert_eq!(sample([3, 1, 0, 2, 0, 1], 10).len(), 7);
    }

    #[test]
    fn served_pool_survives_io_errors() {
        let (r, d) = run(1, 120, 160, false);
        assert!(d.is_empty(), "{d:#?}");
        assert!(r.points.iter().all(|&n| n > 0), "{r:?}");
    }

    #[test]
    fn ignoring_data_errors_is_caught() {
        let (r, _) = run(1, 120, 160, true);
        // Both broken answers show in what reads back, not only in the
        // request that should have failed.
        assert!(
            r.caught_by_reading[2] > 0 && r.caught_by_reading[3] > 0,
            "{r:?}"
        );
    }
}
