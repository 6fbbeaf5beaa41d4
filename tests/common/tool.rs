//! Running our tools, and the files they work on.

pub use super::oracle::run;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The multi-call binary under test.
pub const PDT: &str = env!("CARGO_BIN_EXE_pdt");

/// `pdt TOOL`, ready for its arguments.
pub fn pdt(tool: &str) -> Command {
    let mut c = Command::new(PDT);
    c.arg(tool);
    c
}

/// Runs `cmd` with `stdin` as its input (none: no input); whatever its
/// exit status, it must not have panicked.
pub fn run_with_input(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(text) = stdin {
        // The tool may stop reading early; that shows in its output.
        let _ = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(text.as_bytes());
    }
    let o = child.wait_with_output().expect("wait for a tool");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "panic: {err}");
    o
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn ok(cmd: &mut Command) -> Vec<u8> {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A blank (all-zero, sparse) file of `bytes` bytes at `path`.
pub fn new_file(path: &Path, bytes: u64) {
    std::fs::File::create(path)
        .expect("create")
        .set_len(bytes)
        .expect("set_len");
}

/// A blank file `name` of `bytes` bytes in `dir`.
pub fn file(dir: &Path, name: &str, bytes: u64) -> PathBuf {
    let p = dir.join(name);
    new_file(&p, bytes);
    p
}

/// A FIFO `name` in `dir` (tools must refuse it before opening it, which
/// would wait for a writer).
pub fn fifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", p.display());
    p
}
