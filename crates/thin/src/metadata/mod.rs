//! A thin pool's metadata, opened for live use: the operations the kernel's
//! pool performs, each inside the current transaction, made durable by
//! `commit` and dropped by `abort`.
//!
//! Any error once an operation has started changing blocks poisons the
//! transaction (every later call fails until `abort`). Checks that can be
//! made beforehand (device exists, ids, ranges) fail without changing
//! anything.

mod devices;
mod mappings;
mod resize;

use crate::error::{Result, ThinError};
use crate::format::block_time::MAX_DATA_BLOCK;
use crate::format::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use crate::format::superblock::{
    data_block_size_error, valid_data_block_size, Superblock, SuperblockError, FLAG_NEEDS_CHECK,
    SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR, THIN_VERSION,
};
use pdata::block_manager::{BlockManager, DEFAULT_CACHE_BLOCKS};
use pdata::btree::{self, NoRefs};
use pdata::io::BlockDevice;
use pdata::live::LiveMetadata;
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
        self.commit_then(|| Ok(()))
    }

    /// `commit`, with `before_superblock` run once every other block is
    /// durable and before the superblock is written; its failure fails the
    /// commit. (The pool waits there for its data flush, so that the new
    /// superblock never names mappings to data not yet on disk.)
    pub fn commit_then(&mut self, before_superblock: impl FnOnce() -> Result<()>) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let r = self.commit_inner(before_superblock);
        if let Err(e) = &r {
            self.tm.poison(format!("commit failed: {e}"));
        }
        r
    }

    fn commit_inner(&mut self, before_superblock: impl FnOnce() -> Result<()>) -> Result<()> {
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
        before_superblock()?;
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

impl LiveMetadata for ThinMetadata {
    fn transaction_manager(&self) -> &TransactionManager {
        &self.tm
    }

    fn transaction_manager_mut(&mut self) -> &mut TransactionManager {
        &mut self.tm
    }
}
