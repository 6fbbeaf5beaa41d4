//! A cache's metadata, opened for live use: the operations of the kernel's
//! dm-cache-metadata, each inside the current transaction, made durable by
//! `commit` and dropped by `abort`.
//!
//! Any error once an operation has started changing blocks poisons the
//! transaction (every later call fails until `abort`). Checks that can be
//! made beforehand (ranges, mapped or not) fail without changing anything.
//!
//! Trust, as in the kernel: the superblock's CLEAN_SHUTDOWN flag is cleared
//! on disk as soon as the metadata is opened for writing, and set again
//! only by `commit(true)`. When it was clear at open, the stored dirty
//! bits, discard bits and hints are stale: every mapped block counts as
//! dirty, no discard block as discarded, and there are no hints, except
//! for what this session set itself. A clean commit first makes the stored
//! state say exactly that (the kernel writes its in-core state on suspend),
//! so the next clean open can trust it.

mod hints;
mod mappings;
mod trust;

use crate::error::{CacheError, Result};
use crate::format::mapping::MAPPING_VALUE_SIZE;
use crate::format::superblock::*;
use pdata::block_manager::{BlockManager, DEFAULT_CACHE_BLOCKS};
use pdata::io::BlockDevice;
use pdata::live::LiveMetadata;
use pdata::space_map::format::SmRoot;
use pdata::transaction_manager::TransactionManager;
use pdata::{array, bitset};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

pub struct CacheMetadata {
    tm: TransactionManager,
    /// The superblock as it will be written at the next commit (CLEAN_SHUTDOWN
    /// is decided by the commit).
    sb: Superblock,
    /// The superblock on disk.
    committed: Superblock,
    /// CLEAN_SHUTDOWN was set when the metadata was opened (or aborted to).
    clean_when_opened: bool,
    /// The stored dirty bits, discard bits and hints are exact.
    trusted: bool,
    /// Cache blocks whose dirty state this session set (exact even untrusted).
    dirty_touched: FxHashSet<u32>,
    /// Discard blocks this session set or cleared.
    discard_touched: FxHashSet<u64>,
    /// The policy's hints in core, written (array rebuilt) at the next commit
    /// when `hints_dirty`.
    hints: Option<Vec<u32>>,
    hints_dirty: bool,
    /// Origin block -> cache block, built on the first insert.
    by_oblock: Option<FxHashMap<u64, u32>>,
}

impl CacheMetadata {
    /// Formats a new cache as the kernel does (an empty cache committed
    /// first), then sizes it to `nr_cache_blocks` with `policy` and commits
    /// again. Refuses a device whose block 0 is not all zero unless `force`.
    pub fn format(
        dev: Arc<dyn BlockDevice>,
        version: u32,
        block_sectors: u32,
        nr_cache_blocks: u32,
        policy: &Policy,
        force: bool,
    ) -> Result<Self> {
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(CacheError::Invalid(format!(
                "metadata version {version}: only {MIN_VERSION} and {MAX_VERSION} exist"
            )));
        }
        if !(MIN_DATA_BLOCK_SIZE..=MAX_DATA_BLOCK_SIZE).contains(&block_sectors)
            || !block_sectors.is_multiple_of(MIN_DATA_BLOCK_SIZE)
        {
            return Err(CacheError::Invalid(format!(
                "cache block size {block_sectors} sectors: it must be a multiple of {MIN_DATA_BLOCK_SIZE} between {MIN_DATA_BLOCK_SIZE} and {MAX_DATA_BLOCK_SIZE}"
            )));
        }
        policy.check().map_err(CacheError::Invalid)?;
        let bm = BlockManager::new(dev, DEFAULT_CACHE_BLOCKS, true);
        if !force && bm.read_raw(SUPERBLOCK_LOCATION)?.iter().any(|&b| b != 0) {
            return Err(CacheError::AlreadyFormatted);
        }
        let mut tm = TransactionManager::format(bm)?;
        let mapping_root = array::new(&mut tm, MAPPING_VALUE_SIZE, 0, &[0; MAPPING_VALUE_SIZE])?;
        let dirty_root = if version >= 2 {
            bitset::new(&mut tm, 0, false)?
        } else {
            0
        };
        let discard_root = bitset::new(&mut tm, 0, false)?;
        let sb = Superblock {
            flags: 0,
            uuid: [0; UUID_SIZE],
            version,
            policy_name: [0; POLICY_NAME_SIZE],
            policy_hint_size: 0,
            metadata_sm_root: SmRoot::default(),
            mapping_root,
            hint_root: 0,
            discard_root,
            discard_block_size: 0,
            discard_nr_blocks: 0,
            data_block_size: block_sectors,
            cache_blocks: 0,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
            stats: Stats::default(),
            policy_version: [0; POLICY_VERSION_WORDS],
            dirty_root,
        };
        let mut md = CacheMetadata {
            tm,
            committed: sb.clone(),
            sb,
            // A new cache has nothing to distrust (the kernel says the same).
            clean_when_opened: true,
            trusted: true,
            dirty_touched: FxHashSet::default(),
            discard_touched: FxHashSet::default(),
            hints: None,
            hints_dirty: false,
            by_oblock: None,
        };
        md.commit(false)?;
        md.resize(nr_cache_blocks)?;
        md.save_hints(policy, &vec![0; nr_cache_blocks as usize])?;
        md.commit(false)?;
        Ok(md)
    }

    /// Opens existing metadata. Unknown incompat flags refuse it; unknown
    /// compat_ro flags open it read-only. Opening for writing clears
    /// CLEAN_SHUTDOWN on disk at once, as the kernel does.
    pub fn open(dev: Arc<dyn BlockDevice>, writable: bool) -> Result<Self> {
        Self::open_with_cache(dev, writable, DEFAULT_CACHE_BLOCKS)
    }

    /// `open` with a block cache of `cache_blocks` blocks.
    pub fn open_with_cache(
        dev: Arc<dyn BlockDevice>,
        writable: bool,
        cache_blocks: usize,
    ) -> Result<Self> {
        let probe = BlockManager::new(dev.clone(), 4, false);
        let sb = read_superblock(&probe)?;
        drop(probe);
        let writable = writable && sb.compat_ro_flags == 0;
        let bm = BlockManager::new(dev, cache_blocks, writable);
        let tm = TransactionManager::open(bm, &sb.metadata_sm_root)?;
        let clean = sb.clean_shutdown();
        let mut md = CacheMetadata {
            tm,
            committed: sb.clone(),
            sb,
            clean_when_opened: clean,
            trusted: clean,
            dirty_touched: FxHashSet::default(),
            discard_touched: FxHashSet::default(),
            hints: None,
            hints_dirty: false,
            by_oblock: None,
        };
        if writable && clean {
            md.write_flags_in_place(md.committed.flags & !FLAG_CLEAN_SHUTDOWN)?;
        }
        md.sb.flags &= !FLAG_CLEAN_SHUTDOWN;
        Ok(md)
    }

    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    pub fn version(&self) -> u32 {
        self.sb.version
    }

    /// Cache block size, in sectors.
    pub fn data_block_size(&self) -> u32 {
        self.sb.data_block_size
    }

    pub fn nr_cache_blocks(&self) -> u32 {
        self.sb.cache_blocks
    }

    pub fn policy(&self) -> Policy {
        self.sb.policy()
    }

    /// Whether CLEAN_SHUTDOWN was set when the metadata was opened.
    pub fn clean_when_opened(&self) -> bool {
        self.clean_when_opened
    }

    pub fn needs_check(&self) -> bool {
        self.sb.needs_check()
    }

    pub fn nr_metadata_blocks(&self) -> u64 {
        self.tm.nr_metadata_blocks()
    }

    pub fn nr_free_metadata_blocks(&self) -> u64 {
        self.tm.nr_free_metadata_blocks()
    }

    pub fn stats(&self) -> Stats {
        self.sb.stats
    }

    /// New statistics, written at the next commit.
    pub fn set_stats(&mut self, stats: Stats) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        self.sb.stats = stats;
        Ok(())
    }

    fn check_cblock(&self, cblock: u64) -> Result<u32> {
        if cblock >= u64::from(self.sb.cache_blocks) {
            return Err(CacheError::CblockOutOfRange {
                cblock,
                nr_cache_blocks: self.sb.cache_blocks,
            });
        }
        Ok(cblock as u32)
    }

    /// Rewrites block 0 with only `flags` changed: it still describes the
    /// committed transaction, and fits in one sector (see DESIGN.md).
    fn write_flags_in_place(&mut self, flags: u32) -> Result<()> {
        let mut on_disk = self.committed.clone();
        on_disk.flags = flags;
        let r = self.tm.bm().write_superblock(
            SUPERBLOCK_LOCATION,
            &SUPERBLOCK_VALIDATOR,
            on_disk.pack(),
        );
        if let Err(e) = r {
            self.tm.poison(e.to_string());
            return Err(e.into());
        }
        self.committed.flags = flags;
        Ok(())
    }

    /// Sets NEEDS_CHECK in the on-disk superblock at once.
    pub fn set_needs_check(&mut self) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        self.sb.flags |= FLAG_NEEDS_CHECK;
        self.write_flags_in_place(self.committed.flags | FLAG_NEEDS_CHECK)
    }

    /// Clears NEEDS_CHECK at the next commit.
    pub fn clear_needs_check(&mut self) {
        self.sb.flags &= !FLAG_NEEDS_CHECK;
    }

    /// Makes the transaction durable: every block but the superblock is
    /// written and flushed, then the superblock is written and flushed.
    /// `clean` sets CLEAN_SHUTDOWN (the cache is being shut down cleanly).
    pub fn commit(&mut self, clean: bool) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let r = self.commit_inner(clean);
        if let Err(e) = &r {
            self.tm.poison(format!("commit failed: {e}"));
        }
        r
    }

    fn commit_inner(&mut self, clean: bool) -> Result<()> {
        // 1. Client-level state: what a clean shutdown promises, the hints.
        if clean {
            self.prepare_clean_shutdown()?;
        }
        if self.hints_dirty {
            self.write_hints()?;
        }
        // 2. Everything but the superblock, durably.
        self.sb.metadata_sm_root = self.tm.pre_commit()?;
        // 3. Only then the superblock; nothing fallible is left before it.
        let mut sb = self.sb.clone();
        sb.flags &= !FLAG_CLEAN_SHUTDOWN;
        if clean {
            sb.flags |= FLAG_CLEAN_SHUTDOWN;
        }
        let block = sb.pack();
        self.tm
            .commit(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR, block)?;
        self.committed = sb;
        if clean {
            self.trusted = true;
            self.dirty_touched.clear();
            self.discard_touched.clear();
        }
        Ok(())
    }

    /// Drops the transaction and goes back to the last commit. As in the
    /// kernel, the flags are not touched: CLEAN_SHUTDOWN on disk decides
    /// what is trusted from now on.
    pub fn abort(&mut self) -> Result<()> {
        // Forget the cache first: the superblock on disk is the authority (a
        // failed commit may or may not have written the new one).
        self.tm.bm().reset();
        let sb = read_superblock(self.tm.bm())?;
        self.tm.abort(&sb.metadata_sm_root)?;
        self.clean_when_opened = sb.clean_shutdown();
        self.trusted = self.clean_when_opened;
        self.committed = sb.clone();
        self.sb = sb;
        self.sb.flags &= !FLAG_CLEAN_SHUTDOWN;
        self.dirty_touched.clear();
        self.discard_touched.clear();
        self.hints = None;
        self.hints_dirty = false;
        self.by_oblock = None;
        Ok(())
    }
}

impl LiveMetadata for CacheMetadata {
    fn transaction_manager(&self) -> &TransactionManager {
        &self.tm
    }

    fn transaction_manager_mut(&mut self) -> &mut TransactionManager {
        &mut self.tm
    }
}

/// Reads and validates the superblock: refuses unknown incompat flags.
pub fn read_superblock(bm: &BlockManager) -> Result<Superblock> {
    let raw = bm.read_raw(SUPERBLOCK_LOCATION)?;
    if raw.iter().all(|&b| b == 0) {
        return Err(CacheError::Unformatted);
    }
    let sb = {
        let b = bm.read_lock(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR)?;
        Superblock::unpack(&b)
    };
    // A probe's cached copy must not outlive it under another validator.
    bm.forget(SUPERBLOCK_LOCATION);
    if sb.incompat_flags != 0 {
        return Err(CacheError::Incompatible(sb.incompat_flags));
    }
    if sb.data_block_size == 0 {
        return Err(CacheError::Invalid(
            "superblock has a zero cache block size".into(),
        ));
    }
    if sb.version >= 2 && sb.dirty_root == 0 {
        return Err(CacheError::Invalid(
            "version 2 superblock without a dirty bitset".into(),
        ));
    }
    Ok(sb)
}
