//! Errors of the thin metadata layer.

/// Result of thin metadata calls.
pub type Result<T, E = ThinError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ThinError {
    #[error(transparent)]
    Pdata(#[from] pdata::Error),
    #[error("thin device {0} does not exist")]
    NoSuchDevice(u64),
    #[error("thin device {0} already exists")]
    DeviceExists(u64),
    #[error("thin device id {0} is out of range (ids are below 2^24)")]
    BadDeviceId(u64),
    #[error("transaction id mismatch: the pool is at {current}, not {expected}")]
    TransactionId { current: u64, expected: u64 },
    #[error("block {vblock} of thin device {dev} is not mapped")]
    NotMapped { dev: u64, vblock: u64 },
    #[error("data block {0} is not allocated")]
    NotAllocated(u64),
    #[error("data block {block} is beyond the end of the pool ({nr_blocks} blocks)")]
    DataBlockOutOfRange { block: u64, nr_blocks: u64 },
    #[error("a metadata snapshot is already held")]
    SnapshotHeld,
    #[error("no metadata snapshot is held")]
    NoSnapshot,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("metadata already present on the device (use --force to overwrite it)")]
    AlreadyFormatted,
    #[error("no thin-pool superblock: the metadata device is unformatted")]
    Unformatted,
    #[error("metadata uses unsupported features (incompat flags {0:#x})")]
    Incompatible(u32),
}
