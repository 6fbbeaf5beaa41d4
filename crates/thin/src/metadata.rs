//! A thin pool's metadata, opened for live use: the operations the kernel's
//! pool performs, each inside the current transaction, made durable by
//! `commit` and dropped by `abort`.
//!
//! Any error once an operation has started changing blocks poisons the
//! transaction (every later call fails until `abort`). Checks that can be
//! made beforehand (device exists, ids, ranges) fail without changing
//! anything.

use crate::error::{Result, ThinError};
use crate::format::block_time::{BlockTime, MAX_DATA_BLOCK, MAX_TIME};
use crate::format::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use crate::format::superblock::{
    data_block_size_error, valid_data_block_size, Superblock, SuperblockError, FLAG_NEEDS_CHECK,
    SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR, THIN_VERSION,
};
use crate::value_types::{DataRefs, SubtreeRefs};
use pdata::block_manager::{BlockManager, BlockRead, DEFAULT_CACHE_BLOCKS};
use pdata::btree::{self, NoRefs};
use pdata::io::BlockDevice;
use pdata::space_map::format::{SmRoot, MAX_METADATA_BLOCKS};
use pdata::space_map::DiskSpaceMap;
use pdata::transaction_manager::TransactionManager;
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::format::device_details::MAX_DEVICE_ID;

/// A run of consecutive mappings: thin blocks [thin_begin, thin_end) map
/// to data blocks starting at pool_begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedRange {
    pub thin_begin: u64,
    pub thin_end: u64,
    pub pool_begin: u64,
    pub maybe_shared: bool,
}

pub struct ThinMetadata {
    tm: TransactionManager,
    data_sm: DiskSpaceMap,
    /// The superblock as it will be written at the next commit.
    sb: Superblock,
    /// The superblock on disk.
    committed: Superblock,
    /// Details of devices touched in this transaction.
    details: BTreeMap<u64, DeviceDetails>,
    changed: FxHashSet<u64>,
    /// Data blocks handed out by `alloc` and not yet mapped by `insert`.
    unmapped_allocs: FxHashSet<u64>,
}

impl ThinMetadata {
    /// Formats a new pool. Refuses a device whose block 0 is not all zero
    /// unless `force`.
    pub fn format(
        dev: Arc<dyn BlockDevice>,
        data_block_size: u32,
        nr_data_blocks: u64,
        force: bool,
    ) -> Result<Self> {
        Self::format_with_cache(
            dev,
            data_block_size,
            nr_data_blocks,
            force,
            DEFAULT_CACHE_BLOCKS,
        )
    }

    /// `format` with a block cache of `cache_blocks` blocks.
    pub fn format_with_cache(
        dev: Arc<dyn BlockDevice>,
        data_block_size: u32,
        nr_data_blocks: u64,
        force: bool,
        cache_blocks: usize,
    ) -> Result<Self> {
        if !valid_data_block_size(data_block_size) {
            return Err(ThinError::Invalid(data_block_size_error(data_block_size)));
        }
        if nr_data_blocks > MAX_DATA_BLOCK + 1 {
            return Err(ThinError::Invalid(format!(
                "{nr_data_blocks} data blocks: block numbers must fit in 40 bits"
            )));
        }
        let bm = BlockManager::new(dev, cache_blocks, true);
        if !force && bm.read_raw(SUPERBLOCK_LOCATION)?.iter().any(|&b| b != 0) {
            return Err(ThinError::AlreadyFormatted);
        }
        let metadata_nr_blocks = bm.nr_blocks().min(MAX_METADATA_BLOCKS);
        let mut tm = TransactionManager::format(bm)?;
        let data_sm = DiskSpaceMap::format(&mut tm, nr_data_blocks)?;
        let data_mapping_root = btree::empty_tree(&mut tm, 8)?;
        let device_details_root = btree::empty_tree(&mut tm, DEVICE_DETAILS_SIZE)?;
        let sb = Superblock {
            flags: 0,
            version: THIN_VERSION,
            time: 0,
            transaction_id: 0,
            held_root: 0,
            data_sm_root: SmRoot::default(),
            metadata_sm_root: SmRoot::default(),
            data_mapping_root,
            device_details_root,
            data_block_size,
            metadata_nr_blocks,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
        };
        let mut md = ThinMetadata {
            tm,
            data_sm,
            committed: sb.clone(),
            sb,
            details: BTreeMap::new(),
            changed: FxHashSet::default(),
            unmapped_allocs: FxHashSet::default(),
        };
        md.commit()?;
        Ok(md)
    }

    /// Opens existing metadata; `writable` false refuses every change.
    pub fn open(dev: Arc<dyn BlockDevice>, writable: bool) -> Result<Self> {
        Self::open_with_cache(dev, writable, DEFAULT_CACHE_BLOCKS)
    }

    /// `open` with a block cache of `cache_blocks` blocks.
    pub fn open_with_cache(
        dev: Arc<dyn BlockDevice>,
        writable: bool,
        cache_blocks: usize,
    ) -> Result<Self> {
        let bm = BlockManager::new(dev, cache_blocks, writable);
        let sb = read_superblock(&bm, writable)?;
        // A reader needs no metadata space map: a damaged one must not hide
        // the trees (of a metadata snapshot above all).
        let tm = TransactionManager::open_tolerant(bm, &sb.metadata_sm_root)?;
        let data_sm = DiskSpaceMap::open(&sb.data_sm_root);
        Ok(ThinMetadata {
            tm,
            data_sm,
            committed: sb.clone(),
            sb,
            details: BTreeMap::new(),
            changed: FxHashSet::default(),
            unmapped_allocs: FxHashSet::default(),
        })
    }

    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    pub fn transaction_manager(&self) -> &TransactionManager {
        &self.tm
    }

    /// Test-only access for fault injection.
    #[doc(hidden)]
    pub fn transaction_manager_mut(&mut self) -> &mut TransactionManager {
        &mut self.tm
    }

    pub fn data_block_size(&self) -> u32 {
        self.sb.data_block_size
    }

    pub fn nr_data_blocks(&self) -> u64 {
        self.data_sm.nr_blocks()
    }

    pub fn nr_free_data_blocks(&self) -> u64 {
        self.data_sm.nr_free()
    }

    pub fn nr_metadata_blocks(&self) -> u64 {
        self.tm.nr_metadata_blocks()
    }

    pub fn nr_free_metadata_blocks(&self) -> u64 {
        self.tm.nr_free_metadata_blocks()
    }

    pub fn transaction_id(&self) -> u64 {
        self.sb.transaction_id
    }

    pub fn time(&self) -> u32 {
        self.sb.time
    }

    pub fn held_root(&self) -> Option<u64> {
        (self.sb.held_root != 0).then_some(self.sb.held_root)
    }

    pub fn needs_check(&self) -> bool {
        self.sb.needs_check()
    }

    /// Runs a changing step: refuses if the transaction is dead, and kills
    /// it if the step fails part-way.
    fn mutate<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.tm.check_alive()?;
        let r = f(self);
        if let Err(e) = &r {
            self.tm.poison(format!("a metadata operation failed: {e}"));
        }
        r
    }

    fn details_of(&mut self, dev: u64) -> Result<Option<DeviceDetails>> {
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

    fn set_details(&mut self, dev: u64, d: DeviceDetails) {
        self.details.insert(dev, d);
        self.changed.insert(dev);
    }

    fn require_device(&mut self, dev: u64) -> Result<DeviceDetails> {
        self.tm.check_alive()?;
        self.details_of(dev)?.ok_or(ThinError::NoSuchDevice(dev))
    }

    fn require_absent(&mut self, dev: u64) -> Result<()> {
        self.tm.check_alive()?;
        if dev > MAX_DEVICE_ID {
            return Err(ThinError::BadDeviceId(dev));
        }
        if self.details_of(dev)?.is_some() || self.subtree_root(dev)?.is_some() {
            return Err(ThinError::DeviceExists(dev));
        }
        Ok(())
    }

    fn require_writable(&self) -> Result<()> {
        if !self.tm.bm().is_writable() {
            return Err(pdata::Error::ReadOnly.into());
        }
        Ok(())
    }

    fn subtree_root(&self, dev: u64) -> Result<Option<u64>> {
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
    fn map_block(&mut self, dev: u64, vblock: u64, dblock: u64, time: u32) -> Result<bool> {
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

    pub fn resize_data(&mut self, nr_blocks: u64) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        if nr_blocks < self.data_sm.nr_blocks() {
            return Err(ThinError::Invalid(format!(
                "cannot shrink the data device from {} to {} blocks",
                self.data_sm.nr_blocks(),
                nr_blocks
            )));
        }
        if nr_blocks > MAX_DATA_BLOCK + 1 {
            return Err(ThinError::Invalid(format!(
                "{nr_blocks} data blocks: block numbers must fit in 40 bits"
            )));
        }
        // Every new bitmap is a metadata block, plus index-tree nodes.
        let new_bitmaps = pdata::space_map::format::nr_bitmaps(nr_blocks)
            - pdata::space_map::format::nr_bitmaps(self.data_sm.nr_blocks());
        let needed = new_bitmaps as u64 + new_bitmaps as u64 / 50 + 64;
        if needed > self.tm.nr_free_metadata_blocks() {
            return Err(ThinError::Invalid(format!(
                "{nr_blocks} data blocks need about {needed} more metadata blocks; {} are free",
                self.tm.nr_free_metadata_blocks()
            )));
        }
        self.mutate(|md| Ok(md.data_sm.extend(&mut md.tm, nr_blocks)?))
    }

    pub fn resize_metadata(&mut self, nr_blocks: u64) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let current = self.tm.nr_metadata_blocks();
        if nr_blocks < current {
            return Err(ThinError::Invalid(format!(
                "cannot shrink the metadata device from {current} to {nr_blocks} blocks"
            )));
        }
        if nr_blocks > MAX_METADATA_BLOCKS {
            return Err(ThinError::Invalid(format!(
                "a metadata device holds at most {MAX_METADATA_BLOCKS} blocks"
            )));
        }
        self.mutate(|md| Ok(md.tm.extend_metadata(nr_blocks)?))
    }

    /// Commits, then keeps a copy of the superblock whose trees stay
    /// readable (`thin_dump -m`) until released.
    pub fn reserve_metadata_snap(&mut self) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        if self.sb.held_root != 0 {
            return Err(ThinError::SnapshotHeld);
        }
        self.commit()?;
        self.mutate(|md| {
            let mut snap = md.sb.clone();
            snap.data_sm_root = SmRoot::default();
            snap.metadata_sm_root = SmRoot::default();
            snap.held_root = 0;
            let mut w = md.tm.new_block(&SUPERBLOCK_VALIDATOR)?;
            w.copy_from_slice(&snap.pack()[..]);
            let loc = w.loc();
            drop(w);
            md.tm.inc(snap.data_mapping_root)?;
            md.tm.inc(snap.device_details_root)?;
            md.sb.held_root = loc;
            Ok(())
        })
    }

    pub fn release_metadata_snap(&mut self) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let held = self.sb.held_root;
        if held == 0 {
            return Err(ThinError::NoSnapshot);
        }
        self.mutate(|md| {
            let snap = {
                let b = md.tm.read_lock(held, &SUPERBLOCK_VALIDATOR)?;
                Superblock::unpack(&b)
            };
            btree::delete_tree(
                &mut md.tm,
                snap.data_mapping_root,
                2,
                &mut DataRefs(&mut md.data_sm),
            )?;
            btree::delete_tree(
                &mut md.tm,
                snap.device_details_root,
                1,
                &mut NoRefs(DEVICE_DETAILS_SIZE),
            )?;
            md.tm.dec(held)?;
            md.sb.held_root = 0;
            Ok(())
        })
    }

    /// The metadata snapshot's superblock, if one is held.
    pub fn metadata_snap(&self) -> Result<Option<Superblock>> {
        if self.sb.held_root == 0 {
            return Ok(None);
        }
        let b = self
            .tm
            .read_lock(self.sb.held_root, &SUPERBLOCK_VALIDATOR)?;
        Ok(Some(Superblock::unpack(&b)))
    }

    /// Sets NEEDS_CHECK in the on-disk superblock at once. Only `flags`
    /// changes, so the block still describes the committed transaction.
    pub fn set_needs_check(&mut self) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        self.sb.flags |= FLAG_NEEDS_CHECK;
        let mut on_disk = self.committed.clone();
        on_disk.flags |= FLAG_NEEDS_CHECK;
        let r = self.tm.bm().write_superblock(
            SUPERBLOCK_LOCATION,
            &SUPERBLOCK_VALIDATOR,
            on_disk.pack(),
        );
        if let Err(e) = r {
            self.tm.poison(e.to_string());
            return Err(e.into());
        }
        self.committed.flags = on_disk.flags;
        Ok(())
    }

    /// Clears NEEDS_CHECK at the next commit.
    pub fn clear_needs_check(&mut self) {
        self.sb.flags &= !FLAG_NEEDS_CHECK;
    }

    /// Makes the transaction durable: all blocks but the superblock are
    /// written and flushed, then the superblock is written and flushed.
    pub fn commit(&mut self) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let r = self.commit_inner();
        if let Err(e) = &r {
            self.tm.poison(format!("commit failed: {e}"));
        }
        r
    }

    fn commit_inner(&mut self) -> Result<()> {
        // 1. Client-level state: device details, unused allocations, data SM.
        let mut changed: Vec<u64> = self.changed.drain().collect();
        changed.sort_unstable();
        for dev in changed {
            let d = self.details[&dev];
            self.sb.device_details_root = btree::insert(
                &mut self.tm,
                self.sb.device_details_root,
                &[dev],
                &d.pack(),
                &mut NoRefs(DEVICE_DETAILS_SIZE),
            )?
            .0;
        }
        let mut unused: Vec<u64> = self.unmapped_allocs.drain().collect();
        unused.sort_unstable();
        for b in unused {
            self.data_sm.dec(&mut self.tm, b)?;
        }
        self.sb.data_sm_root = self.data_sm.commit(&mut self.tm)?;
        // 2. Everything but the superblock, durably.
        self.sb.metadata_sm_root = self.tm.pre_commit()?;
        // 3. Only then the superblock; nothing before this can have written it.
        let block = self.sb.pack();
        self.tm
            .commit(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR, block)?;
        self.committed = self.sb.clone();
        Ok(())
    }

    /// Drops the transaction and goes back to the last commit.
    pub fn abort(&mut self) -> Result<()> {
        // Forget the cache first: the superblock on disk is the authority (a
        // failed commit may or may not have written the new one).
        self.tm.bm().reset();
        let sb = read_superblock(self.tm.bm(), self.tm.bm().is_writable())?;
        self.tm.abort(&sb.metadata_sm_root)?;
        self.data_sm = DiskSpaceMap::open(&sb.data_sm_root);
        self.committed = sb.clone();
        self.sb = sb;
        self.details.clear();
        self.changed.clear();
        self.unmapped_allocs.clear();
        Ok(())
    }

    /// Data space-map count of a data block (for checks and tests).
    pub fn data_ref_count(&mut self, b: u64) -> Result<u32> {
        Ok(self.data_sm.count(&self.tm, b)?)
    }
}

/// Reads and validates the superblock; refuses what the pool cannot open.
pub fn read_superblock(bm: &BlockManager, writable: bool) -> Result<Superblock> {
    let raw = bm.read_raw(SUPERBLOCK_LOCATION)?;
    let sb = match Superblock::decode(SUPERBLOCK_LOCATION, &raw) {
        Ok(sb) => sb,
        Err(SuperblockError::Unformatted) => return Err(ThinError::Unformatted),
        Err(e) => return Err(e.at(SUPERBLOCK_LOCATION).into()),
    };
    // Block 0 goes through the cache as well, as it always has: the I/O
    // sequence, and so torture's fault points, stay as they were.
    drop(bm.read_lock(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR)?);
    if sb.incompat_flags != 0 {
        return Err(ThinError::Incompatible(sb.incompat_flags));
    }
    if writable && sb.compat_ro_flags != 0 {
        return Err(ThinError::Invalid(format!(
            "metadata has read-only compatible features {:#x}: it can only be opened read-only",
            sb.compat_ro_flags
        )));
    }
    if sb.data_block_size == 0 {
        return Err(ThinError::Invalid(
            "superblock has a zero data block size".into(),
        ));
    }

    Ok(sb)
}
