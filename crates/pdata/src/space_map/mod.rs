//! Space maps: reference counts of blocks, 2 bits per block in bitmaps with
//! an overflow B-tree for counts of 3 and more.
//!
//! * [`metadata`]: the metadata device's own map (single index block), owned
//!   by the transaction manager;
//! * [`disk`]: the data device's map (index B-tree), living in metadata
//!   blocks allocated through the transaction manager.

pub mod builder;
pub mod counts;
pub mod disk;
pub mod format;
pub mod metadata;
pub mod spans;

pub use counts::RefCounts;
pub use disk::DiskSpaceMap;
pub use format::SmRoot;
