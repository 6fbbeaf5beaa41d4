//! persistent-data: the transactional, copy-on-write metadata engine behind
//! dm-thin, dm-cache and dm-era, byte-compatible with the Linux on-disk format.
//!
//! Layers, lowest first, each calling only downward: a module names only
//! modules on earlier rows, plus `checksum` and `error`, which all use
//! (tests/layers.rs checks it):
//!
//! ```text
//! io                  4 KiB block devices (file, memory), batched writes
//! block_manager       cache of blocks, read/write locks, validators, flush
//! tm_ops              TransactionOps: what the structures need of a
//!                     transaction (read, new_block, shadow, inc/dec)
//! btree               CoW B-trees over any TransactionOps; bulk TreeBuilder
//! array, bitset       dm-array (its spine is a btree), dm-bitset (an array)
//! space_map           reference counts: formats, the metadata and data
//!                     maps (written out through btrees), bulk builders
//! transaction_manager shadowing (copy-on-write), two-phase commit, poisoning;
//!                     implements TransactionOps
//! pack                metadata packs: every checksummed block of a device,
//!                     encoded and zlib-compressed (the 1.x archive format)
//! build, check        bulk building (the frame of a restore: block 0 zeroed
//!                     first, superblock last) and the generic checker
//!                     (batched read-and-verify, tree walker, node, array
//!                     and bitset verifiers, space-map comparison)
//! ```
//!
//! `superblock` holds the header every client's superblock starts with;
//! `live` and `audit` serve the clients' live metadata (refusing changes to
//! a dead transaction, a reference-count audit for tests).
//!
//! `progress` is the hook long operations report through (any layer).
//!
//! The transaction manager owns the metadata space map, as in the kernel; the
//! space map only reads blocks during a transaction and writes itself out
//! in `pre_commit` through `space_map::metadata::MetadataSmOwner`, which the
//! transaction manager implements, so no layer names the one above it (see
//! DESIGN.md).

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
pub mod pack;
pub mod progress;
pub mod space_map;
pub mod superblock;
pub mod tm_ops;
pub mod transaction_manager;

pub use error::{Error, Result};

/// Size of every metadata block, in bytes (the kernel hard-codes it).
pub const BLOCK_SIZE: usize = 4096;
/// A metadata block, as a fixed-size byte array.
pub type Block = [u8; BLOCK_SIZE];
