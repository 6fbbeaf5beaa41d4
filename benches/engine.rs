//! Engine benchmarks: the thin metadata engine (`pdt`) against redb on the
//! same u64 -> u64 work, with the same transaction sizes and durability.
//!
//! Workloads (N = 1,000,000 unless `BENCH_N` says otherwise):
//!
//! * `insert_1m/txn_{1000,100000}[_random]/{pdt,redb}`: N mappings into one
//!   thin device (pdt: `provision(0, vblock)`, i.e. data-block allocation +
//!   insert; redb: `insert(vblock, counter)`), in transactions of 1,000 or
//!   100,000, every commit durable (pdt `commit`; redb `Durability::Immediate`).
//!   Keys in order 0..N, or (`_random`) a random permutation of 0..N. Each
//!   iteration starts from a freshly formatted file; formatting, creating the
//!   thin device / the table and deleting the file are not timed.
//!   `txn_1000_random` is slow (~8 s a run), so criterion runs it only with
//!   `BENCH_FULL=1` or a filter containing "random"; the summary always does.
//! * `lookup_1m_random/{pdt,redb}`: N uniformly random lookups (all hits) on N
//!   committed mappings, after a close and reopen. The first pass after the
//!   reopen is cold for the engine's own cache (the OS page cache is warm);
//!   criterion iterations after the first are warm. The summary reports both.
//! * `commit_latency/*`: a small transaction (10 provisions / inserts at
//!   random vblocks, on a store holding 100,000 mappings) then a durable
//!   commit, against one 4 KiB pwrite + fdatasync (and a bare fdatasync) on
//!   the same file. pdt's commit is two flushes (everything, then the
//!   superblock); redb's default commit is one (checksummed header), and
//!   `redb_2pc` is redb with two-phase commit (two flushes, like pdt).
//!
//! After the criterion groups a summary pass times every workload again with
//! `Instant` and prints pdt/redb ratios measured in the same run.
//!
//! ```text
//! cargo bench --bench engine                       # criterion groups, then the summary
//! cargo bench --bench engine -- --summary-only     # only the summary (fast figures)
//! BENCH_SUMMARY_ONLY=1 cargo bench --bench engine  # same
//! cargo bench --bench engine -- commit_latency     # a criterion filter (no summary)
//! ```
//!
//! Environment: `BENCH_FULL=1` (criterion also runs
//! `insert_1m/txn_1000_random`), `BENCH_N` (default 1000000), `BENCH_DIR` (directory for the
//! files; default the target tmp dir, on the same disk as the repo),
//! `BENCH_SUMMARY_FILTER` (substring of summary workload names to run, e.g.
//! `pdt` or `txn_1000`), `BENCH_SUMMARY_REPS` (repeats of each insert run in
//! the summary, default 1), `BENCH_NO_SUMMARY=1`, `BENCH_SUMMARY=1` (force the
//! summary even with a filter).

use criterion::{BenchmarkId, Criterion};
use pdata::io::{BlockDevice, FileDevice};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redb::{Database, Durability, ReadableTableMetadata, TableDefinition};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thin::ThinMetadata;

const TABLE: TableDefinition<u64, u64> = TableDefinition::new("map");

/// Metadata file: 256 MiB, sparse.
const META_BLOCKS: u64 = 65536;
const DATA_BLOCK_SECTORS: u32 = 128;
const DEV: u64 = 0;
const SMALL_TXN: usize = 10;
/// Mappings already present when commit latency is measured.
const COMMIT_PREFILL: u64 = 100_000;
const BLOCK: usize = 4096;

fn n() -> u64 {
    std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn sequential_keys(n: u64) -> Vec<u64> {
    (0..n).collect()
}

fn shuffled_keys(n: u64, seed: u64) -> Vec<u64> {
    let mut k = sequential_keys(n);
    k.shuffle(&mut StdRng::seed_from_u64(seed));
    k
}

/// `n` distinct keys below 1000 n, ascending: stretches of 1000 alternate
/// between a dense run and keys ~1000 apart at random offsets.
fn sparse_keys(n: u64, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| match (i / 1000) % 2 {
            0 => i * 1000 + rng.gen_range(0..1000),
            _ => (i / 1000) * 1_000_000 + i % 1000,
        })
        .collect()
}

fn random_lookups(n: u64, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..n)).collect()
}

// ---------------------------------------------------------------- pdt

fn pdt_format(path: &Path, nr_data_blocks: u64) -> ThinMetadata {
    let _ = std::fs::remove_file(path);
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::create(path, META_BLOCKS).unwrap());
    let mut md = ThinMetadata::format(dev, DATA_BLOCK_SECTORS, nr_data_blocks, false).unwrap();
    md.create_thin(DEV).unwrap();
    md.commit().unwrap();
    md
}

fn pdt_open(path: &Path, writable: bool) -> ThinMetadata {
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(path, writable).unwrap());
    ThinMetadata::open(dev, writable).unwrap()
}

/// Formats `path`, then times provisioning `keys` in transactions of `txn`.
fn pdt_insert(path: &Path, keys: &[u64], txn: usize) -> Duration {
    pdt_insert_split(path, keys, txn).0
}

/// As `pdt_insert`; also returns the time spent in `commit`.
fn pdt_insert_split(path: &Path, keys: &[u64], txn: usize) -> (Duration, Duration) {
    let mut md = pdt_format(path, keys.len() as u64);
    let mut in_commit = Duration::ZERO;
    let t = Instant::now();
    for chunk in keys.chunks(txn) {
        for &v in chunk {
            md.provision(DEV, v).unwrap();
        }
        let c = Instant::now();
        md.commit().unwrap();
        in_commit += c.elapsed();
    }
    let e = t.elapsed();
    assert_eq!(
        md.device_details(DEV).unwrap().mapped_blocks,
        keys.len() as u64
    );
    (e, in_commit)
}

fn pdt_lookups(md: &mut ThinMetadata, keys: &[u64]) -> Duration {
    let t = Instant::now();
    let mut sum = 0u64;
    for &v in keys {
        let (b, _) = md.lookup(DEV, v).unwrap().expect("mapped");
        sum = sum.wrapping_add(b);
    }
    let e = t.elapsed();
    black_box(sum);
    e
}

// ---------------------------------------------------------------- redb

fn redb_create(path: &Path) -> Database {
    let _ = std::fs::remove_file(path);
    let db = Database::create(path).unwrap();
    // Create the table untimed, as pdt's thin device is.
    let w = db.begin_write().unwrap();
    w.open_table(TABLE).unwrap();
    w.commit().unwrap();
    db
}

fn redb_txn(db: &Database, two_phase: bool) -> redb::WriteTransaction {
    let mut w = db.begin_write().unwrap();
    w.set_durability(Durability::Immediate);
    if two_phase {
        w.set_two_phase_commit(true);
    }
    w
}

fn redb_insert(path: &Path, keys: &[u64], txn: usize) -> Duration {
    redb_insert_split(path, keys, txn).0
}

/// As `redb_insert`; also returns the time spent in `commit`.
fn redb_insert_split(path: &Path, keys: &[u64], txn: usize) -> (Duration, Duration) {
    let db = redb_create(path);
    let mut in_commit = Duration::ZERO;
    let t = Instant::now();
    let mut next = 0u64;
    for chunk in keys.chunks(txn) {
        let w = redb_txn(&db, false);
        {
            let mut tbl = w.open_table(TABLE).unwrap();
            for &k in chunk {
                tbl.insert(k, next).unwrap();
                next += 1;
            }
        }
        let c = Instant::now();
        w.commit().unwrap();
        in_commit += c.elapsed();
    }
    let e = t.elapsed();
    let r = db.begin_read().unwrap();
    assert_eq!(
        r.open_table(TABLE).unwrap().len().unwrap(),
        keys.len() as u64
    );
    (e, in_commit)
}

fn redb_lookups(db: &Database, keys: &[u64]) -> Duration {
    let t = Instant::now();
    let r = db.begin_read().unwrap();
    let tbl = r.open_table(TABLE).unwrap();
    let mut sum = 0u64;
    for &k in keys {
        sum = sum.wrapping_add(tbl.get(k).unwrap().expect("present").value());
    }
    let e = t.elapsed();
    black_box(sum);
    e
}

// ---------------------------------------------------------------- commit latency

/// Stores prefilled with `COMMIT_PREFILL` mappings, plus a raw handle on the
/// pdt file for the fdatasync baseline.
struct CommitFixture {
    pdt: ThinMetadata,
    redb: Database,
    redb_2pc: Database,
    raw: File,
    /// A block of the pdt file beyond anything the engine will have used.
    raw_block: u64,
    rng: StdRng,
    next: u64,
    n: u64,
}

impl CommitFixture {
    fn new(dir: &Path, n: u64) -> Self {
        let prefill = COMMIT_PREFILL.min(n / 2);
        let pdt_path = dir.join("commit.pdt");
        let mut pdt = pdt_format(&pdt_path, n);
        for v in 0..prefill {
            pdt.provision(DEV, v).unwrap();
        }
        pdt.commit().unwrap();
        let mk_redb = |name: &str| {
            let db = redb_create(&dir.join(name));
            let w = redb_txn(&db, false);
            {
                let mut t = w.open_table(TABLE).unwrap();
                for v in 0..prefill {
                    t.insert(v, v).unwrap();
                }
            }
            w.commit().unwrap();
            db
        };
        let raw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pdt_path)
            .unwrap();
        CommitFixture {
            pdt,
            redb: mk_redb("commit.redb"),
            redb_2pc: mk_redb("commit-2pc.redb"),
            raw,
            raw_block: META_BLOCKS - 1,
            rng: StdRng::seed_from_u64(7),
            next: prefill,
            n,
        }
    }

    fn keys(&mut self) -> [u64; SMALL_TXN] {
        let mut k = [0; SMALL_TXN];
        for x in &mut k {
            *x = self.rng.gen_range(0..self.n);
        }
        k
    }

    /// 10 provisions + commit; returns (whole txn, commit alone).
    fn pdt_txn(&mut self) -> (Duration, Duration) {
        let keys = self.keys();
        let t = Instant::now();
        for v in keys {
            self.pdt.provision(DEV, v).unwrap();
        }
        let c = Instant::now();
        self.pdt.commit().unwrap();
        (t.elapsed(), c.elapsed())
    }

    fn redb_txn(&mut self, two_phase: bool) -> (Duration, Duration) {
        let keys = self.keys();
        let db = if two_phase {
            &self.redb_2pc
        } else {
            &self.redb
        };
        let t = Instant::now();
        let w = redb_txn(db, two_phase);
        {
            let mut tbl = w.open_table(TABLE).unwrap();
            for k in keys {
                tbl.insert(k, self.next).unwrap();
                self.next += 1;
            }
        }
        let c = Instant::now();
        w.commit().unwrap();
        (t.elapsed(), c.elapsed())
    }

    /// One 4 KiB pwrite + fdatasync on the pdt file.
    fn fdatasync_4k(&mut self) -> Duration {
        let buf = [0u8; BLOCK];
        let t = Instant::now();
        self.raw
            .write_all_at(&buf, self.raw_block * BLOCK as u64)
            .unwrap();
        self.raw.sync_data().unwrap();
        t.elapsed()
    }

    /// fdatasync with nothing dirty.
    fn fdatasync_empty(&mut self) -> Duration {
        let t = Instant::now();
        self.raw.sync_data().unwrap();
        t.elapsed()
    }
}

// ---------------------------------------------------------------- criterion

const INSERT_CASES: [(&str, usize, bool); 4] = [
    ("txn_1000", 1000, false),
    ("txn_100000", 100_000, false),
    ("txn_1000_random", 1000, true),
    ("txn_100000_random", 100_000, true),
];

fn bench_insert(c: &mut Criterion, with_random_1000: bool) {
    let n = n();
    let dir = bench_dir();
    let seq = sequential_keys(n);
    let rnd = shuffled_keys(n, 1);
    let mut g = c.benchmark_group("insert_1m");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .sampling_mode(criterion::SamplingMode::Flat);
    for (name, txn, random) in INSERT_CASES {
        if random && txn == 1000 && !with_random_1000 {
            continue;
        }
        let keys = if random { &rnd } else { &seq };
        g.bench_function(BenchmarkId::new(name, "pdt"), |b| {
            b.iter_custom(|iters| {
                let path = dir.path().join("insert.pdt");
                let t = (0..iters).map(|_| pdt_insert(&path, keys, txn)).sum();
                let _ = std::fs::remove_file(&path);
                t
            })
        });
        g.bench_function(BenchmarkId::new(name, "redb"), |b| {
            b.iter_custom(|iters| {
                let path = dir.path().join("insert.redb");
                let t = (0..iters).map(|_| redb_insert(&path, keys, txn)).sum();
                let _ = std::fs::remove_file(&path);
                t
            })
        });
    }
    g.finish();
}

fn bench_lookup(c: &mut Criterion) {
    let n = n();
    let dir = bench_dir();
    let keys = random_lookups(n, 2);
    // Fixtures are built on first use, so a filter that skips a benchmark
    // skips its set-up too.
    let mut pdt: Option<ThinMetadata> = None;
    let mut redb: Option<Database> = None;
    let mut g = c.benchmark_group("lookup_1m_random");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(criterion::SamplingMode::Flat);
    g.bench_function("pdt", |b| {
        let md = pdt.get_or_insert_with(|| {
            let path = dir.path().join("lookup.pdt");
            pdt_insert(&path, &sequential_keys(n), 100_000);
            pdt_open(&path, false)
        });
        b.iter_custom(|iters| (0..iters).map(|_| pdt_lookups(md, &keys)).sum())
    });
    g.bench_function("redb", |b| {
        let db = redb.get_or_insert_with(|| {
            let path = dir.path().join("lookup.redb");
            redb_insert(&path, &sequential_keys(n), 100_000);
            Database::open(&path).unwrap()
        });
        b.iter_custom(|iters| (0..iters).map(|_| redb_lookups(db, &keys)).sum())
    });
    g.finish();
}

fn bench_commit(c: &mut Criterion) {
    let dir = bench_dir();
    let fx: RefCell<Option<CommitFixture>> = RefCell::new(None);
    let with = |f: &mut dyn FnMut(&mut CommitFixture) -> Duration, iters: u64| {
        let mut fx = fx.borrow_mut();
        let fx = fx.get_or_insert_with(|| CommitFixture::new(dir.path(), n()));
        (0..iters).map(|_| f(fx)).sum::<Duration>()
    };
    let mut g = c.benchmark_group("commit_latency");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("pdt_txn10", |b| {
        b.iter_custom(|iters| with(&mut |fx| fx.pdt_txn().0, iters))
    });
    g.bench_function("redb_txn10", |b| {
        b.iter_custom(|iters| with(&mut |fx| fx.redb_txn(false).0, iters))
    });
    g.bench_function("redb_2pc_txn10", |b| {
        b.iter_custom(|iters| with(&mut |fx| fx.redb_txn(true).0, iters))
    });
    g.bench_function("fdatasync_4k", |b| {
        b.iter_custom(|iters| with(&mut |fx| fx.fdatasync_4k(), iters))
    });
    g.bench_function("fdatasync_empty", |b| {
        b.iter_custom(|iters| with(&mut |fx| fx.fdatasync_empty(), iters))
    });
    g.finish();
}

// ---------------------------------------------------------------- summary

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} us", s * 1e6)
    }
}

fn summary() {
    let n = n();
    let filter = std::env::var("BENCH_SUMMARY_FILTER").unwrap_or_default();
    let wanted = |name: &str| filter.is_empty() || name.contains(&filter);
    let reps: usize = std::env::var("BENCH_SUMMARY_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let dir = bench_dir();
    println!();
    println!(
        "== summary: N = {n}, files in {}, best of {reps} for inserts ==",
        dir.path().display()
    );
    let seq = sequential_keys(n);
    let rnd = shuffled_keys(n, 1);
    let pdt_path = dir.path().join("summary.pdt");
    let redb_path = dir.path().join("summary.redb");
    let mut lines = Vec::new();
    let mut report = |line: String| {
        println!("{line}");
        lines.push(line);
    };

    for (name, txn, random) in INSERT_CASES {
        let keys = if random { &rnd } else { &seq };
        let label = format!("insert {n}, {name}");
        let (do_pdt, do_redb) = (
            wanted(&format!("{name}/pdt")),
            wanted(&format!("{name}/redb")),
        );
        if !do_pdt && !do_redb {
            continue;
        }
        let mut p = (Duration::MAX, Duration::ZERO);
        let mut r = (Duration::MAX, Duration::ZERO);
        for _ in 0..reps {
            if do_pdt {
                p = p.min(pdt_insert_split(&pdt_path, keys, txn));
            }
            if do_redb {
                r = r.min(redb_insert_split(&redb_path, keys, txn));
            }
        }
        let one = |name: &str, (t, c): (Duration, Duration)| {
            format!("{name} {} (commits {})", fmt_dur(t), fmt_dur(c))
        };
        report(match (do_pdt, do_redb) {
            (true, true) => format!(
                "{label}: {}, {}, ratio pdt/redb {:.2}",
                one("pdt", p),
                one("redb", r),
                secs(p.0) / secs(r.0)
            ),
            (true, false) => format!("{label}: {}", one("pdt", p)),
            _ => format!("{label}: {}", one("redb", r)),
        });
    }

    // Fresh stores holding the keys, built with txn 100000, closed and
    // reopened; n random lookups of present keys.
    let mut lookups = |label: &str, stored: &[u64]| {
        pdt_insert(&pdt_path, stored, 100_000);
        redb_insert(&redb_path, stored, 100_000);
        let keys: Vec<u64> = random_lookups(n, 2)
            .into_iter()
            .map(|i| stored[i as usize])
            .collect();
        let mut pdt = pdt_open(&pdt_path, false);
        let redb = Database::open(&redb_path).unwrap();
        let (pc, rc) = (pdt_lookups(&mut pdt, &keys), redb_lookups(&redb, &keys));
        report(format!(
            "{label}, first pass after reopen: pdt {}, redb {}, ratio pdt/redb {:.2}",
            fmt_dur(pc),
            fmt_dur(rc),
            secs(pc) / secs(rc)
        ));
        // Interleaved, so that load from elsewhere hits both alike.
        let (mut pw, mut rw) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            pw = pw.min(pdt_lookups(&mut pdt, &keys));
            rw = rw.min(redb_lookups(&redb, &keys));
        }
        report(format!(
            "{label}, warm (best of 5): pdt {} ({:.0} ns/lookup), redb {} ({:.0} ns/lookup), ratio pdt/redb {:.2}",
            fmt_dur(pw),
            secs(pw) * 1e9 / n as f64,
            fmt_dur(rw),
            secs(rw) * 1e9 / n as f64,
            secs(pw) / secs(rw)
        ));
    };
    if wanted("lookup") {
        lookups(&format!("lookup {n} random"), &seq);
    }
    if wanted("lookup_sparse") {
        // The same number of keys, irregular: runs of 1000 dense keys
        // between stretches of keys ~1000 apart at random offsets.
        lookups(&format!("lookup_sparse {n} random"), &sparse_keys(n, 3));
    }

    if wanted("commit") {
        let mut fx = CommitFixture::new(dir.path(), n);
        const K: usize = 200;
        // Warm up, then interleave so drift in the disk's latency hits all alike.
        for _ in 0..10 {
            fx.pdt_txn();
            fx.redb_txn(false);
            fx.redb_txn(true);
            fx.fdatasync_4k();
        }
        let (mut pt, mut pc, mut rt, mut rc, mut r2t, mut r2c, mut fs, mut fe) = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        for _ in 0..K {
            let (a, b) = fx.pdt_txn();
            pt.push(a);
            pc.push(b);
            let (a, b) = fx.redb_txn(false);
            rt.push(a);
            rc.push(b);
            let (a, b) = fx.redb_txn(true);
            r2t.push(a);
            r2c.push(b);
            fs.push(fx.fdatasync_4k());
            fe.push(fx.fdatasync_empty());
        }
        let f = median(fs);
        let fe = median(fe);
        let (pt, pc, rt, rc, r2t, r2c) = (
            median(pt),
            median(pc),
            median(rt),
            median(rc),
            median(r2t),
            median(r2c),
        );
        let x = |d: Duration| secs(d) / secs(f);
        report(format!(
            "commit latency (median of {K}): one 4 KiB pwrite+fdatasync {} (bare fdatasync {})",
            fmt_dur(f),
            fmt_dur(fe)
        ));
        report(format!(
            "  pdt  txn of {SMALL_TXN}: {} = {:.2} fdatasyncs (commit alone {} = {:.2}); floor 2",
            fmt_dur(pt),
            x(pt),
            fmt_dur(pc),
            x(pc)
        ));
        report(format!(
            "  redb txn of {SMALL_TXN}: {} = {:.2} fdatasyncs (commit alone {} = {:.2}); floor 1",
            fmt_dur(rt),
            x(rt),
            fmt_dur(rc),
            x(rc)
        ));
        report(format!(
            "  redb 2pc txn of {SMALL_TXN}: {} = {:.2} fdatasyncs (commit alone {} = {:.2}); floor 2",
            fmt_dur(r2t),
            x(r2t),
            fmt_dur(r2c),
            x(r2c)
        ));
        report(format!(
            "  ratio pdt/redb {:.2}, pdt/redb-2pc {:.2}",
            secs(pt) / secs(rt),
            secs(pt) / secs(r2t)
        ));
    }
    let _ = lines;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env_on = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0");
    if env_on("BENCH_SUMMARY_ONLY") || args.iter().any(|a| a == "--summary-only") {
        summary();
        return;
    }
    // `cargo test --benches` runs the binary without `--bench`: criterion's
    // test mode runs each routine once; skip the summary there.
    let bench_mode = args.iter().any(|a| a == "--bench");
    // A positional argument is a criterion filter: run only what it selects.
    const WITH_VALUE: [&str; 15] = [
        "--save-baseline",
        "-s",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--color",
        "--output-format",
    ];
    let filtered = args.iter().enumerate().any(|(i, a)| {
        !a.starts_with('-') && (i == 0 || !WITH_VALUE.contains(&args[i - 1].as_str()))
    });
    let mut c = Criterion::default().configure_from_args();
    bench_commit(&mut c);
    bench_lookup(&mut c);
    // insert_1m/txn_1000_random takes ~3 minutes of criterion samples on its
    // own (11 runs of ~8 s per engine): only with BENCH_FULL=1 or a filter
    // naming it. The summary always runs it once.
    let random_1000 = env_on("BENCH_FULL") || args.iter().any(|a| a.contains("random"));
    bench_insert(&mut c, random_1000);
    c.final_summary();
    if bench_mode && !env_on("BENCH_NO_SUMMARY") && (!filtered || env_on("BENCH_SUMMARY")) {
        summary();
    }
}
