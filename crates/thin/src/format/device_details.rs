//! `disk_device_details`: the 24-byte value of the details tree.

use pdata::block_manager::{le32, le64, put_le32, put_le64};

pub const DEVICE_DETAILS_SIZE: usize = 24;
const MAPPED_BLOCKS: usize = 0;
const TRANSACTION_ID: usize = 8;
const CREATION_TIME: usize = 16;
const SNAPSHOTTED_TIME: usize = 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceDetails {
    pub mapped_blocks: u64,
    pub transaction_id: u64,
    pub creation_time: u32,
    pub snapshotted_time: u32,
}

impl DeviceDetails {
    pub fn unpack(b: &[u8]) -> Self {
        DeviceDetails {
            mapped_blocks: le64(b, MAPPED_BLOCKS),
            transaction_id: le64(b, TRANSACTION_ID),
            creation_time: le32(b, CREATION_TIME),
            snapshotted_time: le32(b, SNAPSHOTTED_TIME),
        }
    }

    pub fn pack(&self) -> [u8; DEVICE_DETAILS_SIZE] {
        let mut b = [0u8; DEVICE_DETAILS_SIZE];
        put_le64(&mut b, MAPPED_BLOCKS, self.mapped_blocks);
        put_le64(&mut b, TRANSACTION_ID, self.transaction_id);
        put_le32(&mut b, CREATION_TIME, self.creation_time);
        put_le32(&mut b, SNAPSHOTTED_TIME, self.snapshotted_time);
        b
    }
}
