//! `pdt thin_exec` on seeded random pool workloads (many devices, snapshot
//! chains, thousands of mappings, shared-block overwrites, removals,
//! deletes, aborts, metadata snapshots, resizes), run in chunks. Every
//! output line is checked against a model kept from the tool's own outputs;
//! after every chunk Debian's `thin_check` (0.9.0) must be clean and
//! `thin_dump` (and `thin_dump -m`) must show the model.
//!
//! The tools are required: the test fails (does not skip) without them.

mod common;

use common::exec_model::*;
use common::tool::file as new_meta;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

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
