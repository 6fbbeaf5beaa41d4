//! Errors of the era metadata layer.

/// Result of era metadata calls.
pub type Result<T, E = EraError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EraError {
    #[error(transparent)]
    Pdata(#[from] pdata::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("metadata already present on the device (use --force to overwrite it)")]
    AlreadyFormatted,
    #[error("no era superblock: the metadata device is unformatted")]
    Unformatted,
    #[error("block {block} is out of range (the origin has {nr_blocks} blocks)")]
    BlockOutOfRange { block: u64, nr_blocks: u32 },
    #[error("no current writeset (the kernel starts one on resume): checkpoint first")]
    NoWriteset,
    #[error("a metadata snapshot already exists")]
    SnapshotExists,
    #[error("there is no metadata snapshot")]
    NoSnapshot,
    #[error("the era counter is exhausted")]
    EraOverflow,
}
