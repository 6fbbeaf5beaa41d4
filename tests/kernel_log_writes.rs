//! Kernel test: crash images built from the kernel's own metadata writes.
//!
//! Debian's dm-thin-pool runs under qemu (see tests/kernel/README.md) with its
//! metadata device behind dm-log-writes, which records every write the pool
//! makes to `$META`, in the order the writes became durable, with the flushes
//! between them (scenario `tests/kernel/scenarios/log-writes.sh`). The kernel
//! formats the zeroed metadata, creates thins, writes, snapshots, deletes,
//! discards and commits in several ways; the metadata device is small (128
//! blocks) so that the kernel wraps around and reuses freed blocks.
//!
//! The host parses the log and replays it onto a zeroed image to build crash
//! images: every flush point, subsets of the writes in flight between two
//! flushes (all of them for few writes, a seeded sample otherwise), and torn
//! 4 KiB writes (only some of their 512-byte sectors). Every image must be
//! unformatted (the superblock never written), or:
//!   * pass `pdt thin_check`,
//!   * hold, byte for byte, a superblock the kernel wrote, and
//!   * give, through `pdt thin_exec`, the transaction id and the very
//!     lookups of the metadata as that superblock committed it.
//!
//! Debian's thin_check and thin_dump check part of them too. The committed
//! states themselves are checked against what the scenario did, at each log
//! mark, and against Debian's thin_dump.
//!
//! Superblock writes are taken as atomic (the kernel relies on it); other
//! writes may tear. Nothing here skips itself: a guest that cannot be built
//! or booted fails the test. `PDT_LOG_WRITES_SEED=N` changes the sample.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

mod common;
use common::dump::parse_dump;
use common::kernel::{boot_with, pattern, Scratch, BLOCK, BS, PAGES};
use common::kernel_host::{parse_lookup, thin_exec};
use common::log_writes::*;
use common::oracle::debian_cmd;
use common::tool::{new_file as sparse_file, pdt, run, run_with_input};
use torture::rng::Rng;

const NR_BLOCKS: u64 = 256;
const THIN_SECTORS: u64 = NR_BLOCKS * BS;
const DATA_BYTES: u64 = NR_BLOCKS * BLOCK as u64;
const LOG_BYTES: u64 = 16 << 20;

/// Besides every flush point, one image in this many also goes through
/// Debian's thin_check and thin_dump.
const DEBIAN_EVERY: usize = 6;
const DEFAULT_SEED: u64 = 0x5eed_1066_0bad_cafe;

// ---------------------------------------------------------------- the plan

/// (thin device, virtual block) written with a block of its own pattern.
type Key = (u32, u64);

const W1: &[Key] = &[(0, 0), (0, 1), (0, 2), (0, 3), (0, 10), (0, 11), (0, 200)];
const W2: &[Key] = &[(1, 0), (1, 5), (0, 1), (0, 230), (2, 2), (2, 3), (2, 150)];
const W3: &[Key] = &[(2, 0), (2, 100)];
/// blkdiscard on thin 0: blocks 10 and 11 (shared with snapshot 2).
const DISCARD: (u32, u64, u64) = (0, 10, 2);
const W4: &[Key] = &[
    (0, 20),
    (0, 21),
    (0, 22),
    (0, 23),
    (0, 24),
    (0, 25),
    (2, 11),
];
/// One write and one commit ("set_transaction_id N N+1") each.
const ROUNDS: usize = 12;
/// Transaction id after the phases, before the rounds.
const T_BEFORE_ROUNDS: u64 = 4;

fn round_key(i: usize) -> Key {
    if i.is_multiple_of(2) {
        (0, 30 + i as u64)
    } else {
        (2, 40 + i as u64)
    }
}

/// What the metadata must say at a mark: the transaction id and, per thin
/// device, its mapped blocks with the tag of the write whose data they hold.
#[derive(Clone, Debug, Default)]
struct Expect {
    trans: u64,
    devs: BTreeMap<u32, BTreeMap<u64, String>>,
}

/// The scenario's marks in order, with what each must see (None: the pool
/// is not formatted yet).
fn expected_marks() -> Vec<(String, Option<Expect>)> {
    fn write(e: &mut Expect, keys: &[Key], tag: &str) {
        for &(d, v) in keys {
            e.devs
                .get_mut(&d)
                .unwrap_or_else(|| panic!("plan writes to thin {d} before creating it"))
                .insert(v, format!("{tag}-{d}-{v}"));
        }
    }
    let mut out = vec![("start".to_string(), None)];
    let mut e = Expect::default();
    out.push(("formatted".into(), Some(e.clone())));
    e.devs.insert(0, BTreeMap::new());
    out.push(("created-0".into(), Some(e.clone())));
    write(&mut e, W1, "w1");
    e.trans = 1;
    out.push(("t1".into(), Some(e.clone())));
    e.devs.insert(1, BTreeMap::new());
    let snap = e.devs[&0].clone();
    e.devs.insert(2, snap);
    write(&mut e, W2, "w2");
    e.trans = 2;
    out.push(("t2".into(), Some(e.clone())));
    e.devs.remove(&1);
    write(&mut e, W3, "w3");
    let (dd, from, n) = DISCARD;
    for v in from..from + n {
        e.devs.get_mut(&dd).unwrap().remove(&v);
    }
    out.push(("status".into(), Some(e.clone())));
    e.trans = 3;
    out.push(("t3".into(), Some(e.clone())));
    write(&mut e, W4, "w4");
    out.push(("suspended".into(), Some(e.clone())));
    e.trans = T_BEFORE_ROUNDS;
    out.push(("t4".into(), Some(e.clone())));
    for i in 0..ROUNDS {
        write(&mut e, &[round_key(i)], &format!("r{i}"));
        e.trans += 1;
        out.push((format!("t{}", e.trans), Some(e.clone())));
    }
    out.push(("removed".into(), Some(e.clone())));
    out
}

/// Every (dev, vblock) looked up in each image: all written ones, a few
/// never written, and device 3 that never exists.
fn lookup_keys() -> Vec<Key> {
    let mut keys: BTreeSet<Key> = BTreeSet::new();
    for k in W1.iter().chain(W2).chain(W3).chain(W4) {
        keys.insert(*k);
    }
    for i in 0..ROUNDS {
        keys.insert(round_key(i));
    }
    for d in 0..3 {
        for v in [0, 1, 2, 3, 10, 11, 200, 7, 255] {
            keys.insert((d, v));
        }
    }
    keys.insert((3, 0));
    keys.into_iter().collect()
}

/// The scenario's files: params, io lists and the blocks they write.
fn guest_files(dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let mut files = vec![];
    let mut put = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        files.push(p);
    };
    let (_, from, n) = DISCARD;
    put(
        "params",
        format!(
            "BS={BS}\nNR_BLOCKS={NR_BLOCKS}\nTHIN_SECTORS={THIN_SECTORS}\n\
             DISCARD_OFF={}\nDISCARD_LEN={}\n",
            from * BLOCK as u64,
            n * BLOCK as u64
        )
        .as_bytes(),
    );
    let mut list = |name: &str, keys: &[Key], tag: &dyn Fn(usize) -> String| {
        let mut text = String::new();
        for (i, &(d, v)) in keys.iter().enumerate() {
            let t = format!("{}-{d}-{v}", tag(i));
            let file = format!("{t}.bin");
            put(&file, &pattern(&t, BLOCK));
            let _ = writeln!(text, "w thin{d} {} {file}", v * PAGES);
        }
        put(name, text.as_bytes());
    };
    list("writes-1.txt", W1, &|_| "w1".into());
    list("writes-2.txt", W2, &|_| "w2".into());
    list("writes-3.txt", W3, &|_| "w3".into());
    list("writes-4.txt", W4, &|_| "w4".into());
    let rounds: Vec<Key> = (0..ROUNDS).map(round_key).collect();
    list("rounds.txt", &rounds, &|i| format!("r{i}"));
    files
}

// ---------------------------------------------------------------- tools

/// The first lines of a tool's output, for messages.
fn head(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut s = lines[..lines.len().min(12)].join("\n    ");
    if lines.len() > 12 {
        let _ = write!(s, "\n    ({} more lines)", lines.len() - 12);
    }
    s
}

/// stdout and stderr of a tool, as one text.
fn output_text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// A committed state may leak data blocks: dm-thin counts a block when it
/// allocates it for a write, and inserts the mapping only when the write's
/// I/O completes; a commit in between makes the count durable without the
/// mapping. Leaks are non-fatal (pdt exits 1 without
/// `--ignore-non-fatal-errors`, as 1.x does; Debian's 0.9.0 does not report
/// data leaks), so data leaks pass and anything else fails.
fn pdt_check(img: &Path) -> Result<(), String> {
    if run(pdt("thin_check").arg("-q").arg(img)).status.success() {
        return Ok(());
    }
    let r = run(pdt("thin_check").arg(img));
    let text = output_text(&r);
    let only_data_leaks = text
        .lines()
        .filter(|l| l.starts_with(' '))
        .all(|l| is_data_leak_line(l.trim()));
    let lenient = run(pdt("thin_check")
        .args(["-q", "--ignore-non-fatal-errors"])
        .arg(img));
    if only_data_leaks && lenient.status.success() {
        return Ok(());
    }
    Err(format!("pdt thin_check failed:\n    {}", head(&text)))
}

/// "data block N is counted once but nothing references it", or
/// "N data blocks have leaked".
fn is_data_leak_line(line: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = line.strip_prefix("data block ") {
        return rest
            .strip_suffix(" is counted once but nothing references it")
            .is_some_and(number);
    }
    line.strip_suffix(" data blocks have leaked")
        .is_some_and(number)
}

fn debian_check(img: &Path) -> Result<(), String> {
    let r = run(debian_cmd("thin_check").arg(img));
    if r.status.success() {
        Ok(())
    } else {
        Err(format!(
            "Debian thin_check failed:\n    {}",
            head(&output_text(&r))
        ))
    }
}

/// Mappings per device as Debian's thin_dump prints them.
#[derive(Debug, PartialEq, Eq)]
struct Dump {
    trans: u64,
    devs: BTreeMap<u32, BTreeMap<u64, (u64, u32)>>,
}

fn debian_dump(img: &Path) -> Result<Dump, String> {
    let r = run_with_input(debian_cmd("thin_dump").arg(img), None);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr),
    );
    if !r.status.success() {
        return Err(format!("Debian thin_dump failed:\n{stdout}{stderr}"));
    }
    let (d, _) = parse_dump(&stdout)?;
    let devs = d.devs.into_iter().map(|(id, dev)| (id as u32, dev.map));
    Ok(Dump {
        trans: d.trans,
        devs: devs.collect(),
    })
}

/// pdt thin_exec's answers to `script`, one line per op (errors included).
fn pdt_probe(img: &Path, script: &str) -> Vec<String> {
    thin_exec(img, script).lines
}

/// `set_transaction_id T T` (succeeds only if pdt reads transaction T; it
/// is never committed) and then one lookup per key.
fn probe_script(trans: u64, keys: &[Key]) -> String {
    let mut s = format!("set_transaction_id {trans} {trans}\n");
    for (d, v) in keys {
        let _ = writeln!(s, "lookup {d} {v}");
    }
    s
}

/// What the checks of one committed state found.
struct Reference {
    trans: u64,
    /// pdt's answers to probe_script(trans, keys)
    answers: Vec<String>,
    dump: Dump,
}

// ---------------------------------------------------------------- the test

#[test]
fn kernel_metadata_writes_replayed_as_crash_images() {
    let started = Instant::now();
    let seed = std::env::var("PDT_LOG_WRITES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let tmp = Scratch::new(
        "pdt-kernel-log-writes.",
        "images, log, console log, violating images",
    );
    let dir = tmp.path();
    let meta = dir.join("meta.img");
    let data = dir.join("data.img");
    let log = dir.join("log.img");
    sparse_file(&meta, META_BYTES as u64);
    sparse_file(&data, DATA_BYTES);
    sparse_file(&log, LOG_BYTES);
    let files = guest_files(&dir.join("guest"));

    // ---- boot: the kernel writes through dm-log-writes
    let boot = boot_with(
        "console",
        dir,
        &[&meta, &data, &log],
        "log-writes.sh",
        &files,
    );
    boot.assert_ok();

    // ---- the log
    let log_bytes = fs::read(&log).expect("read the log image");
    let (sector_size, events) =
        parse_log(&log_bytes).unwrap_or_else(|e| panic!("cannot parse the dm-log-writes log: {e}"));
    let r = replay(&events);
    let final_meta = fs::read(&meta).expect("read the metadata image");
    assert!(
        r.last == final_meta,
        "replaying the whole log does not give the metadata the kernel left ({})",
        match r.last.iter().zip(&final_meta).position(|(a, b)| a != b) {
            Some(i) => format!(
                "first difference at byte {i}, metadata block {}",
                i / META_BLOCK
            ),
            None => format!("lengths {} and {}", r.last.len(), final_meta.len()),
        }
    );
    eprintln!(
        "log: {} events (sector size {sector_size}): {:?}; {} flush intervals",
        events.len(),
        r.counts,
        r.intervals.len()
    );
    let mut reused = 0;
    let mut written: HashSet<usize> = HashSet::new();
    for ev in &events {
        if let Event::Write { off, data, .. } = ev {
            for b in (*off as usize / META_BLOCK)..(*off as usize + data.len()).div_ceil(META_BLOCK)
            {
                if b != 0 && !written.insert(b) {
                    reused += 1;
                }
            }
        }
    }
    assert!(
        reused > 0,
        "the kernel never wrote a metadata block twice: the scenario no longer makes it reuse freed blocks"
    );

    // ---- every committed state: Debian's tools and pdt agree, and the
    // marks see what the scenario did
    let keys = lookup_keys();
    let refdir = dir.join("commits");
    fs::create_dir_all(&refdir).unwrap();
    let mut by_superblock: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut refs: Vec<Reference> = vec![];
    let mut commit_ref: Vec<usize> = vec![];
    for (ci, c) in r.commits.iter().enumerate() {
        if let Some(&i) = by_superblock.get(&c.superblock) {
            commit_ref.push(i);
            continue;
        }
        let img = refdir.join(format!("commit-{ci}.img"));
        fs::write(&img, &c.image).unwrap();
        let what = format!(
            "committed state {ci} (superblock write at log event {}, {})",
            c.event,
            img.display()
        );
        if let Err(e) = debian_check(&img) {
            panic!("{what}: {e}");
        }
        if let Err(e) = pdt_check(&img) {
            panic!("{what}: {e}");
        }
        let dump = debian_dump(&img).unwrap_or_else(|e| panic!("{what}: {e}"));
        let answers = pdt_probe(&img, &probe_script(dump.trans, &keys));
        assert_eq!(
            answers.len(),
            keys.len() + 1,
            "{what}: pdt thin_exec gave {} lines for {} ops: {answers:?}",
            answers.len(),
            keys.len() + 1
        );
        assert_eq!(
            answers[0], "ok",
            "{what}: pdt does not read transaction id {} that Debian's thin_dump reports",
            dump.trans
        );
        for (k, line) in keys.iter().zip(&answers[1..]) {
            let want = dump.devs.get(&k.0).map(|m| m.get(&k.1).copied());
            let got = parse_lookup(line);
            let agree = match (&want, &got) {
                (None, Err(_)) => true,
                (Some(w), Ok(g)) => w == g,
                _ => false,
            };
            assert!(
                agree,
                "{what}: pdt lookup {} {} says {line:?}, Debian's thin_dump says {want:?} (None: no device)",
                k.0, k.1
            );
        }
        by_superblock.insert(c.superblock.clone(), refs.len());
        commit_ref.push(refs.len());
        refs.push(Reference {
            trans: dump.trans,
            answers,
            dump,
        });
    }
    eprintln!(
        "{} superblock writes, {} distinct committed states, all clean for Debian's thin_check and pdt",
        r.commits.len(),
        refs.len()
    );

    let want_marks = expected_marks();
    let got_names: Vec<&str> = r.marks.iter().map(|(n, _)| n.as_str()).collect();
    let mut want_names: Vec<&str> = want_marks.iter().map(|(n, _)| n.as_str()).collect();
    want_names.push("dm-log-writes-end");
    assert_eq!(got_names, want_names, "the log's marks");
    let mut mark_dblocks: BTreeMap<(String, Key), u64> = BTreeMap::new();
    for ((name, commit), (_, want)) in r.marks.iter().zip(&want_marks) {
        let Some(want) = want else {
            assert!(
                commit.is_none(),
                "mark '{name}': the kernel wrote a superblock before it formatted anything"
            );
            continue;
        };
        let rf = &refs[commit_ref
            [commit.unwrap_or_else(|| panic!("mark '{name}': no commit logged before it"))]];
        assert_eq!(
            rf.trans, want.trans,
            "mark '{name}': transaction id of the last commit"
        );
        for (k, line) in keys.iter().zip(&rf.answers[1..]) {
            let got = parse_lookup(line);
            match (want.devs.get(&k.0), &got) {
                (None, Err(_)) => {}
                (Some(m), Ok(Some((b, _)))) if m.contains_key(&k.1) => {
                    mark_dblocks.insert((name.clone(), *k), *b);
                }
                (Some(m), Ok(None)) if !m.contains_key(&k.1) => {}
                _ => panic!(
                    "mark '{name}' (transaction {}): thin {} block {}: pdt says {line:?}, the scenario wants {}",
                    want.trans,
                    k.0,
                    k.1,
                    match want.devs.get(&k.0) {
                        None => "no such device".to_string(),
                        Some(m) if m.contains_key(&k.1) => "mapped".to_string(),
                        Some(_) => "unmapped".to_string(),
                    }
                ),
            }
        }
    }
    // sharing: the snapshot keeps thin 0's blocks until one side writes
    let db = |m: &str, k: Key| mark_dblocks[&(m.to_string(), k)];
    for v in [0, 10, 11, 200] {
        assert_eq!(
            db("t2", (2, v)),
            db("t2", (0, v)),
            "t2: snapshot 2 block {v} should share thin 0's"
        );
    }
    for v in [1, 2, 3] {
        assert_ne!(
            db("t2", (2, v)),
            db("t2", (0, v)),
            "t2: block {v} was written on one side: sharing broken"
        );
    }
    for v in [10, 11] {
        assert_eq!(
            db("status", (2, v)),
            db("t2", (0, v)),
            "discarding thin 0 block {v} moved snapshot 2's"
        );
    }
    // the data the kernel's last commit points at
    let (_, Some(last)) = want_marks.last().unwrap() else {
        unreachable!()
    };
    let data_img = fs::read(&data).expect("read the data image");
    for (d, m) in &last.devs {
        for (v, tag) in m {
            let b = db("removed", (*d, *v)) as usize;
            assert!(
                data_img[b * BLOCK..(b + 1) * BLOCK] == pattern(tag, BLOCK)[..],
                "after removal, thin {d} block {v} -> data block {b}, which does not hold '{tag}'"
            );
        }
    }

    // ---- crash images
    let mut rng = Rng::new(seed);
    let specs = crash_specs(&r.intervals, &mut rng);
    let mut per_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut unformatted = 0usize;
    let mut duplicates = 0usize;
    let mut seen: HashSet<u64> = HashSet::new();
    struct Job {
        no: usize,
        what: String,
        img: Vec<u8>,
        reference: Option<usize>,
        debian: bool,
    }
    let mut jobs: Vec<Job> = vec![];
    for spec in &specs {
        let img = build(&r.intervals, spec);
        if !seen.insert(hash_of(&img)) {
            duplicates += 1;
            continue;
        }
        if img[..META_BLOCK].iter().all(|&b| b == 0) {
            unformatted += 1;
            continue;
        }
        *per_kind.entry(spec.kind).or_default() += 1;
        let reference = by_superblock.get(&img[..META_BLOCK]).copied();
        let no = jobs.len();
        jobs.push(Job {
            no,
            what: describe(&r.intervals, spec),
            img,
            reference,
            debian: spec.kind == Kind::FlushPoint || no.is_multiple_of(DEBIAN_EVERY),
        });
    }

    let violations: Mutex<Vec<String>> = Mutex::new(vec![]);
    let debian_checked = Mutex::new(0usize);
    let workdir = dir.join("crash");
    fs::create_dir_all(&workdir).unwrap();
    let (tx, rx) = mpsc::sync_channel::<&Job>(4);
    let rx = Mutex::new(rx);
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..2 {
            let (rx, violations, debian_checked, workdir, refs, keys) =
                (&rx, &violations, &debian_checked, &workdir, &refs, &keys);
            s.spawn(move || loop {
                let job = match rx.lock().unwrap().recv() {
                    Ok(j) => j,
                    Err(_) => break,
                };
                let path = workdir.join(format!("worker-{w}.img"));
                fs::write(&path, &job.img).unwrap();
                let mut bad: Vec<String> = vec![];
                match job.reference {
                    None => bad.push("its superblock is none the kernel wrote".into()),
                    Some(ri) => {
                        let rf = &refs[ri];
                        if let Err(e) = pdt_check(&path) {
                            bad.push(e);
                        }
                        let got = pdt_probe(&path, &probe_script(rf.trans, keys));
                        if got != rf.answers {
                            let at = got
                                .iter()
                                .zip(&rf.answers)
                                .position(|(a, b)| a != b)
                                .unwrap_or(got.len().min(rf.answers.len()));
                            bad.push(format!(
                                "pdt thin_exec disagrees with committed transaction {} at op {at} ({}): got {:?}, want {:?}",
                                rf.trans,
                                if at == 0 { "set_transaction_id".to_string() } else {
                                    keys.get(at - 1).map(|k| format!("lookup {} {}", k.0, k.1)).unwrap_or_default()
                                },
                                got.get(at),
                                rf.answers.get(at)
                            ));
                        }
                        if job.debian {
                            *debian_checked.lock().unwrap() += 1;
                            if let Err(e) = debian_check(&path) {
                                bad.push(e);
                            }
                            match debian_dump(&path) {
                                Ok(d) if d == rf.dump => {}
                                Ok(_) => bad.push(format!(
                                    "Debian thin_dump differs from committed transaction {}",
                                    rf.trans
                                )),
                                Err(e) => bad.push(e),
                            }
                        }
                    }
                }
                if !bad.is_empty() {
                    let keep = workdir.join(format!("violation-{}.img", job.no));
                    fs::write(&keep, &job.img).unwrap();
                    violations.lock().unwrap().push(format!(
                        "{} ({}):\n  {}",
                        job.what,
                        keep.display(),
                        bad.join("\n  ")
                    ));
                }
            });
        }
        for job in &jobs {
            tx.send(job).unwrap();
        }
        drop(tx);
    });
    let check_secs = t.elapsed().as_secs_f64();
    let violations = violations.into_inner().unwrap();
    let debian_checked = debian_checked.into_inner().unwrap();
    eprintln!(
        "crash images (seed {seed}): {} specs -> {} checked {:?}, {} unformatted, {} duplicates; \
         {debian_checked} also by Debian's thin_check/thin_dump; {:.1}s checking, {:.1}s in all",
        specs.len(),
        jobs.len(),
        per_kind,
        unformatted,
        duplicates,
        check_secs,
        started.elapsed().as_secs_f64()
    );
    assert!(
        violations.is_empty(),
        "{} of {} crash images violate crash consistency (first ones below); reproduce with \
         PDT_LOG_WRITES_SEED={seed}:\n{}",
        violations.len(),
        jobs.len(),
        violations
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        jobs.len() >= 100,
        "only {} crash images were checked; the scenario or the log changed",
        jobs.len()
    );
}
