//! Kernel oracle: Debian's real dm-thin-pool, booted under qemu by
//! `tests/kernel/run-guest.sh`, reads and writes metadata that
//! `pdt thin_exec` produces, and pdt reads what the kernel wrote.
//!
//! Nothing here skips itself. `tests/kernel/build-guest.sh` installs the
//! Debian packages it needs (qemu-system-x86, linux-image-amd64,
//! busybox-static, dmsetup, thin-provisioning-tools, ...) and builds the guest
//! into `$PDT_KERNEL_DIR` (default `~/.cache/pdt-kernel`); a guest that cannot
//! be built or booted fails the test. Each boot takes about 3.5 s under TCG.
//! At most two guests run at the same time; each has its own console log.

use std::collections::{BTreeMap, BTreeSet};

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Data block size used by every test, in 512-byte sectors (64 KiB).
mod common;
use common::kernel::{build_guest, kernel_dir, pattern, sparse_file, Scratch};

const BS: u64 = 128;
const BLOCK: usize = BS as usize * 512;
/// 4 KiB pages per data block (io_list in the guest counts in pages).
const PAGES: u64 = (BLOCK / 4096) as u64;
const NR_BLOCKS: u64 = 1024;
const POOL_SECTORS: u64 = NR_BLOCKS * BS;
const META_BYTES: u64 = 8 << 20;
const DATA_BYTES: u64 = NR_BLOCKS * BLOCK as u64;
/// Time limit for one boot; a normal one takes seconds.
const BOOT_TIMEOUT_SECS: u32 = 240;

// ---------------------------------------------------------------- guest

/// Lets at most two guests run at once (the machines have two cores).
struct Slot;
static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

impl Slot {
    fn take() -> Slot {
        let mut n = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= 2 {
            n = FREED.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// One finished boot.
struct Boot {
    name: String,
    /// Exit status of run-guest.sh: the scenario's, 124 timeout, 125 no status.
    rc: Option<i32>,
    log: PathBuf,
    out: PathBuf,
    secs: f64,
    /// What run-guest.sh itself printed (timeouts, missing status...).
    messages: String,
}

impl Boot {
    /// The last lines of the guest console, for assertion messages.
    fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("(no log {}: {e})", self.log.display()));
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(50);
        format!(
            "---- last console lines of boot '{}' ({}, {:.1}s) ----\n{}\n---- run-guest.sh said ----\n{}----",
            self.name,
            self.log.display(),
            self.secs,
            lines[from..].join("\n"),
            self.messages
        )
    }

    fn out_file(&self, name: &str) -> Vec<u8> {
        let path = self.out.join(name);
        fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "guest output {} missing: {e}\n{}",
                path.display(),
                self.tail()
            )
        })
    }

    /// Parses a save_status file: device name -> fields after the target name.
    fn status(&self, file: &str) -> BTreeMap<String, Vec<String>> {
        let text = String::from_utf8_lossy(&self.out_file(file)).into_owned();
        text.lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() > 4).then(|| {
                    (
                        w[0].to_string(),
                        w[4..].iter().map(|s| s.to_string()).collect(),
                    )
                })
            })
            .collect()
    }

    fn assert_ok(&self) {
        let what = match self.rc {
            Some(0) => return,
            Some(124) => "timed out".to_string(),
            Some(125) => "gave no status (kernel panic or guest init error)".to_string(),
            Some(rc) => format!("scenario failed with exit status {rc}"),
            None => "run-guest.sh was killed by a signal".to_string(),
        };
        panic!("boot '{}' {what}\n{}", self.name, self.tail());
    }
}

/// Boots the guest over `meta` and `data` and runs `scenario`
/// (a file of tests/kernel/scenarios) with `files` beside it.
fn boot(
    name: &str,
    dir: &Path,
    meta: &Path,
    data: &Path,
    scenario: &str,
    files: &[PathBuf],
) -> Boot {
    build_guest();
    let log = dir.join(format!("{name}.log"));
    let out = dir.join(format!("{name}.out"));
    let mut cmd = Command::new("bash");
    cmd.arg(kernel_dir().join("run-guest.sh"))
        .args(["-q", "--timeout", &BOOT_TIMEOUT_SECS.to_string()])
        .arg("--log")
        .arg(&log)
        .arg("--out")
        .arg(&out)
        .arg(meta)
        .arg(data)
        .arg(kernel_dir().join("scenarios").join(scenario))
        .args(files);
    let _slot = Slot::take();
    let t = Instant::now();
    let res = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run run-guest.sh: {e}"));
    let boot = Boot {
        name: name.to_string(),
        rc: res.status.code(),
        log,
        out,
        secs: t.elapsed().as_secs_f64(),
        messages: String::from_utf8_lossy(&res.stderr).into_owned(),
    };
    eprintln!(
        "boot '{name}' ({scenario}): exit {:?} in {:.1}s",
        boot.rc, boot.secs
    );
    boot
}

fn boot_ok(
    name: &str,
    dir: &Path,
    meta: &Path,
    data: &Path,
    scenario: &str,
    files: &[PathBuf],
) -> Boot {
    let b = boot(name, dir, meta, data, scenario, files);
    b.assert_ok();
    b
}

// ---------------------------------------------------------------- host side

fn write_data_block(data: &Path, dblock: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .open(data)
        .expect("open data image");
    f.seek(SeekFrom::Start(dblock * BLOCK as u64)).unwrap();
    f.write_all(bytes).expect("write data image");
}

fn read_data_block(data: &Path, dblock: u64) -> Vec<u8> {
    let mut f = File::open(data).expect("open data image");
    f.seek(SeekFrom::Start(dblock * BLOCK as u64)).unwrap();
    let mut v = vec![0; BLOCK];
    f.read_exact(&mut v).expect("read data image");
    v
}

/// Where two byte strings first differ, for messages.
fn diff_at(a: &[u8], b: &[u8]) -> String {
    if a.len() != b.len() {
        return format!("lengths {} and {}", a.len(), b.len());
    }
    match a.iter().zip(b).position(|(x, y)| x != y) {
        None => "equal".into(),
        Some(i) => {
            let show = |s: &[u8]| {
                String::from_utf8_lossy(&s[i..(i + 16).min(s.len())])
                    .escape_debug()
                    .to_string()
            };
            format!(
                "first difference at byte {i}: got {:?}, want {:?}",
                show(a),
                show(b)
            )
        }
    }
}

/// Debian's thin_check on `meta`; Err holds its output.
fn thin_check(meta: &Path) -> Result<(), String> {
    let prog = if Path::new("/usr/sbin/thin_check").exists() {
        "/usr/sbin/thin_check"
    } else {
        "thin_check"
    };
    let out = Command::new(prog)
        .arg(meta)
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {} failed ({}):\n{}{}",
            meta.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A thin_exec script whose ops are numbered, so their output lines can be
/// picked by number.
#[derive(Default)]
struct Script {
    text: String,
    ops: usize,
}

impl Script {
    fn op(&mut self, line: impl AsRef<str>) -> usize {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
        self.ops += 1;
        self.ops - 1
    }
}

struct Exec {
    success: bool,
    lines: Vec<String>,
    stderr: String,
}

fn thin_exec(meta: &Path, script: &str) -> Exec {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pdt"))
        .arg("thin_exec")
        .arg(meta)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start pdt");
    // pdt may stop reading early; that shows in its output
    let _ = child.stdin.take().unwrap().write_all(script.as_bytes());
    let out = child.wait_with_output().expect("wait for pdt");
    Exec {
        success: out.status.success(),
        lines: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `script` and wants every op to succeed; returns one line per op.
fn thin_exec_ok(meta: &Path, script: &Script, what: &str) -> Vec<String> {
    let r = thin_exec(meta, &script.text);
    let errors: Vec<&String> = r.lines.iter().filter(|l| l.starts_with("error")).collect();
    assert!(
        r.success && errors.is_empty() && r.lines.len() == script.ops,
        "pdt thin_exec ({what}) failed: exit success={}, {} output lines for {} ops, errors {errors:?}\n\
         script:\n{}\nstdout:\n{}\nstderr:\n{}",
        r.success,
        r.lines.len(),
        script.ops,
        script.text,
        r.lines.join("\n"),
        r.stderr
    );
    r.lines
}

fn parse_block(line: &str, what: &str) -> u64 {
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what}: expected a data block number, got {line:?}"))
}

/// Parses a `lookup` answer: Some(data block) or None for `unmapped`.
fn parse_lookup(line: &str, what: &str) -> Option<u64> {
    if line.trim() == "unmapped" {
        return None;
    }
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        [b, t] if b.parse::<u64>().is_ok() && t.parse::<u32>().is_ok() => Some(b.parse().unwrap()),
        _ => panic!("{what}: expected `DBLOCK TIME` or `unmapped`, got {line:?}"),
    }
}

/// Looks every (dev, vblock) up with pdt; returns the answers in order.
fn lookups(meta: &Path, keys: &[(u32, u64)], what: &str) -> BTreeMap<(u32, u64), Option<u64>> {
    let mut s = Script::default();
    for (d, v) in keys {
        s.op(format!("lookup {d} {v}"));
    }
    let lines = thin_exec_ok(meta, &s, what);
    keys.iter()
        .zip(&lines)
        .map(|(k, l)| {
            (
                *k,
                parse_lookup(l, &format!("{what}: lookup {} {}", k.0, k.1)),
            )
        })
        .collect()
}

/// Files handed to a scenario: params, io lists and the blocks to write.
struct GuestFiles {
    dir: PathBuf,
    files: Vec<PathBuf>,
    /// content of each file written by name
    written: BTreeMap<String, Vec<u8>>,
}

impl GuestFiles {
    fn new(dir: &Path) -> GuestFiles {
        fs::create_dir_all(dir).unwrap();
        let mut g = GuestFiles {
            dir: dir.to_path_buf(),
            files: vec![],
            written: BTreeMap::new(),
        };
        g.file(
            "params",
            format!("BS={BS}\nNR_BLOCKS={NR_BLOCKS}\nTHIN_SECTORS={POOL_SECTORS}\n").as_bytes(),
        );
        g
    }

    fn file(&mut self, name: &str, bytes: &[u8]) {
        let p = self.dir.join(name);
        fs::write(&p, bytes).unwrap();
        self.files.push(p);
        self.written.insert(name.to_string(), bytes.to_vec());
    }

    fn list(&mut self, name: &str, lines: &[String]) {
        self.file(name, (lines.join("\n") + "\n").as_bytes());
    }
}

/// io_list line reading block `vblock` of thin device `dev` into $OUT/`out`.
fn read_line(thin: &str, vblock: u64, out: &str) -> String {
    format!("r {thin} {} {PAGES} {out}", vblock * PAGES)
}

/// io_list line writing `file` at 4 KiB page `page` of thin device `thin`.
fn write_line(thin: &str, page: u64, file: &str) -> String {
    format!("w {thin} {page} {file}")
}

fn rname(dev: u32, vblock: u64) -> String {
    format!("r-{dev}-{vblock}.bin")
}

fn check_thin_check(meta: &Path, when: &str, boot: Option<&Boot>) {
    if let Err(e) = thin_check(meta) {
        panic!(
            "thin_check {when}: {e}\n{}",
            boot.map(Boot::tail).unwrap_or_default()
        );
    }
}

/// Pool status fields (after "thin-pool"): transaction id, used data blocks.
fn pool_status(fields: &[String]) -> (u64, u64) {
    let used = fields
        .get(2)
        .and_then(|f| f.split('/').next())
        .and_then(|n| n.parse().ok());
    match (fields.first().and_then(|t| t.parse().ok()), used) {
        (Some(t), Some(u)) => (t, u),
        _ => panic!("cannot parse thin-pool status {fields:?}"),
    }
}

/// Thin status fields: mapped sectors, highest mapped sector (None if "-").
fn thin_status(fields: &[String]) -> (u64, Option<u64>) {
    match fields {
        [m, h, ..] => (
            m.parse()
                .unwrap_or_else(|_| panic!("bad thin status {fields:?}")),
            h.parse().ok(),
        ),
        _ => panic!("bad thin status {fields:?}"),
    }
}

// ---------------------------------------------------------------- test 1

/// pdt formats a pool, creates thins 1 and 2 and snapshot 3 of 1, and
/// provisions blocks; the host fills those blocks with patterns. The kernel
/// must activate it, return the patterns through the thins, return zeros
/// elsewhere, accept writes (breaking sharing in the snapshot), and commit
/// metadata that thin_check finds clean and pdt can look up.
#[test]
fn kernel_serves_pool_made_by_pdt() {
    let tmp = Scratch::new("pdt-kernel-test.", "images, console logs, guest output");
    let dir = tmp.path();
    let meta = dir.join("meta.img");
    let data = dir.join("data.img");
    sparse_file(&meta, META_BYTES);
    sparse_file(&data, DATA_BYTES);

    // ---- pdt builds the pool
    let mut s = Script::default();
    s.op(format!("format {BS} {NR_BLOCKS}"));
    s.op("create_thin 1");
    s.op("create_thin 2");
    s.op("set_transaction_id 0 1");
    let mut prov: Vec<((u32, u64), usize)> = vec![];
    for k in [(1, 0), (1, 1), (1, 2), (1, 700), (2, 0), (2, 5)] {
        prov.push((k, s.op(format!("provision {} {}", k.0, k.1))));
    }
    s.op("create_snap 3 1");
    for k in [(1, 3), (3, 9)] {
        prov.push((k, s.op(format!("provision {} {}", k.0, k.1))));
    }
    s.op("commit");
    let out = thin_exec_ok(&meta, &s, "build the pool");

    // (dev, vblock) -> data block, as pdt said
    let mut map: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for (k, i) in &prov {
        map.insert(
            *k,
            parse_block(&out[*i], &format!("provision {} {}", k.0, k.1)),
        );
    }
    // snapshot 3 shares what 1 had before it was taken
    for v in [0, 1, 2, 700] {
        map.insert((3, v), map[&(1, v)]);
    }
    let distinct: BTreeSet<u64> = map.values().copied().collect();
    assert_eq!(
        distinct.len(),
        8,
        "pdt provisioned some data block twice: {map:?}"
    );
    assert!(
        distinct.iter().all(|b| *b < NR_BLOCKS),
        "data block out of range: {map:?}"
    );

    // ---- the host writes a pattern into every provisioned block
    let mut content: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (k, _) in &prov {
        let b = map[k];
        let p = pattern(&format!("d{}v{}", k.0, k.1), BLOCK);
        write_data_block(&data, b, &p);
        content.insert(b, p);
    }
    check_thin_check(&meta, "on the metadata pdt wrote (before any boot)", None);

    // ---- guest plan
    let mut g = GuestFiles::new(&dir.join("guest"));
    let mut reads: Vec<String> = map
        .keys()
        .map(|&(d, v)| read_line(&format!("thin{d}"), v, &rname(d, v)))
        .collect();
    reads.push(read_line("thin2", 77, "zero-2-77.bin"));
    reads.push(read_line("thin3", 500, "zero-3-500.bin"));
    g.list("reads.txt", &reads);

    let partial = pattern("partial", BLOCK)[..4096].to_vec();
    for (name, bytes) in [
        ("w-2-300.bin", pattern("w2v300", BLOCK)), // new block in thin 2
        ("w-2-5.bin", pattern("w2v5", BLOCK)),     // overwrite of a block thin 2 owns
        ("w-3-0.bin", pattern("w3v0", BLOCK)),     // whole block shared with thin 1
        ("w-3-9.bin", pattern("w3v9", BLOCK)),     // overwrite of a block thin 3 owns
        ("w-3-1p.bin", partial.clone()),           // 4 KiB into a shared block (copy)
        ("w-1-700.bin", pattern("w1v700", BLOCK)), // the origin's copy of a shared block
    ] {
        g.file(name, &bytes);
    }
    g.list(
        "writes.txt",
        &[
            write_line("thin2", 300 * PAGES, "w-2-300.bin"),
            write_line("thin2", 5 * PAGES, "w-2-5.bin"),
            write_line("thin3", 0, "w-3-0.bin"),
            write_line("thin3", 9 * PAGES, "w-3-9.bin"),
            write_line("thin3", PAGES + 2, "w-3-1p.bin"),
            write_line("thin1", 700 * PAGES, "w-1-700.bin"),
        ],
    );
    let after_keys = [
        (1, 0),
        (1, 1),
        (1, 700),
        (2, 5),
        (2, 300),
        (3, 0),
        (3, 1),
        (3, 9),
        (3, 700),
    ];
    g.list(
        "reads-after.txt",
        &after_keys
            .iter()
            .map(|&(d, v)| read_line(&format!("thin{d}"), v, &format!("after-{d}-{v}.bin")))
            .collect::<Vec<_>>(),
    );

    let b = boot_ok("pdt-pool", dir, &meta, &data, "pdt-pool.sh", &g.files);

    // ---- what the kernel saw
    let st = b.status("status-before.txt");
    let (trans, used) = pool_status(&st["pool"]);
    assert_eq!(
        trans,
        1,
        "kernel sees transaction id {trans}, pdt set 1\n{}",
        b.tail()
    );
    assert_eq!(
        used,
        8,
        "kernel counts {used} used data blocks, pdt allocated 8 (data space map)\n{}",
        b.tail()
    );
    for (dev, blocks, highest) in [(1u32, 5u64, 700u64), (2, 2, 5), (3, 5, 700)] {
        let (mapped, high) = thin_status(&st[&format!("thin{dev}")]);
        assert_eq!(
            (mapped, high),
            (blocks * BS, Some(highest * BS + BS - 1)),
            "thin {dev}: kernel status (mapped sectors, highest mapped sector) disagrees with pdt's mappings\n{}",
            b.tail()
        );
    }
    for (&(d, v), dblock) in &map {
        let got = b.out_file(&rname(d, v));
        let want = &content[dblock];
        assert!(
            &got == want,
            "thin {d} block {v} (data block {dblock}) read by the kernel: {}\n{}",
            diff_at(&got, want),
            b.tail()
        );
    }
    for z in ["zero-2-77.bin", "zero-3-500.bin"] {
        let got = b.out_file(z);
        assert!(
            got.len() == BLOCK && got.iter().all(|&x| x == 0),
            "{z}: an unprovisioned block read non-zero\n{}",
            b.tail()
        );
    }

    // expected contents after the guest's writes
    let mut expect: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    expect.insert((1, 0), content[&map[&(1, 0)]].clone());
    expect.insert((1, 1), content[&map[&(1, 1)]].clone());
    expect.insert((1, 2), content[&map[&(1, 2)]].clone());
    expect.insert((3, 2), content[&map[&(1, 2)]].clone());
    expect.insert((2, 5), g.written["w-2-5.bin"].clone());
    expect.insert((2, 300), g.written["w-2-300.bin"].clone());
    expect.insert((3, 0), g.written["w-3-0.bin"].clone());
    expect.insert((3, 9), g.written["w-3-9.bin"].clone());
    expect.insert((1, 700), g.written["w-1-700.bin"].clone());
    expect.insert((3, 700), content[&map[&(1, 700)]].clone());
    let mut copied = content[&map[&(1, 1)]].clone();
    copied[8192..12288].copy_from_slice(&partial);
    expect.insert((3, 1), copied);
    for (d, v) in after_keys {
        let got = b.out_file(&format!("after-{d}-{v}.bin"));
        assert!(
            got == expect[&(d, v)],
            "thin {d} block {v} after the guest's writes: {}\n{}",
            diff_at(&got, &expect[&(d, v)]),
            b.tail()
        );
    }
    let st = b.status("status-after.txt");
    let (_, used) = pool_status(&st["pool"]);
    assert_eq!(
        used,
        12,
        "after the writes the kernel counts {used} used data blocks, want 12 (8 + thin2 block 300 + three broken shares; \
         the overwrites of thin 2 block 5 and thin 3 block 9 must be in place, i.e. pdt's mapping times must not \
         look older than the devices' snapshot times)\n{}",
        b.tail()
    );

    // ---- the metadata the kernel committed
    check_thin_check(&meta, "after the kernel used pdt's pool", Some(&b));
    let mut keys: Vec<(u32, u64)> = expect.keys().copied().collect();
    keys.extend([(1, 3), (2, 0), (2, 77), (3, 500)]);
    let found = lookups(&meta, &keys, "lookups after the kernel's writes");
    for (k, want) in &expect {
        let dblock = found[k].unwrap_or_else(|| {
            panic!(
                "pdt: thin {} block {} unmapped after the kernel wrote it\n{}",
                k.0,
                k.1,
                b.tail()
            )
        });
        let got = read_data_block(&data, dblock);
        assert!(
            &got == want,
            "thin {} block {}: pdt says data block {dblock}, which holds other data: {}",
            k.0,
            k.1,
            diff_at(&got, want)
        );
    }
    for k in [(3, 700), (1, 3), (2, 0), (2, 5), (3, 9)] {
        assert_eq!(
            found[&k],
            Some(map[&k]),
            "pdt lookup {k:?}: the kernel should not have moved this block"
        );
    }
    assert_eq!(
        found[&(3, 2)],
        found[&(1, 2)],
        "thin 1 and 3 block 2 should still share a data block"
    );
    assert_ne!(
        found[&(3, 0)],
        found[&(1, 0)],
        "writing thin 3 block 0 should have broken sharing"
    );
    assert_ne!(
        found[&(3, 1)],
        found[&(1, 1)],
        "writing into thin 3 block 1 should have broken sharing"
    );
    assert_ne!(
        found[&(1, 700)],
        found[&(3, 700)],
        "writing thin 1 block 700 should have broken sharing"
    );
    assert_eq!(found[&(2, 77)], None, "thin 2 block 77 was never written");
    assert_eq!(found[&(3, 500)], None, "thin 3 block 500 was never written");
}

// ---------------------------------------------------------------- test 2

/// The kernel formats a pool and writes to a thin and its snapshot; pdt then
/// reads those mappings, creates thin 7, provisions, snapshots 0 as 8,
/// deletes the kernel's snapshot 1 and commits. A second boot must find
/// everything, and both commits must pass thin_check.
#[test]
fn kernel_pool_extended_by_pdt() {
    let tmp = Scratch::new("pdt-kernel-test.", "images, console logs, guest output");
    let dir = tmp.path();
    let meta = dir.join("meta.img");
    let data = dir.join("data.img");
    sparse_file(&meta, META_BYTES);
    sparse_file(&data, DATA_BYTES);

    // ---- boot 1: the kernel formats and writes
    let mut g = GuestFiles::new(&dir.join("guest1"));
    let mut expect: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    let mut w0 = vec![];
    for v in [0u64, 1, 2, 3, 40] {
        let name = format!("w-0-{v}.bin");
        let p = pattern(&format!("k0v{v}"), BLOCK);
        g.file(&name, &p);
        w0.push(write_line("thin0", v * PAGES, &name));
        expect.insert((0, v), p.clone());
        expect.insert((1, v), p);
    }
    g.list("writes-0.txt", &w0);
    let mut w1 = vec![];
    for (d, v) in [(0u32, 1u64), (1, 2), (1, 50)] {
        let name = format!("w-{d}-{v}-b.bin");
        let p = pattern(&format!("k{d}v{v}b"), BLOCK);
        g.file(&name, &p);
        w1.push(write_line(&format!("thin{d}"), v * PAGES, &name));
        expect.insert((d, v), p);
    }
    g.list("writes-1.txt", &w1);
    g.list(
        "reads.txt",
        &expect
            .keys()
            .map(|&(d, v)| read_line(&format!("thin{d}"), v, &rname(d, v)))
            .collect::<Vec<_>>(),
    );

    let b1 = boot_ok(
        "kernel-format",
        dir,
        &meta,
        &data,
        "kernel-format.sh",
        &g.files,
    );
    for (&(d, v), want) in &expect {
        let got = b1.out_file(&rname(d, v));
        assert!(
            &got == want,
            "boot 1: thin {d} block {v} read back wrong: {}\n{}",
            diff_at(&got, want),
            b1.tail()
        );
    }
    check_thin_check(&meta, "after the kernel formatted the pool", Some(&b1));

    // ---- pdt reads the kernel's mappings
    let mut keys: Vec<(u32, u64)> = expect.keys().copied().collect();
    keys.extend([(0, 41), (1, 41), (0, 600)]);
    let found = lookups(&meta, &keys, "lookups in the kernel-made pool");
    for (k, want) in &expect {
        let dblock = found[k].unwrap_or_else(|| {
            panic!(
                "pdt: thin {} block {} unmapped in the kernel's pool\n{}",
                k.0,
                k.1,
                b1.tail()
            )
        });
        let got = read_data_block(&data, dblock);
        assert!(
            &got == want,
            "pdt: thin {} block {} -> data block {dblock}, which holds other data: {}",
            k.0,
            k.1,
            diff_at(&got, want)
        );
    }
    for k in [(0, 41), (1, 41), (0, 600)] {
        assert_eq!(
            found[&k], None,
            "pdt: thin {} block {} should be unmapped",
            k.0, k.1
        );
    }
    let kernel_blocks: BTreeSet<u64> = found.values().flatten().copied().collect();

    // ---- pdt extends the pool
    let mut s = Script::default();
    s.op("set_transaction_id 1 2");
    s.op("create_thin 7");
    let p70 = s.op("provision 7 0");
    let p73 = s.op("provision 7 3");
    let p0600 = s.op("provision 0 600");
    s.op("create_snap 8 0");
    s.op("delete 1");
    s.op("commit");
    let out = thin_exec_ok(&meta, &s, "extend the kernel's pool");
    let mut host: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for ((d, v), i) in [((7u32, 0u64), p70), ((7, 3), p73), ((0, 600), p0600)] {
        let blk = parse_block(&out[i], &format!("provision {d} {v}"));
        assert!(
            blk < NR_BLOCKS && !kernel_blocks.contains(&blk),
            "pdt provisioned data block {blk} for thin {d} block {v}: in use or out of range"
        );
        let p = pattern(&format!("h{d}v{v}"), BLOCK);
        write_data_block(&data, blk, &p);
        host.insert((d, v), blk);
        expect.insert((d, v), p);
    }
    assert_eq!(
        host.values().collect::<BTreeSet<_>>().len(),
        3,
        "pdt provisioned one data block twice: {host:?}"
    );
    check_thin_check(&meta, "after pdt extended the kernel's pool", None);

    // what thin 0 holds now is also what snapshot 8 holds
    let dev0: Vec<(u64, Vec<u8>)> = expect
        .iter()
        .filter(|((d, _), _)| *d == 0)
        .map(|((_, v), p)| (*v, p.clone()))
        .collect();
    for (v, p) in &dev0 {
        expect.insert((8, *v), p.clone());
    }
    expect.retain(|(d, _), _| *d != 1);

    // ---- boot 2: the kernel opens the pool again
    let mut g = GuestFiles::new(&dir.join("guest2"));
    let mut reads: Vec<String> = expect
        .keys()
        .map(|&(d, v)| read_line(&format!("thin{d}"), v, &rname(d, v)))
        .collect();
    reads.push(read_line("thin7", 1, "zero-7-1.bin"));
    g.list("reads.txt", &reads);
    let mut writes = vec![];
    let mut after: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    // thin 0 and snapshot 8 share their blocks: writing either side must
    // leave the other alone. Blocks 1 and 600 were mapped at the pool's
    // current time (after the kernel's snapshot), so only the snapshot times
    // pdt recorded for 0 and 8 make the kernel see them as shared.
    for v in [1, 600] {
        after.insert((8, v), expect[&(0, v)].clone());
    }
    after.insert((0, 0), expect[&(0, 0)].clone());
    for (d, v) in [(0u32, 5u64), (7, 1), (8, 0), (7, 3), (0, 1), (0, 600)] {
        let name = format!("w-{d}-{v}.bin");
        let p = pattern(&format!("k2d{d}v{v}"), BLOCK);
        g.file(&name, &p);
        writes.push(write_line(&format!("thin{d}"), v * PAGES, &name));
        after.insert((d, v), p);
    }
    g.list("writes.txt", &writes);
    g.list(
        "reads-after.txt",
        &after
            .keys()
            .map(|&(d, v)| read_line(&format!("thin{d}"), v, &format!("after-{d}-{v}.bin")))
            .collect::<Vec<_>>(),
    );

    let b2 = boot_ok(
        "kernel-reopen",
        dir,
        &meta,
        &data,
        "kernel-reopen.sh",
        &g.files,
    );
    let st = b2.status("status-before.txt");
    let (trans, used) = pool_status(&st["pool"]);
    let mut live: BTreeSet<u64> = host.values().copied().collect();
    live.extend(
        keys.iter()
            .filter(|(d, _)| *d == 0)
            .filter_map(|k| found[k]),
    );
    assert_eq!(
        trans,
        2,
        "boot 2: kernel sees transaction {trans}, pdt set 2\n{}",
        b2.tail()
    );
    assert_eq!(used, live.len() as u64, "boot 2: kernel counts {used} used data blocks, want {} (thin 1's own blocks freed by delete)\n{}", live.len(), b2.tail());
    for (dev, n) in [(0u32, 6u64), (7, 2), (8, 6)] {
        let (mapped, _) = thin_status(&st[&format!("thin{dev}")]);
        assert_eq!(
            mapped,
            n * BS,
            "boot 2: thin {dev} mapped sectors per the kernel\n{}",
            b2.tail()
        );
    }
    for (&(d, v), want) in &expect {
        let got = b2.out_file(&rname(d, v));
        assert!(
            &got == want,
            "boot 2: thin {d} block {v} read wrong: {}\n{}",
            diff_at(&got, want),
            b2.tail()
        );
    }
    let z = b2.out_file("zero-7-1.bin");
    assert!(
        z.iter().all(|&x| x == 0),
        "boot 2: thin 7 block 1 (never written) is not zero\n{}",
        b2.tail()
    );
    for (&(d, v), want) in &after {
        let got = b2.out_file(&format!("after-{d}-{v}.bin"));
        assert!(
            &got == want,
            "boot 2: thin {d} block {v} after writing: {}\n{}",
            diff_at(&got, want),
            b2.tail()
        );
    }
    check_thin_check(&meta, "after the second boot", Some(&b2));

    let keys: Vec<(u32, u64)> = after.keys().copied().collect();
    let found2 = lookups(&meta, &keys, "lookups after the second boot");
    for (k, want) in &after {
        let dblock = found2[k]
            .unwrap_or_else(|| panic!("pdt: thin {} block {} unmapped after boot 2", k.0, k.1));
        let got = read_data_block(&data, dblock);
        assert!(
            &got == want,
            "pdt: thin {} block {} -> data block {dblock} holds other data: {}",
            k.0,
            k.1,
            diff_at(&got, want)
        );
    }
    assert_eq!(
        found2[&(7, 3)],
        Some(host[&(7, 3)]),
        "overwriting thin 7 block 3 (not shared) should be in place"
    );
}

// ---------------------------------------------------------------- test 3

/// Metadata writes fail (dm-flakey error_writes) while the pool commits
/// transaction 2. What is left on disk must be transaction 1 exactly: clean
/// for thin_check, and pdt must see only transaction 1's mappings.
#[test]
fn failed_kernel_commit_leaves_transaction_1() {
    let tmp = Scratch::new("pdt-kernel-test.", "images, console logs, guest output");
    let dir = tmp.path();
    let meta = dir.join("meta.img");
    let data = dir.join("data.img");
    sparse_file(&meta, META_BYTES);
    sparse_file(&data, DATA_BYTES);

    let mut g = GuestFiles::new(&dir.join("guest"));
    let a = pattern("txn1", BLOCK);
    let bpat = pattern("txn2", BLOCK);
    g.file("a.bin", &a);
    g.file("b.bin", &bpat);
    g.list(
        "writes-1.txt",
        &(0..4)
            .map(|v| write_line("thin0", v * PAGES, "a.bin"))
            .collect::<Vec<_>>(),
    );
    g.list(
        "writes-2.txt",
        &(100..104)
            .map(|v| write_line("thin0", v * PAGES, "b.bin"))
            .collect::<Vec<_>>(),
    );
    g.list(
        "reads.txt",
        &[
            read_line("rthin0", 0, "ro-0.bin"),
            read_line("rthin0", 100, "ro-100.bin"),
        ],
    );

    let b = boot_ok(
        "flakey-commit",
        dir,
        &meta,
        &data,
        "flakey-commit.sh",
        &g.files,
    );
    let st = b.status("status-ro.txt");
    let (trans, _) = pool_status(&st["rpool"]);
    assert_eq!(
        trans,
        1,
        "read-only reactivation: kernel sees transaction {trans}, want 1\n{}",
        b.tail()
    );
    assert!(
        b.out_file("ro-0.bin") == a,
        "read-only reactivation: thin 0 block 0 lost\n{}",
        b.tail()
    );
    assert!(
        b.out_file("ro-100.bin").iter().all(|&x| x == 0),
        "read-only reactivation: uncommitted block 100 is mapped\n{}",
        b.tail()
    );

    check_thin_check(&meta, "after the failed commit", Some(&b));
    let keys: Vec<(u32, u64)> = (0..4).chain(100..104).map(|v| (0, v)).collect();
    let found = lookups(&meta, &keys, "lookups after the failed commit");
    for v in 0..4u64 {
        let dblock = found[&(0, v)]
            .unwrap_or_else(|| panic!("pdt: committed thin 0 block {v} is unmapped\n{}", b.tail()));
        let got = read_data_block(&data, dblock);
        assert!(
            got == a,
            "pdt: thin 0 block {v} -> data block {dblock} holds other data: {}",
            diff_at(&got, &a)
        );
    }
    for v in 100..104u64 {
        assert_eq!(
            found[&(0, v)],
            None,
            "pdt: thin 0 block {v} was never committed but is mapped\n{}",
            b.tail()
        );
    }
    // the on-disk transaction id must be 1: only then does this op succeed
    let mut s = Script::default();
    s.op("set_transaction_id 1 3");
    s.op("abort");
    thin_exec_ok(&meta, &s, "transaction id after the failed commit");
}

// ---------------------------------------------------------------- test 4

/// Runs `pdt TOOL ARGS` (or Debian's with `debian`), wants success, returns stdout.
fn tool_ok(debian: bool, tool: &str, args: &[&str]) -> String {
    let mut cmd = if debian {
        Command::new(format!("/usr/sbin/{tool}"))
    } else {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pdt"));
        c.arg(tool);
        c
    };
    let out = cmd.args(args).output().expect("run a thin tool");
    assert!(
        out.status.success(),
        "{} {tool} {args:?} failed ({}):\n{}{}",
        if debian { "debian" } else { "pdt" },
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pdt thin_restore` builds a pool from XML: thin 1, thin 2 a snapshot of 1
/// sharing 50 blocks, thin 3 on its own. The kernel must serve the restored
/// mappings, break sharing on writes, take a metadata snapshot and commit;
/// then pdt's thin_check, thin_dump and thin_dump -m must agree with
/// Debian's on what the kernel wrote. Then the top-level mapping root is
/// lost, and the pool pdt thin_repair rebuilds must be served by the kernel
/// with every mapping.
#[test]
fn kernel_serves_pool_restored_by_pdt() {
    let tmp = Scratch::new("pdt-kernel-test.", "images, console logs, guest output");
    let dir = tmp.path();
    let meta = dir.join("meta.img");
    let data = dir.join("data.img");
    sparse_file(&meta, META_BYTES);
    sparse_file(&data, DATA_BYTES);

    // (dev, vblock) -> data block. Thin 2 was snapshotted from thin 1 at
    // time 1: mappings older than that are shared.
    let mut map: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for v in 0..50 {
        map.insert((1, v), v);
        map.insert((2, v), v);
    }
    for v in 100..120 {
        map.insert((1, v), 100 + v);
    }
    map.insert((2, 60), 300);
    for v in 0..10 {
        map.insert((3, v), 400 + v);
    }
    let xml = format!(
        r#"<superblock uuid="" time="2" transaction="5" flags="0" version="2" data_block_size="{BS}" nr_data_blocks="{NR_BLOCKS}">
  <device dev_id="1" mapped_blocks="70" transaction="3" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="50" time="0"/>
    <range_mapping origin_begin="100" data_begin="200" length="20" time="1"/>
  </device>
  <device dev_id="2" mapped_blocks="51" transaction="4" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="50" time="0"/>
    <single_mapping origin_block="60" data_block="300" time="2"/>
  </device>
  <device dev_id="3" mapped_blocks="10" transaction="5" creation_time="2" snap_time="0">
    <range_mapping origin_begin="0" data_begin="400" length="10" time="2"/>
  </device>
</superblock>
"#
    );
    let xml_path = dir.join("pool.xml");
    fs::write(&xml_path, &xml).unwrap();
    let meta_s = meta.to_str().unwrap();
    tool_ok(
        false,
        "thin_restore",
        &["-i", xml_path.to_str().unwrap(), "-o", meta_s],
    );
    assert_eq!(
        tool_ok(false, "thin_dump", &[meta_s]),
        xml,
        "pdt thin_dump of the restored pool differs from the XML restored"
    );
    check_thin_check(&meta, "on the metadata pdt restored", None);
    let content = |dblock: u64| pattern(&format!("b{dblock}"), BLOCK);
    for &dblock in map.values() {
        write_data_block(&data, dblock, &content(dblock));
    }

    let mut g = GuestFiles::new(&dir.join("guest"));
    let reads: Vec<(u32, u64)> = vec![(1, 0), (1, 49), (1, 110), (2, 0), (2, 49), (2, 60), (3, 9)];
    let mut lines: Vec<String> = reads
        .iter()
        .map(|&(d, v)| read_line(&format!("thin{d}"), v, &rname(d, v)))
        .collect();
    lines.push(read_line("thin2", 100, "zero-2-100.bin"));
    g.list("reads.txt", &lines);
    for (name, bytes) in [
        ("w-2-0.bin", pattern("w2v0", BLOCK)), // shared with thin 1: copy
        ("w-1-49.bin", pattern("w1v49", BLOCK)), // shared with thin 2: copy
        ("w-3-20.bin", pattern("w3v20", BLOCK)), // new block
        ("w-1-500.bin", pattern("w1v500", BLOCK)), // after the metadata snapshot
    ] {
        g.file(name, &bytes);
    }
    g.list(
        "writes.txt",
        &[
            write_line("thin2", 0, "w-2-0.bin"),
            write_line("thin1", 49 * PAGES, "w-1-49.bin"),
            write_line("thin3", 20 * PAGES, "w-3-20.bin"),
        ],
    );
    g.list(
        "writes-after-snap.txt",
        &[write_line("thin1", 500 * PAGES, "w-1-500.bin")],
    );
    let after: Vec<(u32, u64)> = vec![(1, 0), (2, 0), (1, 49), (2, 49), (3, 20), (1, 500)];
    g.list(
        "reads-after.txt",
        &after
            .iter()
            .map(|&(d, v)| read_line(&format!("thin{d}"), v, &format!("after-{d}-{v}.bin")))
            .collect::<Vec<_>>(),
    );

    let b = boot_ok(
        "restored-pool",
        dir,
        &meta,
        &data,
        "restored-pool.sh",
        &g.files,
    );

    let st = b.status("status-before.txt");
    let (trans, used) = pool_status(&st["pool"]);
    assert_eq!(
        (trans, used),
        (5, 81),
        "kernel status of the restored pool: (transaction, used data blocks)\n{}",
        b.tail()
    );
    for &(d, v) in &reads {
        let got = b.out_file(&rname(d, v));
        let want = content(map[&(d, v)]);
        assert!(
            got == want,
            "thin {d} block {v} read by the kernel: {}\n{}",
            diff_at(&got, &want),
            b.tail()
        );
    }
    let z = b.out_file("zero-2-100.bin");
    assert!(z.iter().all(|&x| x == 0), "thin 2 block 100 is unmapped");
    let expect: BTreeMap<(u32, u64), Vec<u8>> = [
        ((1, 0), content(0)),
        ((2, 0), g.written["w-2-0.bin"].clone()),
        ((1, 49), g.written["w-1-49.bin"].clone()),
        ((2, 49), content(49)),
        ((3, 20), g.written["w-3-20.bin"].clone()),
        ((1, 500), g.written["w-1-500.bin"].clone()),
    ]
    .into_iter()
    .collect();
    for (k, want) in &expect {
        let got = b.out_file(&format!("after-{}-{}.bin", k.0, k.1));
        assert!(
            &got == want,
            "thin {} block {} after the writes: {}\n{}",
            k.0,
            k.1,
            diff_at(&got, want),
            b.tail()
        );
    }

    // ---- what the kernel committed, read by pdt and by Debian
    tool_ok(false, "thin_check", &[meta_s]);
    check_thin_check(&meta, "after the kernel used the restored pool", Some(&b));
    let ours = tool_ok(false, "thin_dump", &[meta_s]);
    assert_eq!(ours, tool_ok(true, "thin_dump", &[meta_s]), "thin_dump");
    // Debian takes nr_data_blocks from the snapshot's zeroed space-map root.
    let snap_ours = tool_ok(false, "thin_dump", &["-m", meta_s]);
    let snap_debian = tool_ok(true, "thin_dump", &["-m", meta_s]).replace(
        "nr_data_blocks=\"0\"",
        &format!("nr_data_blocks=\"{NR_BLOCKS}\""),
    );
    assert_eq!(snap_ours, snap_debian, "thin_dump -m");
    assert!(
        ours.contains("origin_block=\"500\"") && !snap_ours.contains("origin_block=\"500\""),
        "the write after the metadata snapshot belongs to the live dump only:\n{ours}\n{snap_ours}"
    );
    assert!(
        snap_ours.contains("origin_block=\"20\""),
        "the metadata snapshot holds the writes before it:\n{snap_ours}"
    );

    // ---- lose the top-level mapping root; pdt thin_repair must rebuild a
    // pool that the kernel serves with every mapping the dump above showed.
    let root = {
        let dev: std::sync::Arc<dyn pdata::io::BlockDevice> = std::sync::Arc::new(
            pdata::io::FileDevice::open(&meta, false).expect("open the metadata"),
        );
        thin::ThinMetadata::open(dev, false)
            .expect("read the superblock")
            .superblock()
            .data_mapping_root
    };
    let mut f = OpenOptions::new().write(true).open(&meta).unwrap();
    f.seek(SeekFrom::Start(root * 4096)).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    assert!(
        thin_check(&meta).is_err(),
        "zeroing block {root} went unnoticed"
    );
    let repaired = dir.join("repaired.img");
    sparse_file(&repaired, META_BYTES);
    let repaired_s = repaired.to_str().unwrap();
    tool_ok(false, "thin_repair", &["-i", meta_s, "-o", repaired_s]);
    check_thin_check(&repaired, "on the metadata pdt repaired", None);
    assert_eq!(
        tool_ok(false, "thin_dump", &[repaired_s]),
        ours,
        "the repaired pool lost or changed mappings"
    );
    let mut g2 = GuestFiles::new(&dir.join("guest2"));
    let mut want: Vec<((u32, u64), Vec<u8>)> = expect.into_iter().collect();
    for k in [(1, 110), (2, 60), (3, 9)] {
        want.push((k, content(map[&k])));
    }
    g2.list(
        "reads.txt",
        &want
            .iter()
            .map(|&((d, v), _)| read_line(&format!("thin{d}"), v, &rname(d, v)))
            .collect::<Vec<_>>(),
    );
    let b2 = boot_ok(
        "repaired-pool",
        dir,
        &repaired,
        &data,
        "read-pool.sh",
        &g2.files,
    );
    for ((d, v), bytes) in &want {
        let got = b2.out_file(&rname(*d, *v));
        assert!(
            &got == bytes,
            "thin {d} block {v} read by the kernel from the repaired pool: {}\n{}",
            diff_at(&got, bytes),
            b2.tail()
        );
    }
    check_thin_check(
        &repaired,
        "after the kernel used the repaired pool",
        Some(&b2),
    );
}
