//! Debian's thin-provisioning-tools (0.9.0) as an oracle for `pdt thin_exec`.
//!
//! * `random_scripts_*`: seeded random pool workloads (many devices,
//!   snapshot chains, thousands of mappings, shared-block overwrites,
//!   removals, deletes, aborts, metadata snapshots, resizes), run in chunks
//!   by `pdt thin_exec`. Every output line is checked against a model kept
//!   from the tool's own outputs; after every chunk Debian's `thin_check`
//!   must be clean and `thin_dump` (and `thin_dump -m`) must show the model.
//! * `thin_restore_interop`: we open and extend what `thin_restore` writes.
//! * `metadata_snapshot`: `thin_dump -m` shows the pool as of the reserve.
//! * `corrupted_blocks`: a flipped byte in any metadata block gives
//!   `error: ... block N ...`, never a panic nor a wrong answer.
//!
//! The tools are required: the test fails (does not skip) without them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

const PDT: &str = env!("CARGO_BIN_EXE_pdt");
const THIN_CHECK: &str = "/usr/sbin/thin_check";
const THIN_DUMP: &str = "/usr/sbin/thin_dump";
const THIN_RESTORE: &str = "/usr/sbin/thin_restore";

const BLOCK_SIZE: usize = 4096;
const MAX_DEVICE_ID: u64 = (1 << 24) - 1;
/// Placeholder for a data block the generator cannot know yet.
const PH: u64 = u64::MAX;

fn require_tools() {
    for t in [THIN_CHECK, THIN_DUMP, THIN_RESTORE] {
        assert!(
            Path::new(t).exists(),
            "{t} is missing: this test needs Debian's thin-provisioning-tools \
             (run `apt-get install thin-provisioning-tools`)"
        );
    }
}

fn new_meta(dir: &Path, name: &str, bytes: u64) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(bytes).unwrap();
    p
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Dev {
    map: BTreeMap<u64, (u64, u32)>,
    trans: u64,
    ctime: u32,
    stime: u32,
}

/// A held metadata snapshot: the pool as of `reserve_metadata_snap`.
#[derive(Debug)]
struct Held {
    devs: BTreeMap<u64, Dev>,
    time: u32,
    trans: u64,
    block_size: u32,
    blocks: HashSet<u64>,
}

#[derive(Clone, Debug)]
struct Pool {
    devs: BTreeMap<u64, Dev>,
    /// Data block -> number of mappings of live devices that use it.
    refs: HashMap<u64, u32>,
    time: u32,
    trans: u64,
    nr_data: u64,
    block_size: u32,
    meta_blocks: u64,
    held: Option<Rc<Held>>,
}

impl Pool {
    fn new(block_size: u32, nr_data: u64, meta_blocks: u64) -> Pool {
        Pool {
            meta_blocks,
            devs: BTreeMap::new(),
            refs: HashMap::new(),
            time: 0,
            trans: 0,
            nr_data,
            block_size,
            held: None,
        }
    }

    fn inc(&mut self, b: u64) {
        if b != PH {
            *self.refs.entry(b).or_insert(0) += 1;
        }
    }

    fn dec(&mut self, b: u64) {
        if b == PH {
            return;
        }
        let c = self
            .refs
            .get_mut(&b)
            .expect("model: dec of an unused block");
        *c -= 1;
        if *c == 0 {
            self.refs.remove(&b);
        }
    }

    /// Whether the pool's data space map counts `b` as used.
    fn in_use(&self, b: u64) -> bool {
        self.refs.contains_key(&b) || self.held.as_ref().is_some_and(|h| h.blocks.contains(&b))
    }

    fn held_from(&self) -> Held {
        Held {
            devs: self.devs.clone(),
            time: self.time,
            trans: self.trans,
            block_size: self.block_size,
            blocks: self.refs.keys().copied().collect(),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Format(u32, u64),
    CreateThin(u64),
    CreateSnap(u64, u64),
    Delete(u64),
    SetTid(u64, u64),
    Provision(u64, u64),
    Alloc,
    Insert(u64, u64, u64),
    Lookup(u64, u64),
    Remove(u64, u64),
    RemoveRange(u64, u64, u64),
    Reserve,
    Release,
    ResizeData(u64),
    ResizeMeta(u64),
    Commit,
    Abort,
}

impl Op {
    fn line(&self) -> String {
        match self {
            Op::Format(s, n) => format!("format {s} {n}"),
            Op::CreateThin(d) => format!("create_thin {d}"),
            Op::CreateSnap(d, o) => format!("create_snap {d} {o}"),
            Op::Delete(d) => format!("delete {d}"),
            Op::SetTid(a, b) => format!("set_transaction_id {a} {b}"),
            Op::Provision(d, v) => format!("provision {d} {v}"),
            Op::Alloc => "alloc".into(),
            Op::Insert(d, v, b) => format!("insert {d} {v} {b}"),
            Op::Lookup(d, v) => format!("lookup {d} {v}"),
            Op::Remove(d, v) => format!("remove {d} {v}"),
            Op::RemoveRange(d, b, e) => format!("remove_range {d} {b} {e}"),
            Op::Reserve => "reserve_metadata_snap".into(),
            Op::Release => "release_metadata_snap".into(),
            Op::ResizeData(n) => format!("resize_data {n}"),
            Op::ResizeMeta(n) => format!("resize_metadata {n}"),
            Op::Commit => "commit".into(),
            Op::Abort => "abort".into(),
        }
    }
}

/// The pool as the tool should see it: the transaction in progress, the
/// last commit, and the blocks from `alloc` not yet mapped.
#[derive(Clone, Debug)]
struct State {
    cur: Pool,
    committed: Pool,
    pending: BTreeSet<u64>,
}

impl State {
    fn new(block_size: u32, nr_data: u64, meta_blocks: u64) -> State {
        let p = Pool::new(block_size, nr_data, meta_blocks);
        State {
            cur: p.clone(),
            committed: p,
            pending: BTreeSet::new(),
        }
    }

    fn commit(&mut self) {
        self.pending.clear();
        self.committed = self.cur.clone();
    }

    fn abort(&mut self) {
        self.pending.clear();
        self.cur = self.committed.clone();
    }

    /// A block `alloc`/`provision` may hand out: in range, unused now, in
    /// the last commit (nor by either's metadata snapshot) and not pending.
    fn check_fresh(&self, b: u64) -> Result<(), String> {
        if b == PH {
            return Ok(());
        }
        if b >= self.cur.nr_data {
            return Err(format!(
                "allocated data block {b} but the pool has {} blocks",
                self.cur.nr_data
            ));
        }
        if self.cur.in_use(b) {
            return Err(format!("allocated data block {b}, which is in use"));
        }
        if self.committed.in_use(b) {
            return Err(format!(
                "allocated data block {b}, which is in use in the last commit"
            ));
        }
        if self.pending.contains(&b) {
            return Err(format!("allocated data block {b} twice"));
        }
        Ok(())
    }

    /// Applies `op`. `out` is the tool's line (checked), or None while
    /// generating (provisioned blocks are then PH).
    fn apply(&mut self, op: &Op, out: Option<&str>) -> Result<(), String> {
        let expect = |s: &str| -> Result<(), String> {
            match out {
                Some(o) if o != s => Err(format!("expected '{s}', got '{o}'")),
                _ => Ok(()),
            }
        };
        let fail = || -> Result<(), String> {
            match out {
                Some(o) if !o.starts_with("error: ") => {
                    Err(format!("expected an error, got '{o}'"))
                }
                _ => Ok(()),
            }
        };
        let number = || -> Result<u64, String> {
            match out {
                None => Ok(PH),
                Some(o) => o
                    .parse::<u64>()
                    .map_err(|_| format!("expected a data block, got '{o}'")),
            }
        };
        match *op {
            Op::Format(bs, nr) => {
                expect("ok")?;
                self.cur = Pool::new(bs, nr, self.cur.meta_blocks);
                self.commit();
            }
            Op::CreateThin(d) => {
                if d > MAX_DEVICE_ID || self.cur.devs.contains_key(&d) {
                    return fail();
                }
                expect("ok")?;
                let t = self.cur.time;
                self.cur.devs.insert(
                    d,
                    Dev {
                        map: BTreeMap::new(),
                        trans: self.cur.trans,
                        ctime: t,
                        stime: t,
                    },
                );
            }
            Op::CreateSnap(d, o) => {
                if d > MAX_DEVICE_ID
                    || self.cur.devs.contains_key(&d)
                    || !self.cur.devs.contains_key(&o)
                {
                    return fail();
                }
                expect("ok")?;
                self.cur.time += 1;
                let t = self.cur.time;
                let origin = self.cur.devs.get_mut(&o).unwrap();
                origin.stime = t;
                let map = origin.map.clone();
                for (b, _) in map.values() {
                    self.cur.inc(*b);
                }
                let trans = self.cur.trans;
                self.cur.devs.insert(
                    d,
                    Dev {
                        map,
                        trans,
                        ctime: t,
                        stime: t,
                    },
                );
            }
            Op::Delete(d) => {
                let Some(dev) = self.cur.devs.remove(&d) else {
                    return fail();
                };
                expect("ok")?;
                for (b, _) in dev.map.values() {
                    self.cur.dec(*b);
                }
            }
            Op::SetTid(old, new) => {
                if old != self.cur.trans {
                    return fail();
                }
                expect("ok")?;
                self.cur.trans = new;
            }
            Op::Provision(d, v) => {
                if !self.cur.devs.contains_key(&d) {
                    return fail();
                }
                let b = number()?;
                self.check_fresh(b)?;
                let t = self.cur.time;
                let old = self.cur.devs.get_mut(&d).unwrap().map.insert(v, (b, t));
                if let Some((ob, _)) = old {
                    self.cur.dec(ob);
                }
                self.cur.inc(b);
            }
            Op::Alloc => {
                let b = number()?;
                self.check_fresh(b)?;
                if b != PH {
                    self.pending.insert(b);
                }
            }
            Op::Insert(d, v, b) => {
                if !self.cur.devs.contains_key(&d) || b >= self.cur.nr_data {
                    return fail();
                }
                let owned = self.pending.contains(&b);
                if !owned && !self.cur.in_use(b) {
                    return fail();
                }
                expect("ok")?;
                self.pending.remove(&b);
                let t = self.cur.time;
                let old = self.cur.devs.get_mut(&d).unwrap().map.insert(v, (b, t));
                if let Some((ob, _)) = old {
                    self.cur.dec(ob);
                }
                self.cur.inc(b);
            }
            Op::Lookup(d, v) => {
                let Some(dev) = self.cur.devs.get(&d) else {
                    return fail();
                };
                match dev.map.get(&v) {
                    Some((b, t)) if *b != PH => expect(&format!("{b} {t}"))?,
                    Some(_) => {}
                    None => expect("unmapped")?,
                }
            }
            Op::Remove(d, v) => {
                let Some(dev) = self.cur.devs.get_mut(&d) else {
                    return fail();
                };
                let Some((b, _)) = dev.map.remove(&v) else {
                    return fail();
                };
                expect("ok")?;
                self.cur.dec(b);
            }
            Op::RemoveRange(d, begin, end) => {
                let Some(dev) = self.cur.devs.get_mut(&d) else {
                    return fail();
                };
                expect("ok")?;
                if begin < end {
                    let keys: Vec<u64> = dev.map.range(begin..end).map(|(k, _)| *k).collect();
                    let mut gone = Vec::new();
                    for k in keys {
                        gone.push(dev.map.remove(&k).unwrap().0);
                    }
                    for b in gone {
                        self.cur.dec(b);
                    }
                }
            }
            Op::Reserve => {
                if self.cur.held.is_some() {
                    return fail();
                }
                expect("ok")?;
                // It commits first.
                self.commit();
                self.cur.held = Some(Rc::new(self.cur.held_from()));
            }
            Op::Release => {
                if self.cur.held.is_none() {
                    return fail();
                }
                expect("ok")?;
                self.cur.held = None;
            }
            Op::ResizeData(n) => {
                if n < self.cur.nr_data {
                    return fail();
                }
                expect("ok")?;
                self.cur.nr_data = n;
            }
            Op::ResizeMeta(n) => {
                if n < self.cur.meta_blocks {
                    return fail();
                }
                expect("ok")?;
                self.cur.meta_blocks = n;
            }
            Op::Commit => {
                expect("ok")?;
                self.commit();
            }
            Op::Abort => {
                expect("ok")?;
                self.abort();
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Running the tools.

struct ExecOut {
    lines: Vec<String>,
    code: i32,
    stderr: String,
}

fn run_exec(meta: &Path, script: &Path, text: &str) -> ExecOut {
    std::fs::write(script, text).unwrap();
    let o = Command::new(PDT)
        .arg("thin_exec")
        .arg(meta)
        .arg(script)
        .output()
        .expect("running pdt thin_exec");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "pdt thin_exec panicked on {}:\n{stderr}",
        script.display()
    );
    ExecOut {
        lines: String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        code: o.status.code().unwrap_or(-1),
        stderr,
    }
}

fn script_of(ops: &[Op]) -> String {
    let mut s = String::new();
    for op in ops {
        s.push_str(&op.line());
        s.push('\n');
    }
    s
}

/// Runs `ops` (one invocation: ends in an implicit abort) and checks every
/// output line against the model, which follows.
fn run_checked(meta: &Path, script: &Path, st: &mut State, ops: &[Op]) {
    let r = run_exec(meta, script, &script_of(ops));
    assert_eq!(
        r.lines.len(),
        ops.len(),
        "one output line per operation expected; stderr: {}",
        r.stderr
    );
    let mut failed = false;
    for (i, (op, out)) in ops.iter().zip(&r.lines).enumerate() {
        if let Err(e) = st.apply(op, Some(out)) {
            let from = i.saturating_sub(5);
            panic!(
                "line {} `{}`: {e}\ncontext (script, output):\n{}",
                i + 1,
                op.line(),
                ops[from..=i]
                    .iter()
                    .zip(&r.lines[from..=i])
                    .map(|(o, l)| format!("  {} -> {l}\n", o.line()))
                    .collect::<String>()
            );
        }
        failed |= out.starts_with("error: ");
    }
    st.abort();
    assert_eq!(
        r.code,
        if failed { 1 } else { 0 },
        "exit code (failed operations: {failed}); stderr: {}",
        r.stderr
    );
    assert!(r.stderr.is_empty(), "unexpected stderr: {}", r.stderr);
}

/// Debian's thin_check must accept META with nothing but its progress
/// lines. Returns the TRANSACTION_ID it reports.
fn thin_check_clean(meta: &Path, snap: bool) -> u64 {
    let mut c = Command::new(THIN_CHECK);
    if snap {
        c.arg("--metadata-snap");
    }
    let o = c.arg(meta).output().expect("running thin_check");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let what = format!(
        "thin_check{} {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        if snap { " -m" } else { "" },
        meta.display()
    );
    assert!(o.status.success(), "{what}");
    const PROGRESS: [&str; 4] = [
        "examining superblock",
        "examining devices tree",
        "examining mapping tree",
        "checking space map counts",
    ];
    for l in stderr.lines() {
        assert!(PROGRESS.contains(&l.trim()), "thin_check complains: {what}");
    }
    let mut tid = None;
    for l in stdout.lines() {
        if let Some(v) = l.strip_prefix("TRANSACTION_ID=") {
            tid = Some(v.trim().parse::<u64>().unwrap());
        } else {
            assert!(
                l.starts_with("METADATA_FREE_BLOCKS="),
                "thin_check complains: {what}"
            );
        }
    }
    assert!(
        !stdout.to_lowercase().contains("leak") && !stderr.to_lowercase().contains("leak"),
        "{what}"
    );
    tid.unwrap_or_else(|| panic!("no TRANSACTION_ID: {what}"))
}

#[derive(Debug, PartialEq, Eq, Clone)]
struct DumpDev {
    mapped: u64,
    trans: u64,
    ctime: u32,
    stime: u32,
    map: BTreeMap<u64, (u64, u32)>,
}

#[derive(Debug, PartialEq, Eq, Clone)]
struct Dump {
    time: u32,
    trans: u64,
    block_size: u32,
    /// None for a metadata snapshot (its space map roots are zeroed).
    nr_data: Option<u64>,
    devs: BTreeMap<u64, DumpDev>,
}

fn attrs(line: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .rsplit(|c: char| c.is_whitespace() || c == '<')
            .next()
            .unwrap()
            .to_string();
        let after = &rest[eq + 2..];
        let end = after.find('"').expect("unterminated attribute");
        m.insert(name, after[..end].to_string());
        rest = &after[end + 1..];
    }
    m
}

fn num<T: std::str::FromStr>(a: &HashMap<String, String>, k: &str, line: &str) -> T {
    a.get(k)
        .unwrap_or_else(|| panic!("no {k} in '{line}'"))
        .parse()
        .unwrap_or_else(|_| panic!("bad {k} in '{line}'"))
}

/// Parses thin_dump's XML; also returns how many range_mappings it had.
fn parse_dump(xml: &str) -> (Dump, usize) {
    let mut dump: Option<Dump> = None;
    let mut cur: Option<u64> = None;
    let mut ranges = 0;
    for line in xml.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let a = attrs(t);
        if t.starts_with("<superblock") {
            dump = Some(Dump {
                time: num(&a, "time", t),
                trans: num(&a, "transaction", t),
                block_size: num(&a, "data_block_size", t),
                nr_data: Some(num(&a, "nr_data_blocks", t)),
                devs: BTreeMap::new(),
            });
        } else if t.starts_with("<device") {
            let d: u64 = num(&a, "dev_id", t);
            let dev = DumpDev {
                mapped: num(&a, "mapped_blocks", t),
                trans: num(&a, "transaction", t),
                ctime: num(&a, "creation_time", t),
                stime: num(&a, "snap_time", t),
                map: BTreeMap::new(),
            };
            let prev = dump.as_mut().unwrap().devs.insert(d, dev);
            assert!(prev.is_none(), "device {d} twice in the dump");
            cur = Some(d);
        } else if t.starts_with("<single_mapping") {
            let dev = dump.as_mut().unwrap().devs.get_mut(&cur.unwrap()).unwrap();
            let v: u64 = num(&a, "origin_block", t);
            let prev = dev
                .map
                .insert(v, (num(&a, "data_block", t), num(&a, "time", t)));
            assert!(prev.is_none(), "block {v} twice in the dump");
        } else if t.starts_with("<range_mapping") {
            ranges += 1;
            let dev = dump.as_mut().unwrap().devs.get_mut(&cur.unwrap()).unwrap();
            let ob: u64 = num(&a, "origin_begin", t);
            let db: u64 = num(&a, "data_begin", t);
            let len: u64 = num(&a, "length", t);
            let time: u32 = num(&a, "time", t);
            for i in 0..len {
                let prev = dev.map.insert(ob + i, (db + i, time));
                assert!(prev.is_none(), "block {} twice in the dump", ob + i);
            }
        } else if t == "</device>" {
            cur = None;
        } else if t == "</superblock>" {
        } else {
            panic!("unexpected thin_dump line: {t}");
        }
    }
    (dump.expect("no superblock in thin_dump output"), ranges)
}

fn thin_dump(meta: &Path, snap: bool) -> (Dump, usize) {
    let mut c = Command::new(THIN_DUMP);
    if snap {
        c.arg("--metadata-snap");
    }
    let o = c.arg(meta).output().expect("running thin_dump");
    assert!(
        o.status.success(),
        "thin_dump{} {} failed: {}",
        if snap { " -m" } else { "" },
        meta.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    parse_dump(&String::from_utf8_lossy(&o.stdout))
}

fn dump_devs(devs: &BTreeMap<u64, Dev>) -> BTreeMap<u64, DumpDev> {
    devs.iter()
        .map(|(id, d)| {
            (
                *id,
                DumpDev {
                    mapped: d.map.len() as u64,
                    trans: d.trans,
                    ctime: d.ctime,
                    stime: d.stime,
                    map: d.map.clone(),
                },
            )
        })
        .collect()
}

fn expected_dump(p: &Pool) -> Dump {
    Dump {
        time: p.time,
        trans: p.trans,
        block_size: p.block_size,
        nr_data: Some(p.nr_data),
        devs: dump_devs(&p.devs),
    }
}

fn expected_snap_dump(h: &Held) -> Dump {
    Dump {
        time: h.time,
        trans: h.trans,
        block_size: h.block_size,
        nr_data: None,
        devs: dump_devs(&h.devs),
    }
}

/// A readable account of how two dumps differ (the first few differences).
fn diff(what: &str, got: &Dump, want: &Dump) -> Option<String> {
    if got == want {
        return None;
    }
    let mut s = format!("{what}: thin_dump differs from the model\n");
    if (got.time, got.trans, got.block_size, got.nr_data)
        != (want.time, want.trans, want.block_size, want.nr_data)
    {
        let _ = writeln!(
            s,
            "  superblock: got time {} transaction {} block size {} nr_data {:?}; want {} {} {} {:?}",
            got.time, got.trans, got.block_size, got.nr_data, want.time, want.trans,
            want.block_size, want.nr_data
        );
    }
    let ids: BTreeSet<u64> = got.devs.keys().chain(want.devs.keys()).copied().collect();
    let mut n = 0;
    for id in ids {
        match (got.devs.get(&id), want.devs.get(&id)) {
            (Some(_), None) => {
                let _ = writeln!(s, "  device {id}: in the dump, not in the model");
            }
            (None, Some(_)) => {
                let _ = writeln!(s, "  device {id}: in the model, not in the dump");
            }
            (Some(g), Some(w)) if g != w => {
                if (g.mapped, g.trans, g.ctime, g.stime) != (w.mapped, w.trans, w.ctime, w.stime) {
                    let _ = writeln!(
                        s,
                        "  device {id}: got mapped {} trans {} ctime {} stime {}; want {} {} {} {}",
                        g.mapped, g.trans, g.ctime, g.stime, w.mapped, w.trans, w.ctime, w.stime
                    );
                }
                let vs: BTreeSet<u64> = g.map.keys().chain(w.map.keys()).copied().collect();
                for v in vs {
                    if g.map.get(&v) != w.map.get(&v) {
                        n += 1;
                        if n <= 20 {
                            let _ = writeln!(
                                s,
                                "  device {id} block {v}: got {:?}, want {:?}",
                                g.map.get(&v),
                                w.map.get(&v)
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if n > 20 {
        let _ = writeln!(s, "  ... {n} mapping differences in all");
    }
    Some(s)
}

/// Debian's tools must see exactly the committed model (and its metadata
/// snapshot, if one is held). Returns the number of range_mappings.
fn check_disk(what: &str, meta: &Path, st: &State) -> usize {
    let p = &st.committed;
    let tid = thin_check_clean(meta, false);
    assert_eq!(tid, p.trans, "{what}: thin_check's TRANSACTION_ID");
    let (got, ranges) = thin_dump(meta, false);
    if let Some(d) = diff(what, &got, &expected_dump(p)) {
        panic!("{d}");
    }
    match &p.held {
        Some(h) => {
            thin_check_clean(meta, true);
            let (mut got, _) = thin_dump(meta, true);
            got.nr_data = None;
            if let Some(d) = diff(
                &format!("{what} (metadata snapshot)"),
                &got,
                &expected_snap_dump(h),
            ) {
                panic!("{d}");
            }
        }
        None => {
            let o = Command::new(THIN_DUMP)
                .arg("--metadata-snap")
                .arg(meta)
                .output()
                .unwrap();
            assert!(
                !o.status.success(),
                "{what}: thin_dump -m succeeds with no metadata snapshot held"
            );
        }
    }
    ranges
}

// ---------------------------------------------------------------------------
// 1, 2: random scripts.

const VSPACE: u64 = 2500;
const MAX_DEVS: usize = 20;

struct Gen {
    rng: StdRng,
    family: HashMap<u64, u64>,
    /// Snapshot depth of each device (1 for a thin, origin's + 1).
    depth: HashMap<u64, u32>,
    max_depth: u32,
    last_created: Option<u64>,
    provisions: u64,
    probes: u64,
}

impl Gen {
    fn pick_dev(&mut self, st: &State) -> Option<u64> {
        let n = st.cur.devs.len();
        if n == 0 {
            return None;
        }
        let i = self.rng.gen_range(0..n);
        st.cur.devs.keys().nth(i).copied()
    }

    /// A mapped block of `d` at or after a random point (wrapping), if any,
    /// satisfying `f`.
    fn pick_mapped(
        &mut self,
        st: &State,
        d: u64,
        f: impl Fn(u64, u32) -> bool,
    ) -> Option<(u64, u64, u32)> {
        let dev = st.cur.devs.get(&d)?;
        let start = self.rng.gen_range(0..VSPACE);
        dev.map
            .range(start..)
            .chain(dev.map.range(..start))
            .find(|(_, (b, t))| f(*b, *t))
            .map(|(v, (b, t))| (*v, *b, *t))
    }

    fn fresh_id(&mut self, st: &State) -> u64 {
        loop {
            let id = self.rng.gen_range(0..40);
            if !st.cur.devs.contains_key(&id) {
                return id;
            }
        }
    }

    /// Roughly how many data blocks may be in use by the end of the chunk.
    fn usage(&self, st: &State, chunk_provisions: u64) -> u64 {
        let held = |p: &Pool| p.held.as_ref().map_or(0, |h| h.blocks.len() as u64);
        st.committed.refs.len() as u64
            + held(&st.committed)
            + st.cur.refs.len() as u64
            + held(&st.cur)
            + chunk_provisions
            + st.pending.len() as u64
    }

    /// Operations for one invocation, generated from `base` (the state on
    /// disk). `meta` is only read (copied) to learn what `alloc` returns.
    fn chunk(
        &mut self,
        base: &State,
        meta: &Path,
        dir: &Path,
        resize_meta: Option<u64>,
    ) -> Vec<Op> {
        let mut st = base.clone();
        let mut ops: Vec<Op> = Vec::new();
        let mut chunk_provisions = 0u64;
        if let Some(n) = resize_meta {
            ops.push(Op::ResizeMeta(n));
            st.apply(&ops[0], None).unwrap();
        }
        let len = self.rng.gen_range(150..600);
        while ops.len() < len {
            let mut new: Vec<Op> = Vec::new();
            let r = self.rng.gen_range(0..1000);
            let dev = self.pick_dev(&st);
            if self.usage(&st, chunk_provisions) + 200 > st.cur.nr_data {
                new.push(Op::ResizeData(
                    st.cur.nr_data + self.rng.gen_range(2000..6000),
                ));
            } else if dev.is_none() || (r < 25 && st.cur.devs.len() < MAX_DEVS) {
                let id = self.fresh_id(&st);
                let snap_of = dev.filter(|_| self.rng.gen_bool(0.65));
                if let Some(any) = snap_of {
                    let origin = match self.last_created {
                        Some(l) if st.cur.devs.contains_key(&l) && self.rng.gen_bool(0.6) => l,
                        _ => any,
                    };
                    new.push(Op::CreateSnap(id, origin));
                    let f = self.family[&origin];
                    self.family.insert(id, f);
                    let depth = self.depth[&origin] + 1;
                    self.depth.insert(id, depth);
                    self.max_depth = self.max_depth.max(depth);
                } else {
                    new.push(Op::CreateThin(id));
                    self.family.insert(id, id);
                    self.depth.insert(id, 1);
                }
                self.last_created = Some(id);
            } else {
                let d = dev.unwrap();
                match r {
                    25..=29 => {
                        if st.cur.devs.len() > 6 {
                            new.push(Op::Delete(d));
                        }
                    }
                    30..=329 => new.push(Op::Provision(d, self.rng.gen_range(0..VSPACE))),
                    330..=369 => {
                        let start = self.rng.gen_range(0..VSPACE);
                        let n = self.rng.gen_range(4..48);
                        for v in start..start + n {
                            new.push(Op::Provision(d, v));
                        }
                    }
                    370..=469 => {
                        // Overwrite a block the device shares (or may share)
                        // with its snapshots or origin.
                        let stime = st.cur.devs[&d].stime;
                        if let Some((v, _, _)) = self.pick_mapped(&st, d, |_, t| t < stime) {
                            new.push(Op::Provision(d, v));
                        } else {
                            new.push(Op::Provision(d, self.rng.gen_range(0..VSPACE)));
                        }
                    }
                    470..=499 => {
                        // Share a known block of the same family.
                        let fam = self.family[&d];
                        let members: Vec<u64> = st
                            .cur
                            .devs
                            .keys()
                            .copied()
                            .filter(|m| self.family.get(m) == Some(&fam))
                            .collect();
                        let m = members[self.rng.gen_range(0..members.len())];
                        if let Some((v, b, _)) = self.pick_mapped(&st, m, |b, _| b != PH) {
                            let v = if self.rng.gen_bool(0.5) {
                                v
                            } else {
                                self.rng.gen_range(0..VSPACE)
                            };
                            new.push(Op::Insert(d, v, b));
                        }
                    }
                    500..=504 => new.push(Op::Alloc),
                    505..=508 => {
                        // alloc then insert of its block: learn the block by
                        // running the chunk so far on a copy.
                        st.apply(&Op::Alloc, None).unwrap();
                        ops.push(Op::Alloc);
                        let copy = dir.join("probe.img");
                        std::fs::copy(meta, &copy).unwrap();
                        let r = run_exec(&copy, &dir.join("probe.txt"), &script_of(&ops));
                        self.probes += 1;
                        assert_eq!(r.lines.len(), ops.len(), "probe: {}", r.stderr);
                        let mut concrete = base.clone();
                        for (op, out) in ops.iter().zip(&r.lines) {
                            concrete
                                .apply(op, Some(out))
                                .unwrap_or_else(|e| panic!("probe: `{}`: {e}", op.line()));
                        }
                        let b: u64 = r.lines.last().unwrap().parse().unwrap();
                        st = concrete;
                        new.push(Op::Insert(d, self.rng.gen_range(0..VSPACE), b));
                    }
                    509..=708 => {
                        let v = if self.rng.gen_bool(0.7) {
                            self.pick_mapped(&st, d, |_, _| true).map(|x| x.0)
                        } else {
                            None
                        };
                        new.push(Op::Lookup(
                            d,
                            v.unwrap_or_else(|| self.rng.gen_range(0..VSPACE)),
                        ));
                    }
                    709..=788 => {
                        if let Some((v, _, _)) = self.pick_mapped(&st, d, |_, _| true) {
                            new.push(Op::Remove(d, v));
                        }
                    }
                    789..=803 => {
                        let b = self.rng.gen_range(0..VSPACE);
                        new.push(Op::RemoveRange(d, b, b + self.rng.gen_range(1..300)));
                    }
                    804..=810 => {
                        let t = st.cur.trans;
                        new.push(Op::SetTid(t, t + self.rng.gen_range(1..4)));
                    }
                    811..=818 => {
                        if st.cur.held.is_some() {
                            new.push(Op::Release);
                        } else {
                            new.push(Op::Reserve);
                        }
                    }
                    819..=822 => {
                        new.push(Op::ResizeData(st.cur.nr_data + self.rng.gen_range(1..3000)))
                    }
                    823..=827 => new.push(Op::Commit),
                    // Operations that must fail, and change nothing.
                    828..=829 => new.push(Op::CreateThin(d)),
                    830 => new.push(Op::CreateSnap(self.fresh_id(&st), 1000 + d)),
                    831 => new.push(Op::Delete(1000 + d)),
                    832 => new.push(Op::Lookup(1000 + d, 0)),
                    833 => new.push(Op::Provision(1000 + d, 0)),
                    834 => {
                        let t = st.cur.trans;
                        new.push(Op::SetTid(t + 1, t + 2));
                    }
                    835 => {
                        if st.cur.held.is_some() {
                            new.push(Op::Reserve);
                        } else {
                            new.push(Op::Release);
                        }
                    }
                    836 => new.push(Op::Insert(d, 0, st.cur.nr_data + 3)),
                    837 => new.push(Op::ResizeData(st.cur.nr_data - 1)),
                    838 => {
                        let v = self.rng.gen_range(VSPACE..2 * VSPACE);
                        new.push(Op::Remove(d, v));
                    }
                    _ => new.push(Op::Provision(d, self.rng.gen_range(0..VSPACE))),
                }
            }
            for op in new {
                if matches!(op, Op::Provision(..)) {
                    chunk_provisions += 1;
                    self.provisions += 1;
                }
                st.apply(&op, None).unwrap();
                ops.push(op);
            }
        }
        match self.rng.gen_range(0..10) {
            0..=6 => ops.push(Op::Commit),
            7..=8 => ops.push(Op::Abort),
            _ => {} // ends without commit: aborted
        }
        ops
    }
}

fn random_scripts(seed: u64) {
    require_tools();
    let start = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut size: u64 = 16 << 20;
    let meta = new_meta(dir, "meta.img", size);
    let script = dir.join("script.txt");
    let mut gen = Gen {
        rng: StdRng::seed_from_u64(seed),
        family: HashMap::new(),
        depth: HashMap::new(),
        max_depth: 1,
        last_created: None,
        provisions: 0,
        probes: 0,
    };
    let nr_data = gen.rng.gen_range(6000..12000);
    let mut st = State::new(128, nr_data, size / BLOCK_SIZE as u64);

    // Chunk 0: format and a few devices, committed.
    let mut ops = vec![Op::Format(128, nr_data)];
    for d in 0..4 {
        ops.push(Op::CreateThin(d));
        gen.family.insert(d, d);
        gen.depth.insert(d, 1);
        for v in 0..100 {
            ops.push(Op::Provision(d, v * 3 + d));
        }
    }
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    check_disk(&format!("seed {seed} chunk 0"), &meta, &st);

    let chunks = 22;
    let mut ranges = 0;
    let mut aborted = 0;
    for c in 1..=chunks {
        // Once, grow the metadata file and the pool's metadata with it.
        let resize_meta = if c == chunks / 2 {
            size += 8 << 20;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&meta)
                .unwrap()
                .set_len(size)
                .unwrap();
            Some(size / BLOCK_SIZE as u64)
        } else {
            None
        };
        let ops = gen.chunk(&st, &meta, dir, resize_meta);
        if !matches!(ops.last(), Some(Op::Commit)) {
            aborted += 1;
        }
        run_checked(&meta, &script, &mut st, &ops);
        ranges = check_disk(&format!("seed {seed} chunk {c}"), &meta, &st);
    }
    let mappings: usize = st.committed.devs.values().map(|d| d.map.len()).sum();
    eprintln!(
        "seed {seed}: {} provisions generated, {} devices, {} mappings at the end, \
         {ranges} range_mappings, snapshot chains {} deep, {aborted} chunks aborted, {} probes, time {}, {:?}",
        gen.provisions,
        st.committed.devs.len(),
        mappings,
        gen.max_depth,
        gen.probes,
        st.committed.time,
        start.elapsed()
    );
    assert!(
        gen.provisions >= 5000,
        "too few provisions: {}",
        gen.provisions
    );
    assert!(ranges > 0, "no range_mapping in the final dump");
    assert!(st.committed.time >= 3, "too few snapshots");
    assert!(
        gen.max_depth >= 4,
        "no snapshot of a snapshot of a snapshot"
    );
}

#[test]
fn random_scripts_seed_1() {
    random_scripts(1);
}

#[test]
fn random_scripts_seed_2() {
    random_scripts(2);
}

#[test]
fn random_scripts_seed_3() {
    random_scripts(0xdead_beef);
}

#[test]
fn random_scripts_seed_4() {
    random_scripts(20_240_601);
}

// ---------------------------------------------------------------------------
// 3: thin_restore.

/// Builds a pool in the model alone, data blocks handed out in order.
fn simulate(ops: &[Op], st: &mut State, next: &mut u64) {
    for op in ops {
        let out = match op {
            Op::Provision(..) | Op::Alloc => {
                while st.cur.in_use(*next) || st.committed.in_use(*next) {
                    *next += 1;
                }
                *next += 1;
                (*next - 1).to_string()
            }
            _ => String::new(),
        };
        // For the other operations the model's own prediction stands.
        let out = if out.is_empty() {
            None
        } else {
            Some(out.as_str())
        };
        st.apply(op, out).unwrap();
    }
}

fn to_xml(p: &Pool) -> String {
    let mut s = format!(
        "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\" flags=\"0\" version=\"2\" \
         data_block_size=\"{}\" nr_data_blocks=\"{}\">\n",
        p.time, p.trans, p.block_size, p.nr_data
    );
    for (id, d) in &p.devs {
        let _ = writeln!(
            s,
            "  <device dev_id=\"{id}\" mapped_blocks=\"{}\" transaction=\"{}\" \
             creation_time=\"{}\" snap_time=\"{}\">",
            d.map.len(),
            d.trans,
            d.ctime,
            d.stime
        );
        let v: Vec<(u64, u64, u32)> = d.map.iter().map(|(k, (b, t))| (*k, *b, *t)).collect();
        let mut i = 0;
        while i < v.len() {
            let mut j = i + 1;
            while j < v.len()
                && v[j].0 == v[j - 1].0 + 1
                && v[j].1 == v[j - 1].1 + 1
                && v[j].2 == v[i].2
            {
                j += 1;
            }
            if j - i == 1 {
                let _ = writeln!(
                    s,
                    "    <single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"{}\"/>",
                    v[i].0, v[i].1, v[i].2
                );
            } else {
                let _ = writeln!(
                    s,
                    "    <range_mapping origin_begin=\"{}\" data_begin=\"{}\" length=\"{}\" time=\"{}\"/>",
                    v[i].0,
                    v[i].1,
                    j - i,
                    v[i].2
                );
            }
            i = j;
        }
        s.push_str("  </device>\n");
    }
    s.push_str("</superblock>\n");
    s
}

#[test]
fn thin_restore_interop() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = StdRng::seed_from_u64(77);

    // The pool, built in the model: an origin with runs, a chain of
    // snapshots that overwrite some blocks and share others, an unrelated
    // device, a shared insert.
    let mut st = State::new(128, 20_000, 4096);
    let mut ops = vec![Op::CreateThin(1)];
    ops.extend((0..600).map(|v| Op::Provision(1, v)));
    ops.extend((5000..5040).map(|v| Op::Provision(1, v)));
    ops.push(Op::CreateThin(5));
    for _ in 0..300 {
        ops.push(Op::Provision(5, rng.gen_range(0..100_000)));
    }
    ops.push(Op::CreateSnap(2, 1));
    ops.extend((0..600).step_by(7).map(|v| Op::Provision(2, v)));
    ops.push(Op::CreateSnap(3, 2));
    ops.extend((100..200).map(|v| Op::Provision(3, v)));
    ops.push(Op::Remove(3, 300));
    ops.push(Op::SetTid(0, 7));
    ops.push(Op::CreateThin(9));
    ops.push(Op::Commit);
    let mut next = 0;
    simulate(&ops, &mut st, &mut next);
    // Blocks shared across devices by insert: dev 1's block 3 in dev 2 at
    // 9000, and dev 1's block 10 twice more in dev 3.
    let b3 = st.cur.devs[&1].map[&3].0;
    let b10 = st.cur.devs[&1].map[&10].0;
    simulate(
        &[
            Op::Insert(2, 9000, b3),
            Op::Insert(3, 9001, b10),
            Op::Insert(3, 9002, b10),
            Op::Commit,
        ],
        &mut st,
        &mut next,
    );

    let xml = to_xml(&st.committed);
    let xml_path = dir.join("pool.xml");
    std::fs::write(&xml_path, &xml).unwrap();
    let meta = new_meta(dir, "meta.img", 16 << 20);
    let o = Command::new(THIN_RESTORE)
        .arg("-i")
        .arg(&xml_path)
        .arg("-o")
        .arg(&meta)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "thin_restore: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let ranges = check_disk("after thin_restore", &meta, &st);
    assert!(ranges > 0);

    let script = dir.join("script.txt");
    // Lookups of everything (and some unmapped blocks).
    let mut ops = Vec::new();
    for (id, d) in &st.committed.devs {
        for v in d.map.keys() {
            ops.push(Op::Lookup(*id, *v));
        }
        ops.push(Op::Lookup(*id, 77_777));
    }
    run_checked(&meta, &script, &mut st, &ops);

    // Changes.
    let mut ops = vec![Op::CreateSnap(10, 3)];
    ops.extend((0..50).map(|v| Op::Provision(10, v * 2)));
    ops.extend((600..700).map(|v| Op::Provision(1, v)));
    ops.extend((0..30).map(|v| Op::Provision(2, v)));
    ops.push(Op::Delete(5));
    ops.extend((150..160).map(|v| Op::Remove(3, v)));
    ops.push(Op::Remove(1, 3));
    ops.push(Op::RemoveRange(2, 100, 300));
    ops.push(Op::Insert(9, 0, b10));
    ops.push(Op::SetTid(7, 8));
    ops.push(Op::Lookup(10, 9001));
    ops.push(Op::Lookup(5, 0)); // deleted: error
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    check_disk("after thin_exec on thin_restore's metadata", &meta, &st);

    // And once more after reopening: everything still there.
    let mut ops = Vec::new();
    for (id, d) in &st.committed.devs {
        ops.extend(d.map.keys().step_by(3).map(|v| Op::Lookup(*id, *v)));
    }
    ops.push(Op::CreateThin(11));
    ops.push(Op::Provision(11, 5));
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    check_disk("after a second thin_exec", &meta, &st);
}

// ---------------------------------------------------------------------------
// 4: metadata snapshots.

#[test]
fn metadata_snapshot() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let meta = new_meta(dir, "meta.img", 16 << 20);
    let script = dir.join("script.txt");
    let mut st = State::new(128, 10_000, 4096);

    let mut ops = vec![
        Op::Format(128, 10_000),
        Op::CreateThin(1),
        Op::CreateThin(2),
    ];
    ops.extend((0..400).map(|v| Op::Provision(1, v)));
    ops.extend((0..100).map(|v| Op::Provision(2, v * 5)));
    ops.push(Op::CreateSnap(3, 1));
    ops.extend((0..400).step_by(4).map(|v| Op::Provision(3, v)));
    ops.push(Op::SetTid(0, 1));
    ops.push(Op::Reserve);
    // Changes after the reserve, in the same and the next transaction.
    ops.extend((0..400).step_by(3).map(|v| Op::Provision(1, v)));
    ops.push(Op::Delete(2));
    ops.extend((0..50).map(|v| Op::Remove(3, v)));
    ops.push(Op::SetTid(1, 2));
    ops.push(Op::CreateSnap(4, 3));
    ops.push(Op::Reserve); // already held: error
    ops.push(Op::Commit);
    ops.extend((1000..1100).map(|v| Op::Provision(4, v)));
    ops.push(Op::RemoveRange(1, 100, 250));
    ops.push(Op::CreateThin(2));
    ops.extend((0..20).map(|v| Op::Provision(2, v)));
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    let held = st
        .committed
        .held
        .clone()
        .expect("a metadata snapshot is held");
    assert_eq!(held.trans, 1);
    assert_eq!(held.devs.len(), 3);
    check_disk("metadata snapshot held", &meta, &st);

    // Release: every block only the snapshot used is free again (and not
    // reused before the release is committed).
    let mut ops = vec![Op::Release];
    ops.extend((20_000..20_300).map(|v| Op::Provision(1, v)));
    ops.push(Op::Release); // not held any more: error
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    assert!(st.committed.held.is_none());
    check_disk("metadata snapshot released", &meta, &st);

    // reserve commits what came before it; an abort then drops only the
    // snapshot.
    let ops = vec![
        Op::Provision(1, 30_000),
        Op::Reserve,
        Op::Provision(1, 30_001),
        Op::Abort,
    ];
    run_checked(&meta, &script, &mut st, &ops);
    assert!(st.committed.held.is_none());
    assert!(st.committed.devs[&1].map.contains_key(&30_000));
    check_disk("reserve then abort", &meta, &st);

    // A second snapshot; a release left uncommitted is dropped.
    let ops = vec![Op::Reserve, Op::Provision(4, 0), Op::Commit, Op::Release];
    run_checked(&meta, &script, &mut st, &ops);
    assert!(st.committed.held.is_some());
    check_disk("second metadata snapshot", &meta, &st);
}

// ---------------------------------------------------------------------------
// 5: corrupted blocks.

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Every node of the btree at `root` (levels: 2 for the mapping tree, whose
/// top-level leaves hold subtree roots; 1 for the device details).
fn tree_blocks(img: &[u8], root: u64, levels: u32, out: &mut BTreeSet<u64>) {
    if !out.insert(root) {
        return;
    }
    let b = &img[root as usize * BLOCK_SIZE..][..BLOCK_SIZE];
    assert_eq!(le64(b, 8), root, "block {root}: not where it says it is");
    let flags = le32(b, 4);
    let nr = le32(b, 16) as usize;
    let max = le32(b, 20) as usize;
    let values = 32 + 8 * max;
    if flags == 1 {
        for i in 0..nr {
            tree_blocks(img, le64(b, values + 8 * i), levels, out);
        }
    } else {
        assert_eq!(flags, 2, "block {root}: not a btree node");
        if levels > 1 {
            for i in 0..nr {
                tree_blocks(img, le64(b, values + 8 * i), levels - 1, out);
            }
        }
    }
}

/// "block N" appears in `s` (not as a prefix of a longer number).
fn names_block(s: &str, b: u64) -> bool {
    let pat = format!("block {b}");
    s.match_indices(&pat).any(|(i, _)| {
        !s[i + pat.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn corrupted_blocks() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let meta = new_meta(dir, "meta.img", 16 << 20);
    let script = dir.join("script.txt");
    let mut rng = StdRng::seed_from_u64(5);
    let mut st = State::new(128, 100_000, 4096);
    let mut ops = vec![Op::Format(128, 100_000), Op::CreateThin(1)];
    ops.extend((0..1500).map(|v| Op::Provision(1, v)));
    ops.push(Op::CreateSnap(2, 1));
    ops.extend((0..1500).step_by(3).map(|v| Op::Provision(2, v)));
    ops.push(Op::CreateThin(3));
    for _ in 0..600 {
        ops.push(Op::Provision(3, rng.gen_range(0..1_000_000)));
    }
    for d in 10..40 {
        ops.push(Op::CreateThin(d));
        ops.push(Op::Provision(d, d));
    }
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    check_disk("corruption base", &meta, &st);

    let img = std::fs::read(&meta).unwrap();
    let sb = &img[..BLOCK_SIZE];
    let mut live = BTreeSet::new();
    tree_blocks(&img, le64(sb, 320), 2, &mut live);
    tree_blocks(&img, le64(sb, 328), 1, &mut live);
    assert!(live.len() > 10, "too small a tree: {live:?}");

    // Lookups of every mapping of every device: every live node is read.
    let mut lookups = Vec::new();
    for (id, d) in &st.committed.devs {
        for v in d.map.keys() {
            lookups.push(Op::Lookup(*id, *v));
        }
        lookups.push(Op::Lookup(*id, 5_000_000));
    }
    let text = script_of(&lookups);
    let nonzero: Vec<u64> = (1..img.len() / BLOCK_SIZE)
        .filter(|&b| img[b * BLOCK_SIZE..][..BLOCK_SIZE].iter().any(|&x| x != 0))
        .map(|b| b as u64)
        .collect();
    let copy = dir.join("copy.img");
    let mut detected = 0;
    for &b in &nonzero {
        let mut bad = img.clone();
        bad[b as usize * BLOCK_SIZE + 100] ^= 0xff;
        std::fs::write(&copy, &bad).unwrap();
        let r = run_exec(&copy, &script, &text);
        assert_eq!(
            r.lines.len(),
            lookups.len(),
            "block {b}: stderr {}",
            r.stderr
        );
        let mut errors = 0;
        let mut named = false;
        let mut model = st.clone();
        for (op, out) in lookups.iter().zip(&r.lines) {
            if out.starts_with("error: ") {
                errors += 1;
                assert!(
                    out.contains("block "),
                    "corrupt block {b}: an error that names no block: {out}"
                );
                named |= names_block(out, b);
            } else {
                // No wrong answers: what is not an error is right.
                model
                    .apply(op, Some(out))
                    .unwrap_or_else(|e| panic!("corrupt block {b}: `{}`: {e}", op.line()));
            }
        }
        assert_eq!(
            r.code,
            if errors > 0 { 1 } else { 0 },
            "block {b}: exit code"
        );
        if live.contains(&b) {
            assert!(
                named,
                "corrupt btree node {b}: no error names it; errors: {:?}",
                r.lines
                    .iter()
                    .filter(|l| l.starts_with("error"))
                    .take(3)
                    .collect::<Vec<_>>()
            );
            detected += 1;
        }
    }
    eprintln!(
        "{} non-zero metadata blocks corrupted in turn, {} live btree nodes, all {detected} detected",
        nonzero.len(),
        live.len()
    );
}
