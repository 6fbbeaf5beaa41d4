//! Mappings: data block allocation, insert, lookup, removal, and the
//! read-only walks over a device's mappings.

use super::{MappedRange, ThinMetadata};
use crate::error::{Result, ThinError};
use crate::format::block_time::BlockTime;
use crate::format::device_details::DeviceDetails;
use crate::value_types::{DataRefs, SubtreeRefs};
use pdata::btree::{self};
use pdata::live::LiveMetadata;
use std::collections::BTreeMap;

impl ThinMetadata {
    /// Allocates a data block (count 1), to be mapped by `insert`.
    pub fn alloc(&mut self) -> Result<u64> {
        self.require_writable()?;
        self.tm.check_alive()?;
        if self.data_sm.nr_free() == 0 {
            return Err(pdata::Error::NoSpace("data").into());
        }
        // Finding no free block changes nothing: that error leaves the
        // transaction alive; any other is a failure part-way.
        match self.data_sm.new_block(&mut self.tm) {
            Ok(b) => {
                self.unmapped_allocs.insert(b);
                Ok(b)
            }
            Err(e @ pdata::Error::NoSpace(_)) => Err(e.into()),
            Err(e) => {
                self.tm.poison(format!("a metadata operation failed: {e}"));
                Err(e.into())
            }
        }
    }

    /// Maps `vblock` of `dev` to `dblock`, replacing any old mapping. A block
    /// from `alloc` passes its reference to the mapping; any other block must
    /// be in use already and gains a reference (it becomes shared).
    pub fn insert(&mut self, dev: u64, vblock: u64, dblock: u64) -> Result<()> {
        self.require_writable()?;
        let details = self.require_device(dev)?;
        let nr_blocks = self.data_sm.nr_blocks();
        if dblock >= nr_blocks {
            return Err(ThinError::DataBlockOutOfRange {
                block: dblock,
                nr_blocks,
            });
        }
        let owned = self.unmapped_allocs.contains(&dblock);
        // A block from alloc is mapped nowhere, so the old mapping only
        // matters for other blocks.
        let current = if owned {
            None
        } else {
            self.lookup(dev, vblock)?.map(|(b, _)| b)
        };
        if !owned && self.data_sm.count(&self.tm, dblock)? == 0 {
            return Err(ThinError::NotAllocated(dblock));
        }
        self.mutate(|md| {
            if owned {
                md.unmapped_allocs.remove(&dblock);
            } else if current != Some(dblock) {
                md.data_sm.inc(&mut md.tm, dblock)?;
            }
            let time = md.sb.time;
            if md.map_block(dev, vblock, dblock, time)? {
                md.set_details(
                    dev,
                    DeviceDetails {
                        mapped_blocks: details.mapped_blocks + 1,
                        ..details
                    },
                );
            }
            Ok(())
        })
    }

    /// Writes the mapping into the tree; an old mapping to another data
    /// block is released. True when the key is new.
    pub(super) fn map_block(
        &mut self,
        dev: u64,
        vblock: u64,
        dblock: u64,
        time: u32,
    ) -> Result<bool> {
        let bt = BlockTime {
            block: dblock,
            time,
        }
        .pack();
        let (root, inserted) = btree::insert(
            &mut self.tm,
            self.sb.data_mapping_root,
            &[dev, vblock],
            &bt.to_le_bytes(),
            &mut DataRefs(&mut self.data_sm),
        )?;
        self.sb.data_mapping_root = root;
        Ok(inserted)
    }

    /// What the pool does on a write to an unmapped or shared block.
    pub fn provision(&mut self, dev: u64, vblock: u64) -> Result<u64> {
        self.require_device(dev)?;
        let b = self.alloc()?;
        self.insert(dev, vblock, b)?;
        Ok(b)
    }

    /// The mapping of `vblock`: (data block, time).
    pub fn lookup(&mut self, dev: u64, vblock: u64) -> Result<Option<(u64, u32)>> {
        self.require_device(dev)?;
        let mut v = [0u8; 8];
        if btree::lookup(&self.tm, self.sb.data_mapping_root, &[dev, vblock], &mut v)? {
            let bt = BlockTime::from_bytes(&v);
            Ok(Some((bt.block, bt.time)))
        } else {
            Ok(None)
        }
    }

    pub fn remove(&mut self, dev: u64, vblock: u64) -> Result<()> {
        self.require_writable()?;
        let details = self.require_device(dev)?;
        if self.lookup(dev, vblock)?.is_none() {
            return Err(ThinError::NotMapped { dev, vblock });
        }
        self.mutate(|md| {
            md.sb.data_mapping_root = btree::remove(
                &mut md.tm,
                md.sb.data_mapping_root,
                &[dev, vblock],
                &mut DataRefs(&mut md.data_sm),
            )?;
            md.set_details(
                dev,
                DeviceDetails {
                    mapped_blocks: details.mapped_blocks.saturating_sub(1),
                    ..details
                },
            );
            Ok(())
        })
    }

    /// Unmaps every block in [begin, end). Returns how many were mapped.
    pub fn remove_range(&mut self, dev: u64, begin: u64, end: u64) -> Result<u64> {
        self.require_writable()?;
        let details = self.require_device(dev)?;
        let root = self
            .subtree_root(dev)?
            .ok_or(ThinError::NoSuchDevice(dev))?;
        if begin >= end {
            return Ok(0);
        }
        self.mutate(|md| {
            // Hold the device's tree while it is out of the top level, so
            // removing the key only drops that extra reference.
            md.tm.inc(root)?;
            md.sb.data_mapping_root = btree::remove(
                &mut md.tm,
                md.sb.data_mapping_root,
                &[dev],
                &mut SubtreeRefs(&mut md.data_sm),
            )?;
            let (new_root, count) =
                btree::remove_range(&mut md.tm, root, begin, end, &mut DataRefs(&mut md.data_sm))?;
            md.sb.data_mapping_root = btree::insert(
                &mut md.tm,
                md.sb.data_mapping_root,
                &[dev],
                &new_root.to_le_bytes(),
                &mut SubtreeRefs(&mut md.data_sm),
            )?
            .0;
            md.set_details(
                dev,
                DeviceDetails {
                    mapped_blocks: details.mapped_blocks.saturating_sub(count),
                    ..details
                },
            );
            Ok(count)
        })
    }

    /// The first run of mappings in [begin, end): consecutive thin blocks
    /// mapped to consecutive data blocks.
    pub fn find_mapped_range(
        &mut self,
        dev: u64,
        begin: u64,
        end: u64,
    ) -> Result<Option<MappedRange>> {
        let details = self.require_device(dev)?;
        let root = self
            .subtree_root(dev)?
            .ok_or(ThinError::NoSuchDevice(dev))?;
        let mut run: Option<MappedRange> = None;
        let mut done = false;
        btree::walk_range(&self.tm, root, begin, end, &mut |k, v| {
            if done {
                return Ok(());
            }
            let bt = BlockTime::from_bytes(v);
            let shared = bt.time < details.snapshotted_time;
            match &mut run {
                None => {
                    run = Some(MappedRange {
                        thin_begin: k,
                        thin_end: k + 1,
                        pool_begin: bt.block,
                        maybe_shared: shared,
                    })
                }
                Some(r) => {
                    if k == r.thin_end
                        && bt.block == r.pool_begin + (k - r.thin_begin)
                        && shared == r.maybe_shared
                    {
                        r.thin_end += 1;
                    } else {
                        done = true;
                    }
                }
            }
            Ok(())
        })?;
        Ok(run)
    }

    /// Every mapping of a device, in order: (thin block, data block, time).
    pub fn mappings(&mut self, dev: u64) -> Result<Vec<(u64, u64, u32)>> {
        self.require_device(dev)?;
        let root = self
            .subtree_root(dev)?
            .ok_or(ThinError::NoSuchDevice(dev))?;
        let mut out = Vec::new();
        btree::walk(&self.tm, root, &mut |k, v| {
            let bt = BlockTime::from_bytes(v);
            out.push((k, bt.block, bt.time));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f(thin block, data block, time)` for every mapping of the
    /// device whose mapping tree is `root` (as `subtree_root` gives), in order.
    pub fn walk_subtree(
        &self,
        root: u64,
        f: &mut dyn FnMut(u64, u64, u32) -> pdata::Result<()>,
    ) -> Result<()> {
        btree::walk(&self.tm, root, &mut |k, v| {
            let bt = BlockTime::from_bytes(v);
            f(k, bt.block, bt.time)
        })?;
        Ok(())
    }

    /// Every device of the tree roots `mapping_root`/`details_root` (the
    /// live ones or a metadata snapshot's): (id, details, mapping-tree root).
    pub fn devices_at(
        &self,
        mapping_root: u64,
        details_root: u64,
    ) -> Result<Vec<(u64, DeviceDetails, u64)>> {
        let mut roots = BTreeMap::new();
        btree::walk(&self.tm, mapping_root, &mut |k, v| {
            roots.insert(k, pdata::block_manager::le64(v, 0));
            Ok(())
        })?;
        let mut out = Vec::new();
        let mut missing = None;
        btree::walk(&self.tm, details_root, &mut |k, v| {
            match roots.get(&k) {
                Some(&r) => out.push((k, DeviceDetails::unpack(v), r)),
                None => missing = Some(k),
            }
            Ok(())
        })?;
        if let Some(k) = missing {
            return Err(ThinError::Invalid(format!(
                "device {k} has details but no mapping tree"
            )));
        }
        Ok(out)
    }
}
