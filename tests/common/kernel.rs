//! The guest side of the kernel tests: the guest build, booting it over a
//! pool (at most two at once), scratch folders and data patterns.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

/// Data block size used by every test, in 512-byte sectors (64 KiB).
pub const BS: u64 = 128;
pub const BLOCK: usize = BS as usize * 512;
/// 4 KiB pages per data block (io_list in the guest counts in pages).
pub const PAGES: u64 = (BLOCK / 4096) as u64;
/// Time limit for one boot; a normal one takes seconds.
pub const BOOT_TIMEOUT_SECS: u32 = 240;

/// tests/kernel: the qemu harness and its scenarios.
pub fn kernel_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel")
}

/// Builds the guest once per test process (build-guest.sh installs missing
/// packages and returns at once when the build is current).
pub fn build_guest() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let t = Instant::now();
        let out = Command::new("bash")
            .arg(kernel_dir().join("build-guest.sh"))
            .output()
            .map_err(|e| format!("cannot run bash build-guest.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "build-guest.sh failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        eprintln!("kernel guest ready ({:.1}s)", t.elapsed().as_secs_f64());
        Ok(())
    });
    if let Err(e) = result {
        panic!("the kernel test guest could not be built: {e}");
    }
}

/// A test's temporary folder. It is kept when the test fails, or always
/// with PDT_KEEP_KERNEL_TESTS=1.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    contents: &'static str,
}

impl Scratch {
    /// `prefix` names the folder; `contents` says what is kept in it.
    pub fn new(prefix: &str, contents: &'static str) -> Scratch {
        Scratch {
            dir: Some(
                tempfile::Builder::new()
                    .prefix(prefix)
                    .tempdir()
                    .expect("temp dir"),
            ),
            contents,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || std::env::var_os("PDT_KEEP_KERNEL_TESTS").is_some_and(|v| v == "1");
        if keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept {} ({})", dir.path().display(), self.contents);
                std::mem::forget(dir);
            }
        }
    }
}

/// Our binary for the guest, at `path`: stripped when `strip` is there
/// (a smaller initramfs, quicker to ship), else copied.
pub fn guest_pdt(path: &Path) -> PathBuf {
    let tool = env!("CARGO_BIN_EXE_pdt");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(path)
        .arg(tool)
        .status()
        .is_ok_and(|st| st.success());
    if !stripped {
        fs::copy(tool, path).expect("copy pdt");
    }
    path.to_path_buf()
}

/// `len` bytes of text that differ for every tag and every 16-byte cell.
pub fn pattern(tag: &str, len: usize) -> Vec<u8> {
    let mut v = String::with_capacity(len);
    for cell in 0..len / 16 {
        let _ = writeln!(v, "{:<8.8}{:07x}", tag, cell);
    }
    assert_eq!(v.len(), len);
    v.into_bytes()
}

// ---------------------------------------------------------------- guest

/// Lets at most two guests run at once (the machines have two cores).
pub struct Slot;
static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

impl Slot {
    pub fn take() -> Slot {
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
pub struct Boot {
    pub name: String,
    /// Exit status of run-guest.sh: the scenario's, 124 timeout, 125 no status.
    pub rc: Option<i32>,
    pub log: PathBuf,
    pub out: PathBuf,
    pub secs: f64,
    /// What run-guest.sh itself printed (timeouts, missing status...).
    pub messages: String,
}

impl Boot {
    /// The last lines of the guest console, for assertion messages.
    pub fn tail(&self) -> String {
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

    /// The guest's output file `name` holds `want`.
    pub fn expect_file(&self, name: &str, want: &[u8], what: &str) {
        let got = self.out_file(name);
        assert!(
            got == want,
            "{what}: {}\n{}",
            diff_at(&got, want),
            self.tail()
        );
    }

    pub fn out_file(&self, name: &str) -> Vec<u8> {
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
    pub fn status(&self, file: &str) -> BTreeMap<String, Vec<String>> {
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

    pub fn assert_ok(&self) {
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

/// Boots the guest over `disks` (`meta`, `data`, then `--extra` disks)
/// and runs `scenario` with `files` beside it.
pub fn boot_with(
    name: &str,
    dir: &Path,
    disks: &[&Path],
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
        .arg(&out);
    for extra in disks.iter().skip(2) {
        cmd.arg("--extra").arg(extra);
    }
    cmd.args(disks.iter().take(2))
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

/// Boots the guest over `meta` and `data`, runs `scenario` (a file of
/// tests/kernel/scenarios) with `files` beside it, and wants it to succeed.
pub fn boot_ok(
    name: &str,
    dir: &Path,
    meta: &Path,
    data: &Path,
    scenario: &str,
    files: &[PathBuf],
) -> Boot {
    let b = boot_with(name, dir, &[meta, data], scenario, files);
    b.assert_ok();
    b
}

/// Where two byte strings first differ, for messages.
pub fn diff_at(a: &[u8], b: &[u8]) -> String {
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

/// The guest kernel's version, from the build's build-info.txt.
pub fn guest_kver() -> String {
    build_guest();
    let dir = std::env::var_os("PDT_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/pdt-kernel")
        });
    let info = fs::read_to_string(dir.join("build-info.txt")).expect("build-info.txt");
    info.lines()
        .find_map(|l| l.strip_prefix("kver="))
        .expect("kver= in build-info.txt")
        .to_string()
}

/// Host programs and modules the guest image lacks, in folder `dir` (a
/// scenario file): `progs` go to `dir`/bin and the libraries ldd lists to
/// `dir`/lib (run with LD_LIBRARY_PATH); the modules `modprobe
/// --show-depends` lists for `modules`, decompressed, to `dir`/modules, in
/// insmod order in `dir`/modules.txt.
pub fn guest_extras(dir: &Path, progs: &[&str], modules: &[&str]) -> PathBuf {
    let (bin, lib, km) = (dir.join("bin"), dir.join("lib"), dir.join("modules"));
    for d in [&bin, &lib, &km] {
        fs::create_dir_all(d).expect("create extras folder");
    }
    let run = |cmd: &mut Command| -> Vec<u8> {
        let o = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        assert!(o.status.success(), "{cmd:?}: {:?}", o.status);
        o.stdout
    };
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    for p in progs {
        let name = Path::new(p).file_name().expect("program name");
        fs::copy(p, bin.join(name)).unwrap_or_else(|e| panic!("copy {p}: {e}"));
        for l in text(run(Command::new("ldd").arg(p))).lines() {
            // "libx.so => /path (addr)"; the loader is the guest's own.
            if let Some(path) = l.split("=> ").nth(1).and_then(|r| r.split(' ').next()) {
                let name = Path::new(path).file_name().expect("library name");
                fs::copy(path, lib.join(name)).unwrap_or_else(|e| panic!("copy {path}: {e}"));
            }
        }
    }
    let kver = guest_kver();
    let mut order = String::new();
    for m in modules {
        let deps = text(run(Command::new("modprobe").args([
            "-S",
            &kver,
            "--show-depends",
            m,
        ])));
        for l in deps.lines() {
            let Some(path) = l.strip_prefix("insmod ").and_then(|r| r.split(' ').next()) else {
                continue;
            };
            let base = Path::new(path).file_name().expect("module name");
            let base = base.to_string_lossy();
            let (name, unpack) = match base.rsplit_once('.') {
                Some((n, "xz")) => (n.to_string(), Some("xz")),
                Some((n, "zst")) => (n.to_string(), Some("zstd")),
                Some((n, "gz")) => (n.to_string(), Some("gzip")),
                _ => (base.to_string(), None),
            };
            if order.lines().any(|o| o == name) {
                continue;
            }
            let target = km.join(&name);
            match unpack {
                Some(tool) => {
                    let bytes = run(Command::new(tool).args(["-dc", path]));
                    fs::write(&target, bytes).expect("write module");
                }
                None => {
                    fs::copy(path, &target).expect("copy module");
                }
            }
            order.push_str(&name);
            order.push('\n');
        }
    }
    fs::write(dir.join("modules.txt"), order).expect("write modules.txt");
    dir.to_path_buf()
}
