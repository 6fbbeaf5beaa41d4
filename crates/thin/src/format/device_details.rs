//! `disk_device_details`: the value of the details tree, keyed by device id.
//!
//! ```text
//! offset size field
//!      0    8 mapped_blocks     blocks mapped by the device
//!      8    8 transaction_id    the pool's transaction at its last change
//!     16    4 creation_time     pool time when created
//!     20    4 snapshotted_time  pool time of its last snapshot
//!     24      end
//! ```

use pdata::block_manager::{le32, le64, put_le32, put_le64};

/// Bits of a thin device id (the dm-thin target's `dev_id` is 24-bit).
pub const DEVICE_ID_BITS: u32 = 24;
pub const MAX_DEVICE_ID: u64 = (1 << DEVICE_ID_BITS) - 1;

const U32: usize = 4;
const U64: usize = 8;

const MAPPED_BLOCKS: usize = 0;
const TRANSACTION_ID: usize = MAPPED_BLOCKS + U64;
const CREATION_TIME: usize = TRANSACTION_ID + U64;
const SNAPSHOTTED_TIME: usize = CREATION_TIME + U32;
pub const DEVICE_DETAILS_SIZE: usize = SNAPSHOTTED_TIME + U32;

// dm-thin-metadata.c's `disk_device_details` is packed to 24 bytes.
const _: () = assert!(DEVICE_DETAILS_SIZE == 24);
const _: () = assert!(MAX_DEVICE_ID == 0xff_ffff);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = DeviceDetails {
            mapped_blocks: 1 << 40,
            transaction_id: 3,
            creation_time: 4,
            snapshotted_time: 5,
        };
        let b = d.pack();
        assert_eq!(&b[16..20], &4u32.to_le_bytes());
        assert_eq!(DeviceDetails::unpack(&b), d);
    }
}
