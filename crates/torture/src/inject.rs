//! I/O errors at every point of a workload.
//!
//! For each k the script runs again with one fault:
//! * `fail-io`: the k-th I/O (read, write or flush) fails;
//! * `fail-flush`: the k-th flush fails;
//! * `drop-writes`: the k-th write and every later one are silently lost
//!   (the device died; the program cannot tell).
//!
//! After a failure the call that hit it must return an error and the handle
//! must refuse to commit. Whatever was written until then, and after (by
//! the refused commit), may only show the last committed transaction, or
//! the one whose commit failed: this is checked on crash images in which the
//! writes not yet flushed, and those a failed flush left in doubt, landed in
//! part. Then `abort` (even k) or dropping the handle and reopening (odd k)
//! must give what is on disk, and the handle must commit again.
//!
//! With dropped writes the disk is frozen at the k-th write: it must hold a
//! state a crash at that moment may show, and reopen and commit.

use crate::crash::{random_landing, Reference};
use crate::image::{BlockMap, ImageDevice, Log};
use crate::rng::Rng;
use crate::workload::{accepts, add_state, Session, Workload};
use crate::{for_each_parallel, Findings, ProgressFn};
use pdata::io::{
    BlockDevice, FlakeyDevice, Injection, IoKind, IoKinds, MemoryDevice, RecordingDevice, Rule,
    Trigger, WHOLE_BLOCK,
};
use rustc_hash::FxHashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    FailIo,
    FailFlush,
    DropWrites,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::FailIo => "fail-io",
            Mode::FailFlush => "fail-flush",
            Mode::DropWrites => "drop-writes",
        }
    }
}

#[derive(Default)]
struct PointResult {
    happened: bool,
    crash_states: u64,
}

struct Point<'a, W: Workload> {
    w: &'a W,
    mode: Mode,
    k: u64,
    mutation: bool,
    post_fault_states: usize,
    seed: u64,
    mem: Arc<MemoryDevice>,
    rec: Arc<RecordingDevice>,
    fl: Arc<FlakeyDevice>,
    /// Log length when the fault was injected.
    fault_pos: Arc<Mutex<Option<usize>>>,
    findings: &'a Findings,
    /// Violations per mode.
    by_mode: &'a [AtomicU64; 3],
}

impl<W: Workload> Point<'_, W> {
    fn name(&self) -> String {
        format!("{} k={}", self.mode.name(), self.k)
    }

    fn violation(&self, what: String) {
        self.findings.add(format!("{}: {what}", self.name()));
        self.by_mode[self.mode as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn dev(&self) -> Arc<dyn BlockDevice> {
        self.fl.clone()
    }

    fn disk(&self) -> Result<W::State, String> {
        self.w.read_disk(self.mem.clone())
    }

    fn injection(&self) -> Option<Injection> {
        self.fl.injected().first().cloned()
    }

    fn summaries(&self, set: &[W::State]) -> String {
        set.iter()
            .map(|s| self.w.summary(s))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Checks crash images of the log as it stands: the writes not yet
    /// flushed, and those in flight when a flush failed (`in_doubt_until`),
    /// may each have landed or not.
    fn check_crash_states(&self, in_doubt_until: Option<usize>, accepted: &[W::State]) -> u64 {
        let log = Log::new(self.rec.events(), self.w.device_blocks());
        let end = log.events.len();
        let durable_end = log.write_index(log.durable_prefix(end));
        let mut doubt: FxHashSet<usize> = FxHashSet::default();
        if let Some(p) = in_doubt_until {
            let from = log.write_index(log.durable_prefix(p));
            // Writes after the last flush are in doubt anyway.
            let to = log.write_index(p).min(durable_end);
            // A later durable write of the same block supersedes it.
            for i in from..to {
                let b = log.writes[i].block;
                if !log.writes[i + 1..durable_end].iter().any(|x| x.block == b) {
                    doubt.insert(i);
                }
            }
        }
        let mut durable = BlockMap::default();
        log.apply(&mut durable, 0..durable_end, &doubt);
        let durable = Arc::new(durable);
        let mut variable: Vec<usize> = doubt.iter().copied().collect();
        variable.sort_unstable();
        variable.extend(durable_end..log.writes.len());
        let n = variable.len();
        let mut sets: Vec<Vec<(usize, u8)>> = vec![
            Vec::new(),
            variable.iter().map(|&i| (i, WHOLE_BLOCK)).collect(),
        ];
        let mut rng = Rng::new(self.seed).fork(self.k * 4 + self.mode as u64);
        for _ in 0..self.post_fault_states {
            if n == 0 {
                break;
            }
            sets.push(random_landing(&mut rng, &variable));
        }
        if n == 0 {
            sets.truncate(1);
        }
        let nr_blocks = log.nr_blocks_at(end);
        for chosen in &sets {
            let dev: Arc<dyn BlockDevice> = Arc::new(ImageDevice::build(
                &log,
                &durable,
                nr_blocks,
                chosen.iter().copied(),
            ));
            let what = format!(
                "crash image after the fault ({} of {n} unflushed or in-doubt block writes landed)",
                chosen.len()
            );
            match self.w.read_disk(dev) {
                Ok(s) if accepts(accepted, &s) => {}
                Ok(s) => self.violation(format!(
                    "{what}: holds {}, expected {}",
                    self.w.summary(&s),
                    self.summaries(accepted)
                )),
                Err(e) => self.violation(format!("{what}: {e}")),
            }
        }
        sets.len() as u64
    }

    /// After recovery (abort or reopen): the disk holds an accepted state,
    /// the handle sees it, and can commit again.
    fn recover(&self, session: Option<W::Session>, accepted: &[W::State]) {
        self.fl.clear_rules();
        let abort_path = self.k.is_multiple_of(2) && session.is_some();
        let how = if abort_path { "abort" } else { "reopening" };
        if let Some(mut s) = session.filter(|_| abort_path) {
            if let Err(e) = s.abort() {
                self.violation(format!("abort after the fault failed: {e}"));
                return;
            }
            if let Some(disk) = self.disk_accepted(how, accepted) {
                self.check_handle(s, disk, how);
            }
            return;
        }
        // Any handle has been dropped by now.
        let Some(disk) = self.disk_accepted(how, accepted) else {
            return;
        };
        let reopened = if disk == self.w.unformatted() {
            self.w.format(self.dev(), self.mutation)
        } else {
            self.w.open(self.dev(), self.mutation, disk.clone())
        };
        let s = match reopened {
            Ok(s) => s,
            Err(e) => {
                self.violation(format!("reopening after the fault failed: {e}"));
                return;
            }
        };
        let disk = if disk == self.w.unformatted() {
            match self.disk() {
                Ok(d) => d,
                Err(e) => {
                    self.violation(format!("formatting again after the fault: {e}"));
                    return;
                }
            }
        } else {
            disk
        };
        self.check_handle(s, disk, how);
    }

    /// The disk's state, if it is one of `accepted` (else a violation).
    fn disk_accepted(&self, how: &str, accepted: &[W::State]) -> Option<W::State> {
        match self.disk() {
            Ok(d) if accepts(accepted, &d) => Some(d),
            Ok(d) => {
                self.violation(format!(
                    "at {how} the disk holds {}, expected {}",
                    self.w.summary(&d),
                    self.summaries(accepted)
                ));
                None
            }
            Err(e) => {
                self.violation(format!("at {how} the disk: {e}"));
                None
            }
        }
    }

    /// The handle sees `disk`, and commits one more transaction.
    fn check_handle(&self, mut session: W::Session, disk: W::State, how: &str) {
        match session.handle_state() {
            Ok(h) if h == disk => {}
            Ok(h) => self.violation(format!(
                "after {how} the handle sees {}, the disk holds {}",
                self.w.summary(&h),
                self.w.summary(&disk)
            )),
            Err(e) => {
                self.violation(format!("after {how} the handle cannot be read: {e}"));
                return;
            }
        }
        session.adopt(disk);
        match session.extra() {
            Ok(want) => match self.disk() {
                Ok(d) if d == want => {}
                Ok(d) => self.violation(format!(
                    "commit after {how}: the disk holds {}, the model {}",
                    self.w.summary(&d),
                    self.w.summary(&want)
                )),
                Err(e) => self.violation(format!("commit after {how}: {e}")),
            },
            Err(e) => self.violation(format!("the handle cannot commit after {how}: {e}")),
        }
    }

    fn run(&self, reference: &Reference<W::State>) -> PointResult {
        let w = self.w;
        let mut result = PointResult::default();
        let dropping = self.mode == Mode::DropWrites;
        let mut accepted = vec![w.unformatted()];
        let mut in_flight = accepted.clone();
        add_state(&mut in_flight, &w.formatted());
        let mut session = None;
        let mut failed = false;
        let mut failed_step = 0;
        match w.format(self.dev(), self.mutation) {
            Ok(s) => {
                accepted = vec![s.committed()];
                session = Some(s);
            }
            Err(e) if self.injection().is_none() => {
                self.violation(format!("format failed with no fault injected: {e}"));
                return result;
            }
            Err(_) => {
                failed = true;
                accepted = in_flight;
            }
        }
        if let (Some(inj), Some(_), false) = (self.injection(), &session, dropping) {
            self.violation(format!("format succeeded though {inj:?} failed"));
            return result;
        }
        if let Some(s) = session.as_mut().filter(|_| !failed) {
            for i in 0..w.nr_steps() {
                let mut acc = vec![s.committed()];
                if let Some(t) = s.commit_target(i) {
                    add_state(&mut acc, &t);
                }
                let before = self.fl.nr_injected();
                let r = s.step(i);
                let hit = self.fl.nr_injected() > before;
                match r {
                    Ok(()) if hit && !dropping => {
                        self.violation(format!(
                            "{} succeeded though {:?} failed",
                            w.describe_step(i),
                            self.injection().expect("injected")
                        ));
                        return result;
                    }
                    Ok(()) => {}
                    Err(e) if self.injection().is_none() => {
                        self.violation(format!(
                            "{} failed with no fault injected: {e}",
                            w.describe_step(i)
                        ));
                        return result;
                    }
                    Err(_) if dropping => break,
                    Err(_) => {
                        failed = true;
                        failed_step = i;
                        accepted = acc;
                        break;
                    }
                }
            }
        }
        let Some(inj) = self.injection() else {
            // k is past the run's I/O: not a point.
            return result;
        };
        result.happened = true;
        if dropping {
            // The disk froze at the k-th write.
            let pos = reference.write_positions[self.k as usize];
            if *self.fault_pos.lock().expect("lock") != Some(pos) {
                self.violation(format!(
                    "the run diverged from the reference run before write {}",
                    self.k
                ));
            }
            let accepted = reference.timeline.accepted(pos, pos);
            result.crash_states += 1;
            match self.disk() {
                Ok(s) if accepts(&accepted, &s) => {}
                Ok(s) => self.violation(format!(
                    "the disk frozen at write {} holds {}, expected {}",
                    self.k,
                    w.summary(&s),
                    self.summaries(&accepted)
                )),
                Err(e) => self.violation(format!("the disk frozen at write {}: {e}", self.k)),
            }
            drop(session);
            self.recover(None, &accepted);
            return result;
        }
        if !failed {
            self.violation(format!("{inj:?} was injected but no call failed"));
            return result;
        }
        if inj.kind != IoKind::Read {
            if let Some(s) = session.as_mut() {
                // The handle is poisoned: the next operations and a commit
                // must all be refused.
                let next = (failed_step + 1..w.nr_steps())
                    .filter(|&j| !w.step_recovers(j))
                    .take(3);
                for j in next {
                    if s.step(j).is_ok() {
                        self.violation(format!(
                            "{} succeeded after {inj:?} failed",
                            w.describe_step(j)
                        ));
                    }
                }
                if s.probe_commit() {
                    self.violation(format!("a commit succeeded after {inj:?} failed"));
                }
            }
        }
        let doubt = if inj.kind == IoKind::Flush {
            *self.fault_pos.lock().expect("lock")
        } else {
            None
        };
        result.crash_states += self.check_crash_states(doubt, &accepted);
        self.recover(session, &accepted);
        result
    }
}

/// What the injection covered and found.
#[derive(Debug, Default, Clone, Copy)]
pub struct InjectSummary {
    /// Fault points that happened (the k-th I/O existed in the run).
    pub points: u64,
    /// Crash images checked after faults.
    pub crash_states: u64,
    /// Points and violations per mode: fail-io, fail-flush, drop-writes.
    pub points_by_mode: [u64; 3],
    pub violations_by_mode: [u64; 3],
}

/// Runs every fault point.
#[allow(clippy::too_many_arguments)]
pub fn inject_all<W: Workload>(
    w: &W,
    reference: &Reference<W::State>,
    mutation: bool,
    post_fault_states: usize,
    seed: u64,
    threads: usize,
    findings: &Findings,
    progress: &ProgressFn<'_>,
) -> InjectSummary {
    let c = reference.counts;
    let by_mode: [AtomicU64; 3] = Default::default();
    let points_by_mode: [AtomicU64; 3] = Default::default();
    let mut points: Vec<(Mode, u64)> = Vec::new();
    points.extend((0..c.ios).map(|k| (Mode::FailIo, k)));
    points.extend((0..c.flushes).map(|k| (Mode::FailFlush, k)));
    points.extend((0..c.writes).map(|k| (Mode::DropWrites, k)));
    let happened = AtomicU64::new(0);
    let states = AtomicU64::new(0);
    for_each_parallel(
        &points,
        threads,
        "io-error points",
        8,
        progress,
        |&(mode, k)| {
            let mem = Arc::new(MemoryDevice::new(w.device_blocks()));
            let rec = Arc::new(RecordingDevice::new(mem.clone()));
            let fl = Arc::new(FlakeyDevice::new(rec.clone()));
            fl.add_rule(match mode {
                Mode::FailIo => Rule::fail(IoKinds::ALL, Trigger::Nth(k)),
                Mode::FailFlush => Rule::fail(IoKinds::FLUSH, Trigger::Nth(k)),
                Mode::DropWrites => Rule::drop_writes(Trigger::From(k)),
            });
            let fault_pos = Arc::new(Mutex::new(None));
            let (fp, r2) = (fault_pos.clone(), rec.clone());
            fl.set_hook(Some(Arc::new(move |_: &Injection| {
                let mut p = fp.lock().expect("lock");
                if p.is_none() {
                    *p = Some(r2.len());
                }
            })));
            let point = Point {
                w,
                mode,
                k,
                mutation,
                post_fault_states,
                seed,
                mem,
                rec,
                fl,
                fault_pos,
                findings,
                by_mode: &by_mode,
            };
            let r = point.run(reference);
            if r.happened {
                happened.fetch_add(1, Ordering::Relaxed);
                points_by_mode[mode as usize].fetch_add(1, Ordering::Relaxed);
            }
            states.fetch_add(r.crash_states, Ordering::Relaxed);
        },
    );
    InjectSummary {
        points: happened.into_inner(),
        crash_states: states.into_inner(),
        points_by_mode: points_by_mode.map(|x| x.into_inner()),
        violations_by_mode: by_mode.map(|x| x.into_inner()),
    }
}
