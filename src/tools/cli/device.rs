//! Opening the device or file a command line names, with the one error
//! message every tool gives when it cannot.

use anyhow::{Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

/// Opens `path` (for writing when `writable`): a regular file or a block
/// device. A FIFO, socket or character device is refused before opening
/// (opening a FIFO would wait for a writer).
pub fn open_device(path: &Path, writable: bool) -> Result<FileDevice> {
    if let Ok(m) = std::fs::metadata(path) {
        let t = m.file_type();
        if t.is_fifo() || t.is_socket() || t.is_char_device() {
            anyhow::bail!(
                "cannot open {}: not a regular file or block device",
                path.display()
            );
        }
    }
    FileDevice::open(path, writable).with_context(|| format!("cannot open {}", path.display()))
}

/// As [`open_device`], shared between threads.
pub fn open_shared(path: &Path, writable: bool) -> Result<Arc<dyn BlockDevice>> {
    Ok(Arc::new(open_device(path, writable)?))
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

/// Whether `a` and `b` name the same file (repairs refuse to write over
/// their input).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
