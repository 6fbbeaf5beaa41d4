//! dm-thin on-disk layouts: superblock, device details, block_time.

pub mod block_time;
pub mod device_details;
pub mod superblock;
