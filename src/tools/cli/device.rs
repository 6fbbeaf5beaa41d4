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

/// Opens a pool's data device (or image file) to read it, and to write it
/// when `writable`; a block device exclusively, so one an active pool uses
/// is refused. Anything but a regular file or block device is refused
/// before it is opened. Also says whether it is a block device.
pub fn open_data(path: &Path, writable: bool) -> Result<(std::fs::File, bool)> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let what = || format!("cannot open {}", path.display());
    pdata::io::check_file_or_block_device(path).with_context(what)?;
    let is_block = std::fs::metadata(path)
        .with_context(what)?
        .file_type()
        .is_block_device();
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(writable);
    if is_block {
        o.custom_flags(libc::O_EXCL);
    }
    let f = o.open(path).with_context(|| {
        let busy = if is_block {
            " exclusively (is the pool active?)"
        } else {
            ""
        };
        format!("{}{busy}", what())
    })?;
    if is_block {
        // The kernel's targets write the device beneath its page cache:
        // what is cached may be stale.
        // SAFETY: a plain syscall on a descriptor we own; only advice.
        unsafe {
            use std::os::unix::io::AsRawFd;
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    Ok((f, is_block))
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
    errln!(
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

/// Refuses to overwrite what `path` holds unless `force` (`-f`): a regular
/// file that is not empty, or a block device whose first block is not
/// zero. A path that does not exist, or an empty file, is fine; anything
/// that is neither a file nor a block device is refused, with what it is.
pub fn refuse_overwrite(path: &Path, force: bool) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let what = || format!("cannot write {}", path.display());
    pdata::io::check_file_or_block_device(path).with_context(what)?;
    let holds_data = if meta.is_file() {
        meta.len() > 0
    } else {
        let mut first = vec![0u8; pdata::BLOCK_SIZE];
        let mut f = std::fs::File::open(path).with_context(what)?;
        let n = std::io::Read::read(&mut f, &mut first).with_context(what)?;
        first[..n].iter().any(|&b| b != 0)
    };
    if holds_data && !force {
        bail!(
            "{} is not empty: give -f (--force) to overwrite it",
            path.display()
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
