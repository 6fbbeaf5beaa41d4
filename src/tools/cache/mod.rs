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

/// `--metadata-version 1|2` (cache_restore; cache_repair for a lost
/// superblock).
pub(crate) const METADATA_VERSION: crate::tools::cli::Opt = crate::tools::cli::Opt::long(
    "metadata-version",
    crate::tools::cli::HasArg::Required,
    "metadata-version",
);

/// `--metadata-version`'s value: 1 or 2.
pub(crate) fn metadata_version(id: &str, value: &str) -> Result<u32, String> {
    match crate::tools::cli::number::<u32>(id, value)? {
        v @ (1 | 2) => Ok(v),
        v => Err(format!("--metadata-version {v}: only 1 and 2 exist")),
    }
}
