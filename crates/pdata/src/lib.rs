//! persistent-data: the transactional, copy-on-write metadata engine behind
//! dm-thin, dm-cache and dm-era, byte-compatible with the Linux on-disk format.
//!
//! Layers, each calling only downward:
//!
//! ```text
//! io                  4 KiB block devices (file, memory)
//! block_manager       cache of blocks, read/write locks, validators, flush
//! transaction_manager shadowing (copy-on-write), two-phase commit, poisoning
//! space_map, btree,   reference counts, CoW B-trees, arrays, bitsets
//! array, bitset
//! check               the generic checker: batched read-and-verify, tree
//!                     walker, node/array/bitset verifiers, space map counts
//! ```
//!
//! `progress` is the hook long operations report through (any layer).
//!
//! The transaction manager owns the metadata space map, as in the kernel; the
//! space map only reads blocks during a transaction and writes itself out
//! through the transaction manager in `pre_commit` (see DESIGN.md).

pub mod array;
pub mod audit;
pub mod bitset;
pub mod block_manager;
pub mod btree;
pub mod build;
pub mod check;
pub mod checksum;
pub mod error;
pub mod io;
pub mod live;
pub mod progress;
pub mod space_map;
pub mod superblock;
pub mod transaction_manager;

pub use error::{Error, Result};

/// Size of every metadata block, in bytes (the kernel hard-codes it).
pub const BLOCK_SIZE: usize = 4096;
/// A metadata block, as a fixed-size byte array.
pub type Block = [u8; BLOCK_SIZE];
