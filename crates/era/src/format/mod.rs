//! dm-era on-disk layouts: the superblock and the writeset value.

pub mod superblock;
pub mod writeset;
