//! Opening the device or file a command line names, with the one error
//! message every tool gives when it cannot.

use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::path::Path;
use std::sync::Arc;

/// Opens `path` (for writing when `writable`).
pub fn open_device(path: &Path, writable: bool) -> Result<FileDevice> {
    FileDevice::open(path, writable).with_context(|| format!("cannot open {}", path.display()))
}

/// As [`open_device`], shared between threads.
pub fn open_shared(path: &Path, writable: bool) -> Result<Arc<dyn BlockDevice>> {
    Ok(Arc::new(open_device(path, writable)?))
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
