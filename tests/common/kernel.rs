//! Host-side pieces shared by the kernel tests: the guest build, scratch
//! folders, sparse images and data patterns.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

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

pub fn sparse_file(path: &Path, len: u64) {
    File::create(path)
        .and_then(|f| f.set_len(len))
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
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
