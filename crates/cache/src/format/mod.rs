//! dm-cache on-disk layouts: the superblock and the mapping value.

pub mod mapping;
pub mod superblock;
