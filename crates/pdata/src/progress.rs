//! The hook through which long operations say how far they are (for a
//! progress bar). Reports come a batch at a time, so a hook costs nothing
//! against the work.

/// Receives progress reports; shared with the threads doing the work.
pub trait ProgressHook: Sync {
    /// How many units the whole operation takes (known once it started).
    fn set_total(&self, total: u64);
    /// `n` more units done.
    fn add(&self, n: u64);
}

/// No reports.
pub struct NoProgress;

impl ProgressHook for NoProgress {
    fn set_total(&self, _: u64) {}
    fn add(&self, _: u64) {}
}
