//! The host side of the kernel tests: data images, `pdt thin_exec` scripts
//! and lookups, Debian's thin_check, the io lists handed to the guest and
//! the status lines it saves.

use super::kernel::{diff_at, Boot, Scratch, BLOCK, BS, PAGES};
use super::oracle::debian;
use super::tool::{new_file, pdt, run_with_input};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pool of the kernel oracle tests.
pub const NR_BLOCKS: u64 = 1024;
pub const POOL_SECTORS: u64 = NR_BLOCKS * BS;
pub const META_BYTES: u64 = 8 << 20;
pub const DATA_BYTES: u64 = NR_BLOCKS * BLOCK as u64;

pub fn write_data_block(data: &Path, dblock: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .open(data)
        .expect("open data image");
    f.seek(SeekFrom::Start(dblock * BLOCK as u64)).unwrap();
    f.write_all(bytes).expect("write data image");
}

pub fn read_data_block(data: &Path, dblock: u64) -> Vec<u8> {
    let mut f = File::open(data).expect("open data image");
    f.seek(SeekFrom::Start(dblock * BLOCK as u64)).unwrap();
    let mut v = vec![0; BLOCK];
    f.read_exact(&mut v).expect("read data image");
    v
}

/// Debian's thin_check on `meta`; Err holds its output.
pub fn thin_check(meta: &Path) -> Result<(), String> {
    let prog = debian("thin_check");
    let out = Command::new(&prog)
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

/// pdt's lookups `found` (of `lookups`) map every key of `expect` to a
/// data block of `data` that holds what `expect` says.
pub fn expect_pdt_maps(
    data: &Path,
    found: &BTreeMap<(u32, u64), Option<u64>>,
    expect: &BTreeMap<(u32, u64), Vec<u8>>,
    when: &str,
    boot: Option<&Boot>,
) {
    for (&(d, v), want) in expect {
        let tail = || boot.map(Boot::tail).unwrap_or_default();
        let dblock = found[&(d, v)]
            .unwrap_or_else(|| panic!("pdt: thin {d} block {v} unmapped {when}\n{}", tail()));
        let got = read_data_block(data, dblock);
        assert!(
            &got == want,
            "pdt: thin {d} block {v} -> data block {dblock}, which holds other data ({when}): {}",
            diff_at(&got, want)
        );
    }
}

/// A thin_exec script whose ops are numbered, so their output lines can be
/// picked by number.
#[derive(Default)]
pub struct Script {
    pub text: String,
    pub ops: usize,
}

impl Script {
    pub fn op(&mut self, line: impl AsRef<str>) -> usize {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
        self.ops += 1;
        self.ops - 1
    }
}

pub struct Exec {
    pub success: bool,
    pub lines: Vec<String>,
    pub stderr: String,
}

/// `pdt thin_exec` of `script` on `meta`: one output line per op.
pub fn thin_exec(meta: &Path, script: &str) -> Exec {
    exec("thin_exec", meta, script)
}

/// `pdt TOOL META` (thin_exec, cache_exec) fed `script`.
pub fn exec(tool: &str, meta: &Path, script: &str) -> Exec {
    let out = run_with_input(pdt(tool).arg(meta), Some(script));
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
pub fn thin_exec_ok(meta: &Path, script: &Script, what: &str) -> Vec<String> {
    exec_ok("thin_exec", meta, script, what)
}

/// `pdt TOOL` (thin_exec, cache_exec) runs `script`, every op succeeding;
/// one line per op.
pub fn exec_ok(tool: &str, meta: &Path, script: &Script, what: &str) -> Vec<String> {
    let r = exec(tool, meta, &script.text);
    let errors: Vec<&String> = r.lines.iter().filter(|l| l.starts_with("error")).collect();
    assert!(
        r.success && errors.is_empty() && r.lines.len() == script.ops,
        "pdt {tool} ({what}) failed: exit success={}, {} output lines for {} ops, errors {errors:?}\n\
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

pub fn parse_block(line: &str, what: &str) -> u64 {
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what}: expected a data block number, got {line:?}"))
}

/// A lookup answer: Ok(Some((data block, time))), Ok(None) for unmapped,
/// Err for an error line (no such device) or anything else.
pub fn parse_lookup(line: &str) -> Result<Option<(u64, u32)>, String> {
    let line = line.trim();
    if line == "unmapped" {
        return Ok(None);
    }
    if line.starts_with("error") {
        return Err(line.to_string());
    }
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        [b, t] => match (b.parse(), t.parse()) {
            (Ok(b), Ok(t)) => Ok(Some((b, t))),
            _ => Err(format!("bad lookup answer {line:?}")),
        },
        _ => Err(format!("bad lookup answer {line:?}")),
    }
}

/// Looks every (dev, vblock) up with pdt; returns the answers in order.
pub fn lookups(meta: &Path, keys: &[(u32, u64)], what: &str) -> BTreeMap<(u32, u64), Option<u64>> {
    let mut s = Script::default();
    for (d, v) in keys {
        s.op(format!("lookup {d} {v}"));
    }
    let lines = thin_exec_ok(meta, &s, what);
    keys.iter()
        .zip(&lines)
        .map(|(k, l)| {
            let answer = parse_lookup(l).unwrap_or_else(|e| {
                panic!(
                    "{what}: lookup {} {}: expected `DBLOCK TIME` or `unmapped`: {e}",
                    k.0, k.1
                )
            });
            (*k, answer.map(|(b, _)| b))
        })
        .collect()
}

/// Files handed to a scenario: params, io lists and the blocks to write.
pub struct GuestFiles {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// content of each file written by name
    pub written: BTreeMap<String, Vec<u8>>,
}

impl GuestFiles {
    pub fn new(dir: &Path) -> GuestFiles {
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

    pub fn file(&mut self, name: &str, bytes: &[u8]) {
        let p = self.dir.join(name);
        fs::write(&p, bytes).unwrap();
        self.files.push(p);
        self.written.insert(name.to_string(), bytes.to_vec());
    }

    pub fn list(&mut self, name: &str, lines: &[String]) {
        self.file(name, (lines.join("\n") + "\n").as_bytes());
    }
}

/// A test's scratch folder with blank metadata and data images of the
/// oracle tests' pool.
pub struct Images {
    pub tmp: Scratch,
    pub meta: PathBuf,
    pub data: PathBuf,
}

impl Images {
    pub fn new() -> Images {
        let tmp = Scratch::new("pdt-kernel-test.", "images, console logs, guest output");
        let meta = tmp.path().join("meta.img");
        let data = tmp.path().join("data.img");
        new_file(&meta, META_BYTES);
        new_file(&data, DATA_BYTES);
        Images { tmp, meta, data }
    }
}

/// io_list lines reading each (dev, vblock) of `keys` into $OUT/`name(dev, vblock)`.
pub fn read_lines(
    keys: impl IntoIterator<Item = (u32, u64)>,
    name: impl Fn(u32, u64) -> String,
) -> Vec<String> {
    keys.into_iter()
        .map(|(d, v)| read_line(&format!("thin{d}"), v, &name(d, v)))
        .collect()
}

/// Where the guest reads (dev, vblock) after its writes.
pub fn after_name(dev: u32, vblock: u64) -> String {
    format!("after-{dev}-{vblock}.bin")
}

/// io_list line reading block `vblock` of thin device `dev` into $OUT/`out`.
pub fn read_line(thin: &str, vblock: u64, out: &str) -> String {
    format!("r {thin} {} {PAGES} {out}", vblock * PAGES)
}

/// io_list line writing `file` at 4 KiB page `page` of thin device `thin`.
pub fn write_line(thin: &str, page: u64, file: &str) -> String {
    format!("w {thin} {page} {file}")
}

pub fn rname(dev: u32, vblock: u64) -> String {
    format!("r-{dev}-{vblock}.bin")
}

pub fn check_thin_check(meta: &Path, when: &str, boot: Option<&Boot>) {
    if let Err(e) = thin_check(meta) {
        panic!(
            "thin_check {when}: {e}\n{}",
            boot.map(Boot::tail).unwrap_or_default()
        );
    }
}

/// Pool status fields (after "thin-pool"): transaction id, used data blocks.
pub fn pool_status(fields: &[String]) -> (u64, u64) {
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
pub fn thin_status(fields: &[String]) -> (u64, Option<u64>) {
    match fields {
        [m, h, ..] => (
            m.parse()
                .unwrap_or_else(|_| panic!("bad thin status {fields:?}")),
            h.parse().ok(),
        ),
        _ => panic!("bad thin status {fields:?}"),
    }
}
