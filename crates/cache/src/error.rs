//! Errors of the cache metadata layer.

/// Result of cache metadata calls.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Pdata(#[from] pdata::Error),
    #[error("{0}")]
    Invalid(String),
    /// Writing a tool's output.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("metadata already present on the device (use --force to overwrite it)")]
    AlreadyFormatted,
    #[error("no cache superblock: the metadata device is unformatted")]
    Unformatted,
    #[error("metadata uses unsupported features (incompat flags {0:#x})")]
    Incompatible(u32),
    #[error("cache block {cblock} is out of range (the cache has {nr_cache_blocks} blocks)")]
    CblockOutOfRange { cblock: u64, nr_cache_blocks: u32 },
    #[error("origin block {0} does not fit in 48 bits")]
    OblockOutOfRange(u64),
    #[error("cache block {0} is not mapped")]
    NotMapped(u32),
    #[error("origin block {oblock} is already cached in cache block {cblock}")]
    OblockMapped { oblock: u64, cblock: u32 },
    #[error("cannot shrink the cache: cache block {0} is mapped and dirty")]
    DirtyBlock(u32),
    #[error("the policy has no hints (hint size 0)")]
    NoHints,
    #[error("discard block {block} is out of range (the discard bitset has {nr_blocks} bits)")]
    DiscardOutOfRange { block: u64, nr_blocks: u64 },
}
