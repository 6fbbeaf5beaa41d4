//! Opening the devices and files a command line names, with the one error
//! message every tool gives when it cannot: what is not metadata (a
//! directory, FIFO, character device, empty or short file) is refused by
//! `pdata::io` at once; a writer holds a block device exclusively, so a
//! device the kernel uses (a live pool) is refused; a reader of live
//! metadata is told the answer may be inconsistent.

use anyhow::{bail, Context, Result};
pub use pdata::io::same_file;
use pdata::io::{BlockDevice, FileDevice};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Opens `path` (for writing when `writable`: then exclusively).
pub fn open_device(path: &Path, writable: bool) -> Result<FileDevice> {
    FileDevice::open(path, writable).with_context(|| format!("cannot open {}", path.display()))
}

/// As [`open_device`], shared between threads.
pub fn open_shared(path: &Path, writable: bool) -> Result<Arc<dyn BlockDevice>> {
    Ok(Arc::new(open_device(path, writable)?))
}

/// Opens `path` to read it while holding it exclusively (a block device
/// the kernel uses is refused; none can take it while we hold it).
pub fn open_exclusive(path: &Path) -> Result<Arc<dyn BlockDevice>> {
    let dev = FileDevice::open_with(path, false, true)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Arc::new(dev))
}

/// Opens a text input (XML) to read: a regular file, or a pipe such as
/// `/dev/stdin`; a directory is refused at once.
pub fn open_text_input(path: &Path) -> Result<std::fs::File> {
    let what = || format!("cannot open {}", path.display());
    if std::fs::metadata(path).with_context(what)?.is_dir() {
        bail!("{}: it is a directory, not a file", what());
    }
    std::fs::File::open(path).with_context(what)
}

/// Opens metadata `path` to read it. When the kernel holds the device (a
/// pool is active) and `snapshot` is false, warns on stderr that the live
/// metadata may change while it is read (stdout is left to the output).
pub fn open_reader(prog: &str, path: &Path, snapshot: bool) -> Result<Arc<dyn BlockDevice>> {
    let dev = open_device(path, false)?;
    if !snapshot && dev.held_by_kernel() {
        warn_live(prog, path);
    }
    Ok(Arc::new(dev))
}

/// The warning of [`open_reader`].
pub fn warn_live(prog: &str, path: &Path) {
    eprintln!(
        "{prog}: warning: {} is in use by the kernel (an active pool): its live metadata may change while it is read, so the answer may be inconsistent; -m reads the metadata snapshot",
        path.display()
    );
}

/// Refuses a run whose `output` is its `input` (it would read what it
/// overwrites).
pub fn distinct(input: &Path, output: &Path) -> Result<()> {
    if same_file(input, output) {
        bail!(
            "the input and the output are the same file ({}): write to another file or device",
            output.display()
        );
    }
    Ok(())
}

/// Where a tool writes its text: the file `-o` names (created), or stdout.
pub fn open_output(path: Option<&Path>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    })
}

/// Opens the output of a restore, which must exist (a block device, or a
/// file large enough), with the established tools' message otherwise.
pub fn open_restore_output(path: &Path) -> Result<Arc<dyn BlockDevice>> {
    if !path.exists() {
        bail!(
            "{} does not exist.\n\nThe output file should either be a block device,\nor an existing file.  The file needs to be large\nenough to hold the metadata.",
            path.display()
        );
    }
    open_shared(path, true)
}

/// Opens `path` for a long-running server: exclusively (a block device the
/// kernel holds is refused) and, for a regular file, under a `flock` (held
/// while the returned lock file lives; exclusive when `writable`), so that
/// two servers never share an image.
pub fn open_held(path: &Path, writable: bool) -> Result<(Arc<dyn BlockDevice>, std::fs::File)> {
    use std::os::unix::io::AsRawFd;
    let dev = FileDevice::open_with(path, writable, true)
        .with_context(|| format!("cannot open {} exclusively", path.display()))?;
    let lock =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let how = if writable {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), how | libc::LOCK_NB) } != 0 {
        bail!(
            "{} is in use by another process (it holds a lock on it)",
            path.display()
        );
    }
    Ok((Arc::new(dev), lock))
}
