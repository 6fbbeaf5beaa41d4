//! dm-cache's tools, over the shared command-line layer ([`super::cli`]).

pub(super) mod cache_exec;
pub(super) mod cache_metadata_size;
pub(super) mod cache_writeback;
