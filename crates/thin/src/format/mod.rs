//! dm-thin on-disk layouts: superblock, device details, block_time. Each
//! module opens with its byte diagram; format facts (limits, sizes) are
//! defined here once.

pub mod block_time;
pub mod device_details;
pub mod superblock;
