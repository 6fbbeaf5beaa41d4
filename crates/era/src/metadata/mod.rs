//! An era target's metadata, opened for live use: the operations of the
//! kernel's dm-era-target, each inside the current transaction, made
//! durable by `commit` and dropped by `abort`.
//!
//! Any error once an operation has started changing blocks poisons the
//! transaction (every later call fails until `abort`). Checks that can be
//! made beforehand (ranges, a writeset to mark, a snapshot to drop) fail
//! without changing anything.

mod digest;
pub mod query;
mod snapshot;
mod writes;

use crate::error::{EraError, Result};
use crate::format::superblock::*;
use crate::format::writeset::{WritesetDisk, NO_WRITESET, WRITESET_DISK_SIZE};
use digest::Digest;
use pdata::block_manager::{BlockManager, DEFAULT_CACHE_BLOCKS};
use pdata::io::BlockDevice;
use pdata::live::LiveMetadata;
use pdata::space_map::format::SmRoot;
use pdata::transaction_manager::TransactionManager;
use pdata::{array, btree};
use query::EraView;
use std::sync::Arc;

/// Bytes per era array entry (le32 era).
pub const ERA_VALUE_SIZE: usize = 4;

pub struct EraMetadata {
    tm: TransactionManager,
    /// The superblock as it will be written at the next commit.
    sb: Superblock,
    /// The digest in progress (the kernel's background worker state).
    digest: Option<Digest>,
}

impl EraMetadata {
    /// Formats new metadata as the kernel does (empty writeset tree, empty
    /// era array, era 0), resized to `nr_blocks` as the target's first
    /// resume does (which starts era 1), in one commit.
    /// Refuses a device whose block 0 is not all zero unless `force`.
    pub fn format(
        dev: Arc<dyn BlockDevice>,
        nr_blocks: u32,
        block_sectors: u32,
        force: bool,
    ) -> Result<Self> {
        if block_sectors < MIN_DATA_BLOCK_SIZE {
            return Err(EraError::Invalid(format!(
                "block size {block_sectors} sectors: at least {MIN_DATA_BLOCK_SIZE}"
            )));
        }
        check_nr_blocks(u64::from(nr_blocks))?;
        let bm = BlockManager::new(dev, DEFAULT_CACHE_BLOCKS, true);
        if !force && bm.read_raw(SUPERBLOCK_LOCATION)?.iter().any(|&b| b != 0) {
            return Err(EraError::AlreadyFormatted);
        }
        let mut tm = TransactionManager::format(bm)?;
        let writeset_tree_root = btree::empty_tree(&mut tm, WRITESET_DISK_SIZE)?;
        let era_array_root = array::new(&mut tm, ERA_VALUE_SIZE, 0, &[0; ERA_VALUE_SIZE])?;
        let sb = Superblock {
            flags: 0,
            uuid: [0; UUID_SIZE],
            version: ERA_VERSION,
            metadata_sm_root: SmRoot::default(),
            data_block_size: block_sectors,
            nr_blocks: 0,
            current_era: 0,
            current_writeset: WritesetDisk::default(),
            writeset_tree_root,
            era_array_root,
            metadata_snap: 0,
        };
        let mut md = EraMetadata {
            tm,
            sb,
            digest: None,
        };
        // One commit: a crash mid-format leaves the device unformatted or
        // formatted, never the kernel's intermediate empty-origin state.
        md.resize(nr_blocks)?;
        md.commit()?;
        Ok(md)
    }

    /// Opens existing metadata.
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
        let sb = read_superblock(&bm)?;
        let tm = TransactionManager::open(bm, &sb.metadata_sm_root)?;
        Ok(EraMetadata {
            tm,
            sb,
            digest: None,
        })
    }

    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Origin block size, in sectors.
    pub fn data_block_size(&self) -> u32 {
        self.sb.data_block_size
    }

    pub fn nr_blocks(&self) -> u32 {
        self.sb.nr_blocks
    }

    pub fn current_era(&self) -> u32 {
        self.sb.current_era
    }

    /// The current writeset, if there is one.
    pub fn current_writeset(&self) -> Option<WritesetDisk> {
        let ws = self.sb.current_writeset;
        (ws.root != NO_WRITESET).then_some(ws)
    }

    /// The metadata snapshot's block, if there is one.
    pub fn metadata_snap(&self) -> Option<u64> {
        (self.sb.metadata_snap != 0).then_some(self.sb.metadata_snap)
    }

    pub fn nr_metadata_blocks(&self) -> u64 {
        self.tm.nr_metadata_blocks()
    }

    pub fn nr_free_metadata_blocks(&self) -> u64 {
        self.tm.nr_free_metadata_blocks()
    }

    /// The live state as the read-only queries see it.
    pub fn view(&self) -> EraView {
        EraView::live(&self.sb)
    }

    /// Makes the transaction durable, in the order of thin and cache: every
    /// block but the superblock is written and flushed, then the superblock
    /// (every field rewritten, flags 0, as the kernel does) is written and
    /// flushed, with nothing fallible in between.
    pub fn commit(&mut self) -> Result<()> {
        self.require_writable()?;
        let r = self.commit_inner();
        if let Err(e) = &r {
            self.tm.poison(format!("commit failed: {e}"));
        }
        r
    }

    fn commit_inner(&mut self) -> Result<()> {
        self.sb.metadata_sm_root = self.tm.pre_commit()?;
        self.sb.flags = 0;
        self.sb.version = ERA_VERSION;
        self.sb.uuid = [0; UUID_SIZE];
        let block = self.sb.pack();
        self.tm
            .commit(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR, block)?;
        Ok(())
    }

    /// Drops the transaction and goes back to the last commit. A digest in
    /// progress starts again from the oldest writeset (digesting is
    /// idempotent).
    pub fn abort(&mut self) -> Result<()> {
        // Forget the cache first: the superblock on disk is the authority (a
        // failed commit may or may not have written the new one).
        self.tm.bm().reset();
        let sb = read_superblock(self.tm.bm())?;
        self.tm.abort(&sb.metadata_sm_root)?;
        self.sb = sb;
        self.digest = None;
        Ok(())
    }
}

impl LiveMetadata for EraMetadata {
    fn transaction_manager(&self) -> &TransactionManager {
        &self.tm
    }

    fn transaction_manager_mut(&mut self) -> &mut TransactionManager {
        &mut self.tm
    }
}

fn check_nr_blocks(nr_blocks: u64) -> Result<()> {
    if nr_blocks > u64::from(MAX_NR_BLOCKS) {
        return Err(EraError::Invalid(format!(
            "{nr_blocks} origin blocks: at most {MAX_NR_BLOCKS}"
        )));
    }
    Ok(())
}

/// Reads and validates the superblock at block 0.
pub fn read_superblock(bm: &BlockManager) -> Result<Superblock> {
    let raw = bm.read_raw(SUPERBLOCK_LOCATION)?;
    if raw.iter().all(|&b| b == 0) {
        return Err(EraError::Unformatted);
    }
    let sb = {
        let b = bm.read_lock(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR)?;
        Superblock::unpack(&b)
    };
    if sb.data_block_size == 0 {
        return Err(EraError::Invalid("superblock has a zero block size".into()));
    }
    check_nr_blocks(u64::from(sb.nr_blocks))?;
    Ok(sb)
}
