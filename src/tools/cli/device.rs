//! Opening the device or file a command line names, with the one error
//! message every tool gives when it cannot.

use anyhow::{Context, Result};
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
