//! The library's reference-count audit, failing the test on a wrong count.

use pdata::io::BlockDevice;
use std::sync::Arc;

/// Audits the metadata committed on `dev`; panics naming the first block
/// whose count is wrong.
pub fn audit(dev: Arc<dyn BlockDevice>) {
    if let Err(e) = cache::audit::audit(dev) {
        panic!("{e}");
    }
}
