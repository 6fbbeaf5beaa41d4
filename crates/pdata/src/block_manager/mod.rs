//! The block manager: a bounded cache of metadata blocks with per-block read
//! and write locks, validators, write-back and flush.
//!
//! Invariants:
//! * a block read from the device is validated before anyone sees it;
//! * a block written to the device is stamped and checked first;
//! * `flush` returns only when every block dirty at the call is durable;
//! * after a write or flush error the manager is poisoned: it writes nothing
//!   more (no flush, no eviction write-back) until `reset`, which drops every
//!   cached block without writing it.
//!
//! Dropping the manager writes nothing: uncommitted blocks are unreachable
//! anyway, and a poisoned manager must not write at all.
//!
//! The superblock never sits dirty in the cache: it is written only through
//! [`BlockManager::write_superblock`], after everything else is durable.

mod validator;

pub use validator::{
    check_location_and_checksum, le32, le64, put_le32, put_le64, stamp_and_seal, SealedValidator,
    Validator,
};

use crate::io::BlockDevice;
use crate::{Block, Error, Result, BLOCK_SIZE};
use parking_lot::lock_api::{ArcRwLockReadGuard, ArcRwLockWriteGuard};
use parking_lot::{Mutex, RawRwLock, RwLock};
use rustc_hash::FxHashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Default cache size in blocks (64 MiB).
pub const DEFAULT_CACHE_BLOCKS: usize = 16 * 1024;

/// Longest single read of `prefetch`, in blocks (1 MiB).
const MAX_PREFETCH_RUN: usize = 256;

/// A cached block. The data sits inline, next to the lock word: a cache hit
/// touches one allocation, not two (lookups are bound by cache misses).
pub struct Buffer {
    dirty: bool,
    data: Block,
}

type Slot = Arc<RwLock<Buffer>>;

fn new_slot(data: &Block, dirty: bool) -> Slot {
    Arc::new(RwLock::new(Buffer { dirty, data: *data }))
}

struct Entry {
    slot: Slot,
    validator: &'static dyn Validator,
    last_used: u64,
}

struct State {
    map: FxHashMap<u64, Entry>,
    /// Blocks write-locked since they were last written: flush candidates.
    dirty: rustc_hash::FxHashSet<u64>,
    clock: u64,
    poisoned: Option<String>,
}

pub struct BlockManager {
    dev: Arc<dyn BlockDevice>,
    state: Mutex<State>,
    capacity: usize,
    writable: bool,
    /// Mirrors `State::poisoned.is_some()`, for a lock-free fast path.
    poison_flag: std::sync::atomic::AtomicBool,
    /// Test-only: keep writing after a write error (the pre-fix kernel did).
    poison_on_error: std::sync::atomic::AtomicBool,
}

/// A shared lock on a cached block.
pub struct ReadRef {
    loc: u64,
    guard: ArcRwLockReadGuard<RawRwLock, Buffer>,
}

impl ReadRef {
    pub fn loc(&self) -> u64 {
        self.loc
    }
}

impl Deref for ReadRef {
    type Target = Block;
    fn deref(&self) -> &Block {
        &self.guard.data
    }
}

/// An exclusive lock on a cached block. The block is dirty from the moment
/// it is write-locked; it is written back at the next flush (or eviction).
pub struct WriteRef {
    loc: u64,
    guard: ArcRwLockWriteGuard<RawRwLock, Buffer>,
}

impl WriteRef {
    pub fn loc(&self) -> u64 {
        self.loc
    }
}

impl Deref for WriteRef {
    type Target = Block;
    fn deref(&self) -> &Block {
        &self.guard.data
    }
}

impl DerefMut for WriteRef {
    fn deref_mut(&mut self) -> &mut Block {
        &mut self.guard.data
    }
}

fn zeroed_block() -> Box<Block> {
    vec![0u8; BLOCK_SIZE]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("vector has BLOCK_SIZE bytes"))
}

/// A fresh zero-filled block on the heap.
pub fn new_block_buffer() -> Box<Block> {
    zeroed_block()
}

impl BlockManager {
    pub fn new(dev: Arc<dyn BlockDevice>, capacity: usize, writable: bool) -> Self {
        BlockManager {
            dev,
            state: Mutex::new(State {
                map: FxHashMap::default(),
                dirty: Default::default(),
                clock: 0,
                poisoned: None,
            }),
            capacity: capacity.max(64),
            writable,
            poison_flag: std::sync::atomic::AtomicBool::new(false),
            poison_on_error: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    pub fn nr_blocks(&self) -> u64 {
        self.dev.nr_blocks()
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Why the manager refuses to write, if it does.
    pub fn poisoned(&self) -> Option<String> {
        if !self.is_poisoned() {
            return None;
        }
        self.state.lock().poisoned.clone()
    }

    /// True once a write or flush failed (until `reset`).
    pub fn is_poisoned(&self) -> bool {
        self.poison_flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Test-only switch that reproduces the pre-fix kernel: write errors do
    /// not stop later writes.
    #[doc(hidden)]
    pub fn set_poison_on_error(&self, on: bool) {
        self.poison_on_error
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn check_bounds(&self, loc: u64) -> Result<()> {
        let nr_blocks = self.dev.nr_blocks();
        if loc >= nr_blocks {
            return Err(Error::OutOfBounds {
                block: loc,
                nr_blocks,
            });
        }
        Ok(())
    }

    fn poison(&self, st: &mut State, why: String) {
        if self
            .poison_on_error
            .load(std::sync::atomic::Ordering::SeqCst)
            && st.poisoned.is_none()
        {
            st.poisoned = Some(why);
            self.poison_flag
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn check_not_poisoned(st: &State) -> Result<()> {
        match &st.poisoned {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Finds or loads block `loc`, validating it on load.
    fn slot(&self, loc: u64, v: &'static dyn Validator, for_write: bool) -> Result<Slot> {
        let mut st = self.state.lock();
        if for_write {
            Self::check_not_poisoned(&st)?;
            st.dirty.insert(loc);
        }
        st.clock += 1;
        let clock = st.clock;
        if let Some(e) = st.map.get_mut(&loc) {
            if !std::ptr::addr_eq(e.validator, v) && e.validator.name() != v.name() {
                return Err(Error::ValidatorMismatch {
                    block: loc,
                    held: e.validator.name(),
                    wanted: v.name(),
                });
            }
            e.last_used = clock;
            return Ok(e.slot.clone());
        }
        // Only a miss needs the bounds: nothing out of bounds is cached.
        if let Err(e) = self.check_bounds(loc) {
            if for_write {
                st.dirty.remove(&loc);
            }
            return Err(e);
        }
        let slot = new_slot(&[0; BLOCK_SIZE], false);
        {
            // The slot is not shared yet: this lock is uncontended.
            let mut b = slot.write();
            self.dev
                .read_block(loc, &mut b.data)
                .map_err(|source| Error::Io {
                    op: "reading",
                    block: loc,
                    source,
                })?;
            v.check(loc, &b.data)?;
        }
        st.map.insert(
            loc,
            Entry {
                slot: slot.clone(),
                validator: v,
                last_used: clock,
            },
        );
        self.evict_if_full(&mut st)?;
        Ok(slot)
    }

    /// Takes a shared lock on `loc`, reading and validating it if it is not cached.
    pub fn read_lock(&self, loc: u64, v: &'static dyn Validator) -> Result<ReadRef> {
        let slot = self.slot(loc, v, false)?;
        let guard = slot.try_read_arc().ok_or(Error::Locked { block: loc })?;
        Ok(ReadRef { loc, guard })
    }

    /// Takes an exclusive lock on `loc`, reading and validating it if needed.
    pub fn write_lock(&self, loc: u64, v: &'static dyn Validator) -> Result<WriteRef> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let slot = self.slot(loc, v, true)?;
        let mut guard = slot.try_write_arc().ok_or(Error::Locked { block: loc })?;
        guard.dirty = true;
        Ok(WriteRef { loc, guard })
    }

    /// Takes an exclusive lock on a zero-filled `loc` without reading it.
    pub fn write_lock_zero(&self, loc: u64, v: &'static dyn Validator) -> Result<WriteRef> {
        self.check_writable()?;
        self.check_bounds(loc)?;
        let mut st = self.state.lock();
        st.clock += 1;
        st.dirty.insert(loc);
        let clock = st.clock;
        let slot = match st.map.get_mut(&loc) {
            Some(e) => {
                e.validator = v;
                e.last_used = clock;
                e.slot.clone()
            }
            None => {
                let slot = new_slot(&[0; BLOCK_SIZE], true);
                st.map.insert(
                    loc,
                    Entry {
                        slot: slot.clone(),
                        validator: v,
                        last_used: clock,
                    },
                );
                self.evict_if_full(&mut st)?;
                slot
            }
        };
        drop(st);
        let mut guard = slot.try_write_arc().ok_or(Error::Locked { block: loc })?;
        guard.data.fill(0);
        guard.dirty = true;
        Ok(WriteRef { loc, guard })
    }

    fn check_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        Self::check_not_poisoned(&self.state.lock())
    }

    /// Reads the uncached blocks among `locs` ahead of their use, in runs of
    /// consecutive locations, and caches those that validate. A block that
    /// fails to read or validate is left out: its `read_lock` reports it.
    /// Reads no more than half the cache, so the blocks stay until used.
    pub fn prefetch(&self, locs: &[u64], v: &'static dyn Validator) {
        let mut want: Vec<u64> = {
            let st = self.state.lock();
            locs.iter()
                .copied()
                .filter(|&loc| loc < self.dev.nr_blocks() && !st.map.contains_key(&loc))
                .take(self.capacity / 2)
                .collect()
        };
        if want.len() < 2 {
            return;
        }
        want.sort_unstable();
        want.dedup();
        crate::io::will_need_sorted(self.dev.as_ref(), want.iter().copied());
        let mut loaded = Vec::with_capacity(want.len());
        let mut i = 0;
        while i < want.len() {
            let mut j = i + 1;
            while j < want.len() && want[j] == want[j - 1] + 1 && j - i < MAX_PREFETCH_RUN {
                j += 1;
            }
            let mut bufs: Vec<Box<Block>> = (i..j).map(|_| zeroed_block()).collect();
            let mut refs: Vec<&mut Block> = bufs.iter_mut().map(|b| &mut **b).collect();
            if self.dev.read_blocks(want[i], &mut refs).is_ok() {
                for (k, data) in bufs.into_iter().enumerate() {
                    let loc = want[i + k];
                    if v.check(loc, &data).is_ok() {
                        loaded.push((loc, data));
                    }
                }
            }
            i = j;
        }
        let mut st = self.state.lock();
        for (loc, data) in loaded {
            st.clock += 1;
            let clock = st.clock;
            st.map.entry(loc).or_insert_with(|| Entry {
                slot: new_slot(&data, false),
                validator: v,
                last_used: clock,
            });
        }
        // Nothing here is dirty, so eviction cannot fail in a way that matters.
        let _ = self.evict_if_full(&mut st);
    }

    /// Reads a block straight from the device, bypassing the cache and validators.
    pub fn read_raw(&self, loc: u64) -> Result<Box<Block>> {
        self.check_bounds(loc)?;
        let mut data = zeroed_block();
        self.dev
            .read_block(loc, &mut data)
            .map_err(|source| Error::Io {
                op: "reading",
                block: loc,
                source,
            })?;
        Ok(data)
    }

    /// Writes back the least recently used unlocked blocks until the cache is
    /// at 7/8 of its capacity. Dirty blocks are stamped and written first.
    fn evict_if_full(&self, st: &mut State) -> Result<()> {
        if st.map.len() <= self.capacity {
            return Ok(());
        }
        let target = self.capacity - self.capacity / 8;
        let mut idle: Vec<(u64, u64)> = st
            .map
            .iter()
            .filter(|(_, e)| Arc::strong_count(&e.slot) == 1)
            .map(|(&loc, e)| (e.last_used, loc))
            .collect();
        idle.sort_unstable();
        let excess = st.map.len() - target;
        let victims: Vec<u64> = idle.iter().take(excess).map(|&(_, loc)| loc).collect();
        let dirty: Vec<u64> = victims
            .iter()
            .copied()
            .filter(|loc| st.map.get(loc).is_some_and(|e| e.slot.read().dirty))
            .collect();
        if !dirty.is_empty() {
            Self::check_not_poisoned(st)?;
            self.write_dirty(st, dirty)?;
        }
        for loc in victims {
            st.map.remove(&loc);
            st.dirty.remove(&loc);
        }
        Ok(())
    }

    /// Stamps and writes the given dirty blocks, in runs of consecutive
    /// locations. Blocks are clean afterwards even if the write failed: like
    /// the kernel's buffer cache, a failed write is not retried.
    fn write_dirty(&self, st: &mut State, mut locs: Vec<u64>) -> Result<()> {
        locs.sort_unstable();
        for loc in &locs {
            st.dirty.remove(loc);
        }
        let mut guards = Vec::with_capacity(locs.len());
        for &loc in &locs {
            let e = st.map.get(&loc).ok_or_else(|| {
                Error::invalid(format!(
                    "block {loc} vanished from the cache during write-back"
                ))
            })?;
            let mut g = e.slot.try_write_arc().ok_or(Error::Locked { block: loc })?;
            e.validator.prepare_for_write(loc, &mut g.data)?;
            guards.push((loc, g));
        }
        let mut result = Ok(());
        let mut i = 0;
        while i < guards.len() {
            let mut j = i + 1;
            while j < guards.len() && guards[j].0 == guards[j - 1].0 + 1 {
                j += 1;
            }
            let bufs: Vec<&Block> = guards[i..j].iter().map(|(_, g)| &g.data).collect();
            if let Err(source) = self.dev.write_blocks(guards[i].0, &bufs) {
                let err = Error::Io {
                    op: "writing",
                    block: guards[i].0,
                    source,
                };
                self.poison(st, err.to_string());
                result = Err(err);
                // Later runs are still attempted only in the pre-fix mutation.
                if self
                    .poison_on_error
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    for (_, g) in guards.iter_mut() {
                        g.dirty = false;
                    }
                    return result;
                }
            }
            for (_, g) in guards[i..j].iter_mut() {
                g.dirty = false;
            }
            i = j;
        }
        result
    }

    /// Writes every dirty block, then flushes the device. Success means
    /// every block that was dirty at the call is durable.
    pub fn flush(&self) -> Result<()> {
        let mut st = self.state.lock();
        Self::check_not_poisoned(&st)?;
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let dirty: Vec<u64> = st
            .dirty
            .iter()
            .copied()
            .filter(|loc| match st.map.get(loc) {
                Some(e) => match e.slot.try_read() {
                    Some(b) => b.dirty,
                    None => true, // write-locked: write_dirty reports it
                },
                None => false,
            })
            .collect();
        st.dirty.clear();
        self.write_dirty(&mut st, dirty)?;
        if let Err(e) = self.dev.flush() {
            self.poison(&mut st, format!("device flush failed: {e}"));
            return Err(Error::Flush(e));
        }
        Ok(())
    }

    /// Writes `data` as block `loc` straight to the device and flushes: the
    /// last step of a commit. The cached copy is replaced only on success;
    /// on failure the block is dropped from the cache and the manager is
    /// poisoned, so nothing can write it later.
    pub fn write_superblock(
        &self,
        loc: u64,
        v: &'static dyn Validator,
        mut data: Box<Block>,
    ) -> Result<()> {
        self.check_writable()?;
        self.check_bounds(loc)?;
        v.prepare_for_write(loc, &mut data)?;
        let mut st = self.state.lock();
        if let Some(e) = st.map.get(&loc) {
            if Arc::strong_count(&e.slot) != 1 {
                return Err(Error::Locked { block: loc });
            }
        }
        st.map.remove(&loc);
        st.dirty.remove(&loc);
        if let Err(source) = self.dev.write_block(loc, &data) {
            let err = Error::Io {
                op: "writing",
                block: loc,
                source,
            };
            self.poison(&mut st, err.to_string());
            return Err(err);
        }
        if let Err(e) = self.dev.flush() {
            self.poison(&mut st, format!("device flush failed: {e}"));
            return Err(Error::Flush(e));
        }
        st.clock += 1;
        let clock = st.clock;
        st.map.insert(
            loc,
            Entry {
                slot: new_slot(&data, false),
                validator: v,
                last_used: clock,
            },
        );
        Ok(())
    }

    /// Drops every cached block, dirty ones included, without writing, and
    /// clears the poison: the state of the device is what was last flushed.
    pub fn reset(&self) {
        let mut st = self.state.lock();
        st.map.clear();
        st.dirty.clear();
        st.poisoned = None;
        self.poison_flag
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Drops the cached copy of `loc` (it must be clean and unlocked) so the
    /// next lock reads it again, possibly under another validator.
    pub fn forget(&self, loc: u64) {
        let mut st = self.state.lock();
        let clean_idle = st
            .map
            .get(&loc)
            .is_some_and(|e| Arc::strong_count(&e.slot) == 1 && !e.slot.read().dirty);
        if clean_idle {
            st.map.remove(&loc);
        }
    }

    /// Number of blocks currently cached.
    pub fn cached_blocks(&self) -> usize {
        self.state.lock().map.len()
    }

    /// Number of dirty cached blocks.
    pub fn dirty_blocks(&self) -> usize {
        self.state
            .lock()
            .map
            .values()
            .filter(|e| e.slot.try_read().is_none_or(|b| b.dirty))
            .count()
    }
}

/// Anything blocks can be read from: the block manager, or a transaction
/// manager (which sees the transaction in progress).
pub trait BlockRead {
    fn read_lock(&self, loc: u64, v: &'static dyn Validator) -> Result<ReadRef>;

    /// A hint that `locs` will be read soon.
    fn prefetch(&self, _locs: &[u64], _v: &'static dyn Validator) {}
}

impl BlockRead for BlockManager {
    fn read_lock(&self, loc: u64, v: &'static dyn Validator) -> Result<ReadRef> {
        BlockManager::read_lock(self, loc, v)
    }

    fn prefetch(&self, locs: &[u64], v: &'static dyn Validator) {
        BlockManager::prefetch(self, locs, v)
    }
}
