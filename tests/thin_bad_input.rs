//! The thin tools on wrong input, and driven as LVM and the 1.x tools
//! drive them: every wrong input (a directory, FIFO, character device,
//! empty, short or odd-sized file, the input as the output) answered at
//! once with one clear error; LVM's empty argument ignored; a reader gone
//! (`| head`) ending the tool quietly; `-V` a version LVM accepts.

mod common;

use common::oracle::debian_cmd;
use common::pool::exec_pool;
use common::tool::{file, pdt, s, PDT};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longer than any of these runs takes; a tool still running then hangs.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `cmd` (no input) and kills it past [`LIMIT`], failing the test.
fn bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{cmd:?} panicked: {err}");
    o
}

/// A cause said twice: two equal parts in a row between ": ", or the
/// same OS error twice.
fn said_twice(line: &str) -> bool {
    let parts: Vec<&str> = line.split(": ").collect();
    parts.windows(2).any(|w| w[0] == w[1]) || line.matches("(os error").count() > 1
}

/// A pool with two devices, some mappings (one every other thin block, so
/// that each is a line of its own) and a held metadata snapshot.
fn pool(dir: &Path, nr_mappings: u64) -> PathBuf {
    let mut script = String::from("format 128 400000\ncreate_thin 1\n");
    for v in 0..nr_mappings {
        script += &format!("provision 1 {}\n", 2 * v);
    }
    script += "commit\ncreate_snap 2 1\nprovision 2 0\ncommit\nreserve_metadata_snap\ncommit\n";
    exec_pool(dir, "pool.md", 16 << 20, &script)
}

/// The wrong inputs, by name.
fn bad_inputs(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a plain syscall on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    vec![
        ("directory", dir.join("a-dir")),
        ("/dev/null", PathBuf::from("/dev/null")),
        ("/dev/zero", PathBuf::from("/dev/zero")),
        ("fifo", fifo),
        ("empty", file(dir, "empty", 0)),
        ("short", file(dir, "short", 100)),
        ("odd-sized", file(dir, "odd", 4 * 4096 + 100)),
    ]
}

#[test]
fn wrong_inputs_are_refused_at_once_with_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("a-dir")).unwrap();
    let good = pool(d, 10);
    let out = file(d, "out.md", 16 << 20);
    let data = file(d, "data", 0);
    let xml = d.join("pool.xml");
    std::fs::write(&xml, pdt_ok(pdt("thin_dump").arg(&good))).unwrap();
    let mig = d.join("migrated");
    let (packed, unpacked) = (d.join("out.pack"), d.join("unpacked.md"));
    let bad = bad_inputs(d);
    for (what, b) in &bad {
        let b = s(b);
        let runs: Vec<Vec<&str>> = vec![
            vec!["thin_check", b],
            vec!["thin_check", "--clear-needs-check-flag", b],
            vec!["thin_dump", b],
            vec!["thin_dump", "--repair", b],
            vec!["thin_dump", "-m", b],
            vec!["thin_ls", b],
            vec!["thin_delta", "--thin1", "1", "--thin2", "2", b],
            vec!["thin_rmap", "--region", "0..10", b],
            vec!["thin_repair", "-i", b, "-o", s(&out)],
            vec!["thin_repair", "-i", s(&good), "-o", b],
            vec!["thin_restore", "-i", s(&xml), "-o", b],
            vec!["thin_trim", "--metadata-dev", b, "--data-dev", s(&data)],
            vec!["thin_exec", b],
            vec![
                "thin_shrink",
                "-i",
                b,
                "-o",
                s(&out),
                "--data",
                s(&data),
                "--nr-blocks",
                "5",
            ],
            vec![
                "thin_shrink",
                "-i",
                s(&good),
                "-o",
                b,
                "--data",
                s(&data),
                "--nr-blocks",
                "5",
            ],
            vec![
                "thin_migrate",
                "--metadata-dev",
                b,
                "--data-dev",
                s(&data),
                "--dev-id",
                "1",
                "--dest-file",
                s(&mig),
            ],
            vec!["thin_metadata_pack", "-i", b, "-o", s(&packed), "-f"],
            vec!["thin_metadata_unpack", "-i", b, "-o", s(&unpacked)],
        ];
        for args in runs {
            let o = bounded(Command::new(PDT).args(&args));
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{what}: {args:?}: {err}");
            let first = err.lines().next().unwrap_or_default();
            assert!(!first.is_empty(), "{what}: {args:?}: no message");
            assert!(!said_twice(first), "{what}: {args:?}: {first}");
        }
    }
    // A directory as the XML to restore.
    let o = bounded(pdt("thin_restore").args(["-i", s(&d.join("a-dir")), "-o", s(&out)]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("directory"),
        "{err}"
    );

    // The input as the output, under another name: refused, untouched.
    let before = std::fs::read(&good).unwrap();
    let other_name = d.join(".").join("pool.md");
    for args in [
        vec!["thin_repair", "-i", s(&good), "-o", s(&other_name)],
        vec!["thin_dump", s(&good), "-o", s(&other_name)],
        vec!["thin_restore", "-i", s(&xml), "-o", s(&xml)],
    ] {
        let o = bounded(Command::new(PDT).args(&args));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("the same file"), "{err}");
    }
    assert_eq!(std::fs::read(&good).unwrap(), before);
}

/// [`bounded`], which must succeed; its stdout.
fn pdt_ok(cmd: &mut Command) -> Vec<u8> {
    let o = bounded(cmd);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{cmd:?}: {err}");
    o.stdout
}

/// LVM before 2023 passes `""` to the tools it runs; it is ignored.
#[test]
fn lvm_empty_argument_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = pool(d, 10);
    let out = file(d, "out.md", 16 << 20);
    let xml = d.join("pool.xml");
    std::fs::write(&xml, pdt_ok(pdt("thin_dump").arg(&good))).unwrap();
    let (g, o, x) = (s(&good), s(&out), s(&xml));
    for args in [
        vec!["thin_check", g, ""],
        vec!["thin_check", "", "-q", "--clear-needs-check-flag", g],
        vec!["thin_repair", "-i", g, "-o", o, ""],
        vec!["thin_restore", "", "-i", x, "-o", o],
        vec!["thin_dump", g, ""],
        vec!["thin_ls", "", g],
        vec!["thin_delta", "--thin1", "1", "--thin2", "2", g, ""],
        vec!["thin_rmap", "--region", "0..5", "", g],
    ] {
        pdt_ok(Command::new(PDT).args(&args));
    }
}

/// `pdt thin_dump IMG | head`: the tool ends by SIGPIPE with nothing on
/// stderr, as Debian's does.
#[test]
fn a_reader_gone_ends_the_tool_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let meta = pool(dir.path(), 30000);
    let m = s(&meta);
    let ended = |cmd: &mut Command| -> (Option<i32>, String) {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut head = [0u8; 100];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut head)
            .expect("the first bytes");
        // The pipe's read end is closed here.
        let o = child.wait_with_output().expect("wait");
        (o.status.signal(), String::from_utf8_lossy(&o.stderr).into())
    };
    let theirs = ended(debian_cmd("thin_dump").arg(m));
    assert_eq!(theirs.0, Some(libc::SIGPIPE), "Debian's thin_dump");
    for args in [
        vec!["thin_dump", m],
        vec!["thin_dump", "-f", "human_readable", m],
        vec!["thin_dump", "--repair", m],
        vec!["thin_rmap", "--region", "0..30000", m],
    ] {
        let (signal, err) = ended(Command::new(PDT).args(&args));
        assert_eq!(signal, Some(libc::SIGPIPE), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// `-V`: a bare `%u.%u.%u` on the first line, at least 0.7.0 (LVM's
/// minimum for the cache tools), the same for every tool.
#[test]
fn version_is_one_lvm_accepts() {
    let mut seen = Vec::new();
    for tool in [
        "thin_check",
        "thin_dump",
        "thin_restore",
        "thin_repair",
        "thin_ls",
        "thin_delta",
        "thin_rmap",
        "thin_trim",
        "thin_metadata_size",
        "thin_exec",
        "thin_shrink",
        "thin_migrate",
        "thin_metadata_pack",
        "thin_metadata_unpack",
    ] {
        for flag in ["-V", "--version"] {
            let out = pdt_ok(pdt(tool).arg(flag));
            let first = String::from_utf8(out).unwrap();
            let first = first.lines().next().unwrap_or_default().to_string();
            let nums: Vec<u32> = first.split('.').filter_map(|p| p.parse().ok()).collect();
            assert_eq!(nums.len(), 3, "{tool} {flag}: '{first}'");
            assert!(nums >= vec![0, 7, 0], "{tool}: {first}");
            seen.push(first);
        }
    }
    let whole = String::from_utf8(pdt_ok(Command::new(PDT).arg("-V"))).unwrap();
    seen.push(whole.trim_end().to_string());
    seen.dedup();
    assert_eq!(seen, vec![env!("CARGO_PKG_VERSION").to_string()]);
}
