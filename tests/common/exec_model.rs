//! `pdt thin_exec` against a model of the pool, with Debian's
//! thin-provisioning-tools (0.9.0) as the oracle of what is on disk: the
//! model of a pool and its operations, running a script through
//! `pdt thin_exec` checking every output line, and comparing Debian's
//! `thin_check` and `thin_dump` with the model.

use super::dump::{diff, parse_dump, Dump, DumpDev};
use super::tool::PDT;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

pub const THIN_CHECK: &str = "/usr/sbin/thin_check";
pub const THIN_DUMP: &str = "/usr/sbin/thin_dump";
pub const THIN_RESTORE: &str = "/usr/sbin/thin_restore";

pub const BLOCK_SIZE: usize = 4096;
pub const MAX_DEVICE_ID: u64 = (1 << 24) - 1;
/// Placeholder for a data block the generator cannot know yet.
pub const PH: u64 = u64::MAX;

pub fn require_tools() {
    for t in [THIN_CHECK, THIN_DUMP, THIN_RESTORE] {
        assert!(
            Path::new(t).exists(),
            "{t} is missing: this test needs Debian's thin-provisioning-tools \
             (run `apt-get install thin-provisioning-tools`)"
        );
    }
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dev {
    pub map: BTreeMap<u64, (u64, u32)>,
    pub trans: u64,
    pub ctime: u32,
    pub stime: u32,
}

/// A held metadata snapshot: the pool as of `reserve_metadata_snap`.
#[derive(Debug)]
pub struct Held {
    pub devs: BTreeMap<u64, Dev>,
    pub time: u32,
    pub trans: u64,
    pub block_size: u32,
    pub blocks: HashSet<u64>,
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub devs: BTreeMap<u64, Dev>,
    /// Data block -> number of mappings of live devices that use it.
    pub refs: HashMap<u64, u32>,
    pub time: u32,
    pub trans: u64,
    pub nr_data: u64,
    pub block_size: u32,
    pub meta_blocks: u64,
    pub held: Option<Rc<Held>>,
}

impl Pool {
    pub fn new(block_size: u32, nr_data: u64, meta_blocks: u64) -> Pool {
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

    pub fn inc(&mut self, b: u64) {
        if b != PH {
            *self.refs.entry(b).or_insert(0) += 1;
        }
    }

    pub fn dec(&mut self, b: u64) {
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
    pub fn in_use(&self, b: u64) -> bool {
        self.refs.contains_key(&b) || self.held.as_ref().is_some_and(|h| h.blocks.contains(&b))
    }

    pub fn held_from(&self) -> Held {
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
pub enum Op {
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
    pub fn line(&self) -> String {
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
pub struct State {
    pub cur: Pool,
    pub committed: Pool,
    pub pending: BTreeSet<u64>,
}

impl State {
    pub fn new(block_size: u32, nr_data: u64, meta_blocks: u64) -> State {
        let p = Pool::new(block_size, nr_data, meta_blocks);
        State {
            cur: p.clone(),
            committed: p,
            pending: BTreeSet::new(),
        }
    }

    pub fn commit(&mut self) {
        self.pending.clear();
        self.committed = self.cur.clone();
    }

    pub fn abort(&mut self) {
        self.pending.clear();
        self.cur = self.committed.clone();
    }

    /// A block `alloc`/`provision` may hand out: in range, unused now, in
    /// the last commit (nor by either's metadata snapshot) and not pending.
    pub fn check_fresh(&self, b: u64) -> Result<(), String> {
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
    pub fn apply(&mut self, op: &Op, out: Option<&str>) -> Result<(), String> {
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

pub struct ExecOut {
    pub lines: Vec<String>,
    pub code: i32,
    pub stderr: String,
}

pub fn run_exec(meta: &Path, script: &Path, text: &str) -> ExecOut {
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

pub fn script_of(ops: &[Op]) -> String {
    let mut s = String::new();
    for op in ops {
        s.push_str(&op.line());
        s.push('\n');
    }
    s
}

/// Runs `ops` (one invocation: ends in an implicit abort) and checks every
/// output line against the model, which follows.
pub fn run_checked(meta: &Path, script: &Path, st: &mut State, ops: &[Op]) {
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
pub fn thin_check_clean(meta: &Path, snap: bool) -> u64 {
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

pub fn thin_dump(meta: &Path, snap: bool) -> (Dump, usize) {
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
    parse_dump(&String::from_utf8_lossy(&o.stdout)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn dump_devs(devs: &BTreeMap<u64, Dev>) -> BTreeMap<u64, DumpDev> {
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

pub fn expected_dump(p: &Pool) -> Dump {
    Dump {
        time: p.time,
        trans: p.trans,
        block_size: p.block_size,
        nr_data: Some(p.nr_data),
        devs: dump_devs(&p.devs),
    }
}

pub fn expected_snap_dump(h: &Held) -> Dump {
    Dump {
        time: h.time,
        trans: h.trans,
        block_size: h.block_size,
        nr_data: None,
        devs: dump_devs(&h.devs),
    }
}

/// Debian's tools must see exactly the committed model (and its metadata
/// snapshot, if one is held). Returns the number of range_mappings.
pub fn check_disk(what: &str, meta: &Path, st: &State) -> usize {
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
