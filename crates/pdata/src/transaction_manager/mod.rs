//! The transaction manager: copy-on-write shadowing and the two-phase commit.
//!
//! Rules it enforces:
//! 1. a block the last committed transaction references is never written:
//!    `shadow` copies it unless it was allocated or copied in this
//!    transaction (the shadow table) and is not shared;
//! 2. the superblock is written last, by `commit`, only after `pre_commit`
//!    made every other block durable. It is never dirty in the cache, so no
//!    flush, eviction or drop can write it early.
//!
//! Any I/O error poisons the manager: every later call fails until `abort`.

use crate::block_manager::{BlockManager, BlockRead, ReadRef, Validator, WriteRef};
use crate::space_map::format::SmRoot;
use crate::space_map::metadata::{self, MetadataSmOwner, MetadataSpaceMap};
use crate::tm_ops::TransactionOps;
use crate::{Block, Error, Result};
use rustc_hash::FxHashSet;

pub struct TransactionManager {
    bm: BlockManager,
    sm: MetadataSpaceMap,
    /// Blocks allocated or copied in this transaction: free to modify in place.
    shadows: FxHashSet<u64>,
    poisoned: Option<String>,
    /// Test-only: the pre-fix commit that dirtied the superblock first.
    seed_bug: bool,
}

impl TransactionManager {
    /// A new metadata space map over the whole device (block 0 reserved for
    /// the superblock). Nothing is on disk until the first commit.
    pub fn format(bm: BlockManager) -> Result<Self> {
        let sm = MetadataSpaceMap::format(bm.nr_blocks())?;
        Ok(Self::with_sm(bm, sm))
    }

    /// Opens the metadata space map whose root a superblock holds.
    pub fn open(bm: BlockManager, root: &SmRoot) -> Result<Self> {
        let sm = MetadataSpaceMap::open(&bm, root)?;
        Ok(Self::with_sm(bm, sm))
    }

    /// As [`TransactionManager::open`], but read-only metadata opens even
    /// when its metadata space map cannot be read (a damaged index), for
    /// reading its trees; the map's counts are then refused. A writable
    /// block manager needs the map.
    pub fn open_tolerant(bm: BlockManager, root: &SmRoot) -> Result<Self> {
        if bm.is_writable() {
            return Self::open(bm, root);
        }
        let sm = match MetadataSpaceMap::open(&bm, root) {
            Ok(sm) => sm,
            Err(e) if !e.is_io() => MetadataSpaceMap::unreadable(root, e.to_string()),
            Err(e) => return Err(e),
        };
        Ok(Self::with_sm(bm, sm))
    }

    fn with_sm(bm: BlockManager, sm: MetadataSpaceMap) -> Self {
        TransactionManager {
            bm,
            sm,
            shadows: FxHashSet::default(),
            poisoned: None,
            seed_bug: false,
        }
    }

    pub fn bm(&self) -> &BlockManager {
        &self.bm
    }

    /// Why the transaction is dead, if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.poisoned.clone().or_else(|| self.bm.poisoned())
    }

    /// Marks the transaction dead: only `abort` helps.
    pub fn poison(&mut self, why: impl Into<String>) {
        if self.poisoned.is_none() {
            self.poisoned = Some(why.into());
        }
    }

    /// Fails when the transaction is dead.
    pub fn check_alive(&self) -> Result<()> {
        if self.poisoned.is_none() && !self.bm.is_poisoned() {
            return Ok(());
        }
        match self.poisoned() {
            Some(why) => Err(Error::Poisoned(why)),
            None => Ok(()),
        }
    }

    /// Poisons on device errors, which leave the transaction in doubt.
    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if e.is_io() {
                self.poison(e.to_string());
            }
        }
        r
    }

    /// A new zeroed block, write-locked, counted once.
    pub fn new_block(&mut self, v: &'static dyn Validator) -> Result<WriteRef> {
        self.check_alive()?;
        let b = self.sm.new_block(&self.bm)?;
        match self.bm.write_lock_zero(b, v) {
            Ok(w) => {
                self.shadows.insert(b);
                Ok(w)
            }
            Err(e) => {
                let _ = self.sm.dec(&self.bm, b);
                self.note(Err(e))
            }
        }
    }

    /// Makes `orig` writable in this transaction. Returns the block to write
    /// (a copy unless `orig` is already this transaction's own and unshared)
    /// and whether the copy shares `orig`'s children, which the caller must
    /// then count once more.
    pub fn shadow(&mut self, orig: u64, v: &'static dyn Validator) -> Result<(WriteRef, bool)> {
        self.check_alive()?;
        let r = self.shadow_inner(orig, v);
        self.note(r)
    }

    fn shadow_inner(&mut self, orig: u64, v: &'static dyn Validator) -> Result<(WriteRef, bool)> {
        let count = self.sm.count(&self.bm, orig)?;
        if count == 0 {
            return Err(Error::corrupt(
                orig,
                v.name(),
                "shadowing a block the space map says is free",
            ));
        }
        let shared = count > 1;
        if !shared && self.shadows.contains(&orig) {
            return Ok((self.bm.write_lock(orig, v)?, false));
        }
        let copy = self.sm.new_block(&self.bm)?;
        self.sm.dec(&self.bm, orig)?;
        let src = self.bm.read_lock(orig, v)?;
        let mut w = self.bm.write_lock_zero(copy, v)?;
        w.copy_from_slice(&src[..]);
        drop(src);
        self.shadows.insert(copy);
        Ok((w, shared))
    }

    /// Write-locks a block already shadowed in this transaction.
    pub fn write_lock_shadowed(&mut self, loc: u64, v: &'static dyn Validator) -> Result<WriteRef> {
        self.check_alive()?;
        if !self.shadows.contains(&loc) {
            return Err(Error::invalid(format!(
                "block {loc} is written in place but was not shadowed in this transaction"
            )));
        }
        let r = self.bm.write_lock(loc, v);
        self.note(r)
    }

    /// True when `loc` was allocated or copied in this transaction.
    pub fn is_shadowed(&self, loc: u64) -> bool {
        self.shadows.contains(&loc)
    }

    pub fn inc(&mut self, b: u64) -> Result<()> {
        self.check_alive()?;
        let r = self.sm.inc(&self.bm, b);
        self.note(r)
    }

    pub fn dec(&mut self, b: u64) -> Result<()> {
        self.check_alive()?;
        let r = self.sm.dec(&self.bm, b);
        self.note(r)
    }

    pub fn ref_count(&self, b: u64) -> Result<u32> {
        self.sm.count(&self.bm, b)
    }

    pub fn is_shared(&self, b: u64) -> Result<bool> {
        Ok(self.ref_count(b)? > 1)
    }

    pub fn nr_metadata_blocks(&self) -> u64 {
        self.sm.nr_blocks()
    }

    pub fn nr_free_metadata_blocks(&self) -> u64 {
        self.sm.nr_free()
    }

    /// Grows the metadata space map to `nr_blocks` (the device must hold them).
    pub fn extend_metadata(&mut self, nr_blocks: u64) -> Result<()> {
        self.check_alive()?;
        if nr_blocks > self.bm.nr_blocks() {
            self.bm
                .device()
                .grow(nr_blocks)
                .map_err(|source| Error::Io {
                    op: "growing the device to",
                    block: nr_blocks,
                    source,
                })?;
        }
        self.sm.extend(nr_blocks)
    }

    /// Phase one: write the metadata space map, then every dirty block but
    /// the superblock, then flush the device. Returns the space map root to
    /// put in the superblock. Any failure poisons the transaction.
    pub fn pre_commit(&mut self) -> Result<SmRoot> {
        self.check_alive()?;
        let r = metadata::write_out(self).and_then(|root| {
            if !self.seed_bug {
                self.bm.flush()?;
            }
            Ok(root)
        });
        if let Err(e) = &r {
            self.poison(format!("pre-commit failed: {e}"));
        }
        r
    }

    /// Phase two: write `superblock` at `loc` and flush. Nothing else is
    /// dirty at this point. On failure the transaction is poisoned and the
    /// new superblock is nowhere in the cache.
    pub fn commit(
        &mut self,
        loc: u64,
        v: &'static dyn Validator,
        superblock: Box<Block>,
    ) -> Result<()> {
        self.check_alive()?;
        if self.seed_bug {
            return self.commit_pre_fix(loc, v, superblock);
        }
        self.shadows.clear();
        let r = self.bm.write_superblock(loc, v, superblock);
        if let Err(e) = &r {
            self.poison(format!("commit failed: {e}"));
        }
        r
    }

    /// Drops the transaction: forgets every cached block without writing
    /// and reopens the metadata space map from the committed `root`.
    pub fn abort(&mut self, root: &SmRoot) -> Result<()> {
        self.bm.reset();
        self.shadows.clear();
        self.poisoned = None;
        self.sm = MetadataSpaceMap::open(&self.bm, root)?;
        Ok(())
    }

    /// Test-only: brings back the kernel's pre-fix commit, in which the
    /// superblock was dirtied before the other blocks were flushed and was
    /// still written by a later flush when that first flush failed.
    #[doc(hidden)]
    pub fn enable_seed_bug_mutation(&mut self) {
        self.seed_bug = true;
        self.bm.set_poison_on_error(false);
    }

    fn commit_pre_fix(
        &mut self,
        loc: u64,
        v: &'static dyn Validator,
        superblock: Box<Block>,
    ) -> Result<()> {
        self.shadows.clear();
        self.bm.forget(loc);
        let mut w = self.bm.write_lock_zero(loc, v)?;
        w.copy_from_slice(&superblock[..]);
        drop(w);
        let first = self.bm.flush();
        if first.is_err() {
            // The old code unlocked the (dirty) superblock and flushed again.
            let _ = self.bm.flush();
        }
        first
    }
}

impl BlockRead for TransactionManager {
    fn read_lock(&self, loc: u64, v: &'static dyn Validator) -> Result<ReadRef> {
        self.check_alive()?;
        self.bm.read_lock(loc, v)
    }

    fn prefetch(&self, locs: &[u64], v: &'static dyn Validator) {
        self.bm.prefetch(locs, v)
    }
}

/// The structures below reach the transaction through this trait; the
/// inherent methods above stay for callers that hold the manager itself.
impl TransactionOps for TransactionManager {
    fn new_block(&mut self, v: &'static dyn Validator) -> Result<WriteRef> {
        TransactionManager::new_block(self, v)
    }

    fn shadow(&mut self, orig: u64, v: &'static dyn Validator) -> Result<(WriteRef, bool)> {
        TransactionManager::shadow(self, orig, v)
    }

    fn write_lock_shadowed(&mut self, loc: u64, v: &'static dyn Validator) -> Result<WriteRef> {
        TransactionManager::write_lock_shadowed(self, loc, v)
    }

    fn is_shadowed(&self, loc: u64) -> bool {
        TransactionManager::is_shadowed(self, loc)
    }

    fn inc(&mut self, b: u64) -> Result<()> {
        TransactionManager::inc(self, b)
    }

    fn dec(&mut self, b: u64) -> Result<()> {
        TransactionManager::dec(self, b)
    }

    fn ref_count(&self, b: u64) -> Result<u32> {
        TransactionManager::ref_count(self, b)
    }
}

impl MetadataSmOwner for TransactionManager {
    fn metadata_sm(&self) -> &MetadataSpaceMap {
        &self.sm
    }

    fn metadata_sm_mut(&mut self) -> &mut MetadataSpaceMap {
        &mut self.sm
    }
}
