//! The pool's devices: their details (cached for the transaction), thin
//! volumes and snapshots, deletion, the transaction id.

use super::{ThinMetadata, MAX_DEVICE_ID};
use crate::error::{Result, ThinError};
use crate::format::block_time::MAX_TIME;
use crate::format::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use crate::value_types::SubtreeRefs;
use pdata::btree::{self, NoRefs};
use pdata::live::LiveMetadata;

impl ThinMetadata {
    pub(super) fn details_of(&mut self, dev: u64) -> Result<Option<DeviceDetails>> {
        if let Some(d) = self.details.get(&dev) {
            return Ok(Some(*d));
        }
        let mut v = [0u8; DEVICE_DETAILS_SIZE];
        if btree::lookup(&self.tm, self.sb.device_details_root, &[dev], &mut v)? {
            let d = DeviceDetails::unpack(&v);
            self.details.insert(dev, d);
            Ok(Some(d))
        } else {
            Ok(None)
        }
    }

    /// The details of a device (as of this transaction).
    pub fn device_details(&mut self, dev: u64) -> Result<DeviceDetails> {
        self.tm.check_alive()?;
        self.details_of(dev)?.ok_or(ThinError::NoSuchDevice(dev))
    }

    pub(super) fn set_details(&mut self, dev: u64, d: DeviceDetails) {
        self.details.insert(dev, d);
        self.changed.insert(dev);
    }

    pub(super) fn require_device(&mut self, dev: u64) -> Result<DeviceDetails> {
        self.tm.check_alive()?;
        self.details_of(dev)?.ok_or(ThinError::NoSuchDevice(dev))
    }

    pub(super) fn require_absent(&mut self, dev: u64) -> Result<()> {
        self.tm.check_alive()?;
        if dev > MAX_DEVICE_ID {
            return Err(ThinError::BadDeviceId(dev));
        }
        if self.details_of(dev)?.is_some() || self.subtree_root(dev)?.is_some() {
            return Err(ThinError::DeviceExists(dev));
        }
        Ok(())
    }

    pub(super) fn subtree_root(&self, dev: u64) -> Result<Option<u64>> {
        let mut v = [0u8; 8];
        Ok(
            btree::lookup(&self.tm, self.sb.data_mapping_root, &[dev], &mut v)?
                .then(|| u64::from_le_bytes(v)),
        )
    }

    /// Ids of every device, in order.
    pub fn devices(&mut self) -> Result<Vec<u64>> {
        self.tm.check_alive()?;
        let mut ids = Vec::new();
        btree::walk(&self.tm, self.sb.data_mapping_root, &mut |k, _| {
            ids.push(k);
            Ok(())
        })?;
        Ok(ids)
    }

    pub fn create_thin(&mut self, dev: u64) -> Result<()> {
        self.require_writable()?;
        self.require_absent(dev)?;
        self.mutate(|md| {
            let root = btree::empty_tree(&mut md.tm, 8)?;
            md.sb.data_mapping_root = btree::insert(
                &mut md.tm,
                md.sb.data_mapping_root,
                &[dev],
                &root.to_le_bytes(),
                &mut SubtreeRefs(&mut md.data_sm),
            )?
            .0;
            let time = md.sb.time;
            md.set_details(
                dev,
                DeviceDetails {
                    mapped_blocks: 0,
                    transaction_id: md.sb.transaction_id,
                    creation_time: time,
                    snapshotted_time: time,
                },
            );
            Ok(())
        })
    }

    pub fn create_snap(&mut self, dev: u64, origin: u64) -> Result<()> {
        self.require_writable()?;
        self.require_absent(dev)?;
        let origin_details = self.require_device(origin)?;
        let origin_root = self
            .subtree_root(origin)?
            .ok_or(ThinError::NoSuchDevice(origin))?;
        if self.sb.time >= MAX_TIME {
            return Err(ThinError::Invalid(
                "the pool's snapshot time is exhausted".into(),
            ));
        }
        self.mutate(|md| {
            // Both devices now share the whole mapping tree.
            md.tm.inc(origin_root)?;
            md.sb.data_mapping_root = btree::insert(
                &mut md.tm,
                md.sb.data_mapping_root,
                &[dev],
                &origin_root.to_le_bytes(),
                &mut SubtreeRefs(&mut md.data_sm),
            )?
            .0;
            md.sb.time += 1;
            let time = md.sb.time;
            md.set_details(
                dev,
                DeviceDetails {
                    mapped_blocks: origin_details.mapped_blocks,
                    transaction_id: md.sb.transaction_id,
                    creation_time: time,
                    snapshotted_time: time,
                },
            );
            md.set_details(
                origin,
                DeviceDetails {
                    snapshotted_time: time,
                    ..origin_details
                },
            );
            Ok(())
        })
    }

    pub fn delete(&mut self, dev: u64) -> Result<()> {
        self.require_writable()?;
        self.require_device(dev)?;
        self.mutate(|md| {
            let mut v = [0u8; DEVICE_DETAILS_SIZE];
            if btree::lookup(&md.tm, md.sb.device_details_root, &[dev], &mut v)? {
                md.sb.device_details_root = btree::remove(
                    &mut md.tm,
                    md.sb.device_details_root,
                    &[dev],
                    &mut NoRefs(DEVICE_DETAILS_SIZE),
                )?;
            }
            md.details.remove(&dev);
            md.changed.remove(&dev);
            md.sb.data_mapping_root = btree::remove(
                &mut md.tm,
                md.sb.data_mapping_root,
                &[dev],
                &mut SubtreeRefs(&mut md.data_sm),
            )?;
            Ok(())
        })
    }

    pub fn set_transaction_id(&mut self, expected: u64, new: u64) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        if self.sb.transaction_id != expected {
            return Err(ThinError::TransactionId {
                current: self.sb.transaction_id,
                expected,
            });
        }
        self.sb.transaction_id = new;
        Ok(())
    }
}
