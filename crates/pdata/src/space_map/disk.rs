//! The disk (data) space map: reference counts of data-device blocks, kept
//! in metadata blocks (bitmaps, an index B-tree keyed by bitmap number, an
//! overflow tree), all shadowed through the transaction manager.
//!
//! Index entries are cached in memory while the transaction runs and written
//! into the index tree by `commit`, which must run before the transaction
//! manager's pre-commit (it allocates metadata blocks).

use super::format::*;
use crate::block_manager::BlockRead;
use crate::btree::{self, NoRefs};
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};
use rustc_hash::{FxHashMap, FxHashSet};

pub struct DiskSpaceMap {
    nr_blocks: u64,
    committed: SmRoot,
    index_root: u64,
    ref_count_root: u64,
    /// Current index entries loaded or changed in this transaction.
    entries: FxHashMap<u64, IndexEntry>,
    dirty: FxHashSet<u64>,
    /// Committed index entries, loaded on demand.
    old_entries: FxHashMap<u64, IndexEntry>,
    nr_allocated: u64,
    cursor: u64,
}

impl DiskSpaceMap {
    /// A new map over `nr_blocks` blocks, all free.
    pub fn format(tm: &mut (impl TransactionOps + ?Sized), nr_blocks: u64) -> Result<Self> {
        let index_root = btree::empty_tree(tm, INDEX_ENTRY_SIZE)?;
        let ref_count_root = btree::empty_tree(tm, 4)?;
        let mut sm = DiskSpaceMap {
            nr_blocks: 0,
            committed: SmRoot::default(),
            index_root,
            ref_count_root,
            entries: FxHashMap::default(),
            dirty: FxHashSet::default(),
            old_entries: FxHashMap::default(),
            nr_allocated: 0,
            cursor: 0,
        };
        sm.extend(tm, nr_blocks)?;
        Ok(sm)
    }

    pub fn open(root: &SmRoot) -> Self {
        DiskSpaceMap {
            nr_blocks: root.nr_blocks,
            committed: *root,
            index_root: root.bitmap_root,
            ref_count_root: root.ref_count_root,
            entries: FxHashMap::default(),
            dirty: FxHashSet::default(),
            old_entries: FxHashMap::default(),
            nr_allocated: root.nr_allocated,
            cursor: 0,
        }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    pub fn nr_allocated(&self) -> u64 {
        self.nr_allocated
    }

    pub fn nr_free(&self) -> u64 {
        self.nr_blocks.saturating_sub(self.nr_allocated)
    }

    fn check_block(&self, b: u64) -> Result<()> {
        if b >= self.nr_blocks {
            return Err(Error::invalid(format!(
                "data block {b} is beyond the end of the data space map ({} blocks)",
                self.nr_blocks
            )));
        }
        Ok(())
    }

    fn entry(&mut self, tm: &(impl TransactionOps + ?Sized), i: u64) -> Result<IndexEntry> {
        if let Some(ie) = self.entries.get(&i) {
            return Ok(*ie);
        }
        let ie = load_entry(tm, self.index_root, i)?;
        self.entries.insert(i, ie);
        Ok(ie)
    }

    fn old_entry(&mut self, tm: &(impl TransactionOps + ?Sized), i: u64) -> Result<IndexEntry> {
        if let Some(ie) = self.old_entries.get(&i) {
            return Ok(*ie);
        }
        let ie = load_entry(tm, self.committed.bitmap_root, i)?;
        self.old_entries.insert(i, ie);
        Ok(ie)
    }

    /// The current count of data block `b`.
    pub fn count(&mut self, tm: &(impl TransactionOps + ?Sized), b: u64) -> Result<u32> {
        self.check_block(b)?;
        let ie = self.entry(tm, b / ENTRIES_PER_BITMAP)?;
        let bitmap = tm.read_lock(ie.blocknr, &BITMAP_VALIDATOR)?;
        let c = bitmap_get(&bitmap, b % ENTRIES_PER_BITMAP);
        drop(bitmap);
        if c < OVERFLOW_MARK {
            return Ok(c);
        }
        overflow_lookup(tm, self.ref_count_root, b)
    }

    /// Sets the count of `b`, shadowing its bitmap and the overflow tree.
    pub fn set_count(
        &mut self,
        tm: &mut (impl TransactionOps + ?Sized),
        b: u64,
        new: u32,
    ) -> Result<u32> {
        self.check_block(b)?;
        let i = b / ENTRIES_PER_BITMAP;
        let e = b % ENTRIES_PER_BITMAP;
        let mut ie = self.entry(tm, i)?;
        let (mut w, _) = tm.shadow(ie.blocknr, &BITMAP_VALIDATOR)?;
        ie.blocknr = w.loc();
        let old_mark = bitmap_get(&w, e);
        let new_mark = new.min(OVERFLOW_MARK);
        bitmap_set(&mut w, e, new_mark);
        drop(w);
        ie.note_transition(e as u32, old_mark, new_mark);
        self.entries.insert(i, ie);
        self.dirty.insert(i);
        let old = if old_mark == OVERFLOW_MARK {
            overflow_lookup(tm, self.ref_count_root, b)?
        } else {
            old_mark
        };
        if new >= OVERFLOW_MARK {
            let root = self.ref_count_root;
            self.ref_count_root =
                btree::insert(tm, root, &[b], &new.to_le_bytes(), &mut NoRefs(4))?.0;
        } else if old_mark == OVERFLOW_MARK {
            let root = self.ref_count_root;
            self.ref_count_root = btree::remove(tm, root, &[b], &mut NoRefs(4))?;
        }
        if old == 0 && new != 0 {
            self.nr_allocated += 1;
        } else if old != 0 && new == 0 {
            self.nr_allocated -= 1;
        }
        Ok(old)
    }

    pub fn inc(&mut self, tm: &mut (impl TransactionOps + ?Sized), b: u64) -> Result<()> {
        let old = self.count(tm, b)?;
        let new = old.checked_add(1).ok_or_else(|| {
            Error::invalid(format!("reference count of data block {b} overflows"))
        })?;
        self.set_count(tm, b, new)?;
        Ok(())
    }

    pub fn dec(&mut self, tm: &mut (impl TransactionOps + ?Sized), b: u64) -> Result<()> {
        let old = self.count(tm, b)?;
        if old == 0 {
            return Err(Error::invalid(format!(
                "unable to decrement the count of free data block {b}"
            )));
        }
        self.set_count(tm, b, old - 1)?;
        Ok(())
    }

    /// Allocates a block free now and in the committed state; count 1.
    pub fn new_block(&mut self, tm: &mut (impl TransactionOps + ?Sized)) -> Result<u64> {
        let start = self.cursor.min(self.nr_blocks);
        let found = match self.find_free(tm, start, self.nr_blocks)? {
            Some(b) => Some(b),
            None => self.find_free(tm, 0, start)?,
        };
        let b = found.ok_or(Error::NoSpace("data"))?;
        self.set_count(tm, b, 1)?;
        self.cursor = b + 1;
        Ok(b)
    }

    fn find_free(
        &mut self,
        tm: &(impl TransactionOps + ?Sized),
        lo: u64,
        hi: u64,
    ) -> Result<Option<u64>> {
        let mut b = lo;
        while b < hi {
            let i = b / ENTRIES_PER_BITMAP;
            let base = i * ENTRIES_PER_BITMAP;
            let end = (base + ENTRIES_PER_BITMAP).min(hi);
            let ie = self.entry(tm, i)?;
            if ie.nr_free > 0 {
                let old = if base < self.committed.nr_blocks {
                    let oe = self.old_entry(tm, i)?;
                    (oe.blocknr != ie.blocknr).then_some(oe.blocknr)
                } else {
                    None
                };
                let cur = tm.read_lock(ie.blocknr, &BITMAP_VALIDATOR)?;
                let old = old
                    .map(|loc| tm.read_lock(loc, &BITMAP_VALIDATOR))
                    .transpose()?;
                let mut e = (b - base).max(ie.none_free_before as u64);
                while let Some(f) = bitmap_find_free(&cur, e, end - base) {
                    let committed_free = match &old {
                        Some(ob) => base + f >= self.committed.nr_blocks || bitmap_get(ob, f) == 0,
                        None => true,
                    };
                    if committed_free {
                        return Ok(Some(base + f));
                    }
                    e = f + 1;
                }
            }
            b = end;
        }
        Ok(None)
    }

    /// Grows the map to `nr_blocks`, creating the new bitmaps now.
    pub fn extend(
        &mut self,
        tm: &mut (impl TransactionOps + ?Sized),
        nr_blocks: u64,
    ) -> Result<()> {
        if nr_blocks < self.nr_blocks {
            return Err(Error::invalid(format!(
                "cannot reduce the data space map from {} to {} blocks",
                self.nr_blocks, nr_blocks
            )));
        }
        if nr_blocks > (1u64 << 40) {
            return Err(Error::invalid(format!(
                "{nr_blocks} data blocks: block numbers must fit in 40 bits"
            )));
        }
        for i in nr_bitmaps(self.nr_blocks) as u64..nr_bitmaps(nr_blocks) as u64 {
            let w = tm.new_block(&BITMAP_VALIDATOR)?;
            self.entries.insert(i, IndexEntry::fresh(w.loc()));
            self.dirty.insert(i);
        }
        self.nr_blocks = nr_blocks;
        Ok(())
    }

    /// Writes the changed index entries into the index tree and makes the
    /// current state the committed one. Returns the root for the superblock.
    pub fn commit(&mut self, tm: &mut (impl TransactionOps + ?Sized)) -> Result<SmRoot> {
        let mut dirty: Vec<u64> = self.dirty.drain().collect();
        dirty.sort_unstable();
        for i in dirty {
            let ie = self.entries[&i];
            let root = self.index_root;
            self.index_root = btree::insert(
                tm,
                root,
                &[i],
                &ie.to_bytes(),
                &mut NoRefs(INDEX_ENTRY_SIZE),
            )?
            .0;
        }
        let root = self.root();
        self.committed = root;
        self.old_entries.clear();
        Ok(root)
    }

    /// The current root (valid after `commit`).
    pub fn root(&self) -> SmRoot {
        SmRoot {
            nr_blocks: self.nr_blocks,
            nr_allocated: self.nr_allocated,
            bitmap_root: self.index_root,
            ref_count_root: self.ref_count_root,
        }
    }
}

fn load_entry(r: &(impl BlockRead + ?Sized), index_root: u64, i: u64) -> Result<IndexEntry> {
    let mut v = [0u8; INDEX_ENTRY_SIZE];
    if !btree::lookup(r, index_root, &[i], &mut v)? {
        return Err(Error::corrupt(
            index_root,
            "data space-map index",
            format!("no entry for bitmap {i}"),
        ));
    }
    Ok(IndexEntry::unpack(&v))
}

fn overflow_lookup(r: &(impl BlockRead + ?Sized), root: u64, b: u64) -> Result<u32> {
    let mut v = [0u8; 4];
    if !btree::lookup(r, root, &[b], &mut v)? {
        return Err(Error::corrupt(
            root,
            "data space-map overflow tree",
            format!("block {b} is marked as overflowing but has no entry"),
        ));
    }
    Ok(u32::from_le_bytes(v))
}
