//! Crash-state enumeration and I/O-error injection: the proof that a commit
//! is atomic, run over a workload.
//!
//! * [`crash`]: a reference run is recorded; every state a power failure
//!   could leave (every write before the last completed flush, plus any
//!   subset of the later ones, in any order, torn or whole) must open and
//!   hold exactly the last committed transaction, or the one whose commit
//!   was in flight, and pass the full consistency walk.
//! * [`inject`]: for each k the k-th I/O fails, or the k-th flush fails, or
//!   writes are silently dropped from the k-th on; the failed call must
//!   report it, the handle must refuse to commit, nothing it writes may
//!   expose a broken transaction, and abort or reopening must recover.
//!
//! The seed-bug mutation (the pre-fix kernel commit) must make both report
//! violations: that is how we know the harness can fail.

pub mod btree_workload;
pub mod cache_workload;
pub mod crash;
pub mod era_workload;
pub mod image;
pub mod inject;
pub mod rng;
pub mod script;
pub mod serve_inject;
pub mod serve_workload;
pub mod thin_workload;
pub mod workload;

use script::Scripted;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use workload::Workload;

/// Progress reports: (phase, done, total). Called from worker threads.
pub type ProgressFn<'a> = dyn Fn(&str, u64, u64) + Sync + 'a;

/// Runs `work` on every item on `threads` threads (each takes the next item
/// left), reporting progress as `phase` every `every` items and at the end.
pub(crate) fn for_each_parallel<T: Sync>(
    items: &[T],
    threads: usize,
    phase: &str,
    every: u64,
    progress: &ProgressFn<'_>,
    work: impl Fn(&T) + Sync,
) {
    let total = items.len() as u64;
    progress(phase, 0, total);
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    work(item);
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d.is_multiple_of(every) || d == total {
                        progress(phase, d, total);
                    }
                }
            });
        }
    });
}

/// Violations found by a harness: all counted, the first few described.
pub struct Findings {
    count: AtomicU64,
    details: Mutex<Vec<String>>,
    keep: usize,
}

impl Findings {
    pub fn new(keep: usize) -> Findings {
        Findings {
            count: AtomicU64::new(0),
            details: Mutex::new(Vec::new()),
            keep,
        }
    }

    pub fn add(&self, what: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut d = self.details.lock().expect("findings lock");
        if d.len() < self.keep {
            d.push(what);
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn details(&self) -> Vec<String> {
        self.details.lock().expect("findings lock").clone()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    Btree,
    Thin,
    Cache,
    Era,
    /// A served pool, data and metadata ([`serve_workload`]).
    Serve,
}

impl FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "btree" => Ok(WorkloadKind::Btree),
            "thin" => Ok(WorkloadKind::Thin),
            "cache" => Ok(WorkloadKind::Cache),
            "era" => Ok(WorkloadKind::Era),
            "serve" => Ok(WorkloadKind::Serve),
            _ => Err(format!(
                "unknown workload '{s}' (btree, thin, cache, era or serve)"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub workload: WorkloadKind,
    pub seed: u64,
    /// Operations per transaction, on average (each has 1 to 2·ops − 1).
    pub ops: usize,
    pub transactions: usize,
    /// Crash states the enumeration checks, at most (about).
    pub max_states: usize,
    /// Switch the seed bug (the pre-fix commit) on.
    pub mutation: bool,
    pub crash_states: bool,
    pub io_errors: bool,
    /// Sampled crash images checked after each injected fault.
    pub post_fault_states: usize,
    pub threads: usize,
    /// Violations described in the report (all are counted).
    pub keep_details: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workload: WorkloadKind::Thin,
            seed: 1,
            ops: 12,
            transactions: 20,
            max_states: 50_000,
            mutation: false,
            crash_states: true,
            io_errors: true,
            post_fault_states: 6,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keep_details: 20,
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    /// Crash images checked: by the enumeration, and after injected faults.
    pub crash_states: u64,
    pub io_error_points: u64,
    pub violations: u64,
    /// Violations found by the crash-state enumeration (and the reference run).
    pub crash_violations: u64,
    /// Violations found by the I/O-error injection.
    pub io_violations: u64,
    pub details: Vec<String>,
    pub steps: usize,
    pub coverage: crash::Coverage,
    pub injection: inject::InjectSummary,
    pub reference_ios: pdata::io::IoCounts,
    /// The served-pool workload's I/O-error figures, per device and kind.
    pub serve: Option<serve_inject::ServeInjectReport>,
    pub elapsed: Duration,
}

impl Report {
    /// Adds another run's findings and counts to this one.
    fn absorb(&mut self, o: Report) {
        self.crash_states += o.crash_states;
        self.io_error_points += o.io_error_points;
        self.violations += o.violations;
        self.crash_violations += o.crash_violations;
        self.io_violations += o.io_violations;
        self.details.extend(o.details);
        self.steps += o.steps;
        let (c, oc) = (&mut self.coverage, o.coverage);
        c.states += oc.states;
        c.windows += oc.windows;
        c.exhaustive_windows += oc.exhaustive_windows;
        c.largest_window = c.largest_window.max(oc.largest_window);
        let (i, oi) = (&mut self.injection, o.injection);
        i.points += oi.points;
        i.crash_states += oi.crash_states;
        for m in 0..3 {
            i.points_by_mode[m] += oi.points_by_mode[m];
            i.violations_by_mode[m] += oi.violations_by_mode[m];
        }
        let (r, or) = (&mut self.reference_ios, o.reference_ios);
        r.ios += or.ios;
        r.reads += or.reads;
        r.writes += or.writes;
        r.flushes += or.flushes;
        self.elapsed += o.elapsed;
    }
}

/// Most I/O-error points the served-pool workload runs (sampled evenly
/// above): the default workload reaches about 400.
const SERVE_MAX_POINTS: u64 = 4000;

/// The served-pool workload: its own crash enumeration over two devices
/// (`ops · transactions` requests, at most 4000 crash images), then I/O
/// errors on either device ([`serve_inject`]). The self-test's mutations:
/// commits skip the data flush (crash states), and data write and flush
/// errors are ignored (I/O errors).
fn run_serve_workload(config: &Config, progress: &ProgressFn<'_>) -> Report {
    let start = Instant::now();
    let steps = config.ops * config.transactions;
    let r = serve_workload::run_serve(
        config.seed,
        steps,
        config.max_states.min(4000),
        config.mutation,
    );
    let n = r.violations.len() as u64;
    let mut report = Report {
        crash_states: r.crash_images as u64,
        crash_violations: n,
        details: r.violations.into_iter().take(config.keep_details).collect(),
        steps,
        ..Report::default()
    };
    if config.io_errors {
        let findings = Findings::new(config.keep_details);
        let s = serve_inject::inject_serve(
            config.seed,
            steps,
            SERVE_MAX_POINTS,
            config.post_fault_states,
            config.mutation,
            config.threads,
            &findings,
            progress,
        );
        // Failed I/O (writes and reads), failed flushes; none dropped.
        let modes = |x: [u64; 6]| [x[0] + x[2] + x[4] + x[5], x[1] + x[3], 0];
        report.injection = inject::InjectSummary {
            points: s.points.iter().sum(),
            crash_states: s.crash_images,
            points_by_mode: modes(s.points),
            violations_by_mode: modes(s.violations),
        };
        report.io_error_points = report.injection.points;
        report.crash_states += s.crash_images;
        report.io_violations = findings.count();
        report.details.extend(findings.details());
        let [m, d] = s.reference_ios;
        report.reference_ios = pdata::io::IoCounts {
            ios: m.ios + d.ios,
            reads: m.reads + d.reads,
            writes: m.writes + d.writes,
            flushes: m.flushes + d.flushes,
        };
        report.serve = Some(s);
    }
    report.violations = report.crash_violations + report.io_violations;
    report.elapsed = start.elapsed();
    report
}

/// Runs the harnesses the config asks for over its workload.
pub fn run(config: &Config, progress: &ProgressFn<'_>) -> Report {
    match config.workload {
        WorkloadKind::Thin => run_workload(
            &Scripted::new(
                thin_workload::Thin,
                config.seed,
                config.ops,
                config.transactions,
            ),
            config,
            progress,
        ),
        WorkloadKind::Btree => run_workload(
            &Scripted::new(
                btree_workload::Btree,
                config.seed,
                config.ops,
                config.transactions,
            ),
            config,
            progress,
        ),
        WorkloadKind::Cache => {
            // Both metadata versions, each with half the crash states.
            let half = Config {
                max_states: config.max_states.div_ceil(2),
                ..config.clone()
            };
            let mut report = Report::default();
            for version in [1, 2] {
                let w = Scripted::new(
                    cache_workload::Cache { version },
                    config.seed,
                    config.ops,
                    config.transactions,
                );
                report.absorb(run_workload(&w, &half, progress));
            }
            report
        }
        WorkloadKind::Serve => run_serve_workload(config, progress),
        WorkloadKind::Era => run_workload(
            &Scripted::new(
                era_workload::Era,
                config.seed,
                config.ops,
                config.transactions,
            ),
            config,
            progress,
        ),
    }
}

/// Runs the harnesses over any workload.
pub fn run_workload<W: Workload>(w: &W, config: &Config, progress: &ProgressFn<'_>) -> Report {
    let start = Instant::now();
    let crash_findings = Findings::new(config.keep_details);
    let io_findings = Findings::new(config.keep_details);
    let reference = crash::reference_run(w, config.mutation, &crash_findings);
    let mut report = Report {
        steps: w.nr_steps(),
        reference_ios: reference.counts,
        ..Report::default()
    };
    if config.crash_states {
        report.coverage = crash::enumerate(
            w,
            &reference,
            config.max_states,
            config.seed,
            config.threads,
            &crash_findings,
            progress,
        );
        report.crash_states += report.coverage.states;
    }
    if config.io_errors {
        report.injection = inject::inject_all(
            w,
            &reference,
            config.mutation,
            config.post_fault_states,
            config.seed,
            config.threads,
            &io_findings,
            progress,
        );
        report.io_error_points = report.injection.points;
        report.crash_states += report.injection.crash_states;
    }
    report.crash_violations = crash_findings.count();
    report.io_violations = io_findings.count();
    report.violations = report.crash_violations + report.io_violations;
    report.details = crash_findings.details();
    report.details.extend(io_findings.details());
    report.elapsed = start.elapsed();
    report
}
