//! dm-cache's tools over the shared command-line and XML layers, and
//! cache's XML schema.

pub mod cache_check;
pub mod cache_dump;
pub(super) mod cache_exec;
pub(super) mod cache_metadata_size;
pub mod cache_repair;
pub mod cache_restore;
pub(super) mod cache_writeback;
pub mod xml;

/// Older LVM passes a stray empty argument: it names no file.
pub(crate) fn drop_empty(operands: &mut Vec<String>) {
    operands.retain(|a| !a.is_empty());
}
