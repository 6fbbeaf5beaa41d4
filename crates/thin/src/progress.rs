//! Progress hooks live in the engine; re-exported here for the tools.

pub use pdata::progress::{NoProgress, ProgressHook};
