//! Errors of the persistent-data library.

use std::io;

/// Result of library calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with the block number where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error {op} block {block}: {source}")]
    Io {
        op: &'static str,
        block: u64,
        #[source]
        source: io::Error,
    },
    #[error("I/O error on device flush: {0}")]
    Flush(#[source] io::Error),
    #[error("block {block}: {kind} checksum mismatch")]
    Checksum { block: u64, kind: &'static str },
    #[error("block {block}: {kind} claims to be block {found}")]
    BlockNumber {
        block: u64,
        kind: &'static str,
        found: u64,
    },
    #[error("block {block}: bad {kind} magic {found:#x}")]
    Magic {
        block: u64,
        kind: &'static str,
        found: u64,
    },
    #[error("block {block}: corrupt {kind}: {reason}")]
    Corrupt {
        block: u64,
        kind: &'static str,
        reason: String,
    },
    #[error("block {block} is beyond the end of the device ({nr_blocks} blocks)")]
    OutOfBounds { block: u64, nr_blocks: u64 },
    #[error("block {block} is locked with validator {held}, not {wanted}")]
    ValidatorMismatch {
        block: u64,
        held: &'static str,
        wanted: &'static str,
    },
    #[error("block {block} is already locked")]
    Locked { block: u64 },
    #[error("no free space in the {0} space map")]
    NoSpace(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("key not found")]
    NotFound,
    #[error("the transaction failed earlier ({0}); abort it before going on")]
    Poisoned(String),
    #[error("metadata is read-only")]
    ReadOnly,
}

impl Error {
    pub fn corrupt(block: u64, kind: &'static str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            block,
            kind,
            reason: reason.into(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// True for errors that come from the device rather than from the caller.
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Flush(_))
    }
}
