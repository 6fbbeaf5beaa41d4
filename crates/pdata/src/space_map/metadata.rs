//! The metadata space map: reference counts of the metadata device's own
//! blocks, in the kernel's format (bitmaps, one index block, overflow tree).
//!
//! During a transaction the counts that change live in memory (`counts`,
//! absolute values) over the committed on-disk maps, which are only read.
//! That removes the kernel's recursion problem (updating the map allocates
//! blocks, which updates the map): nothing is written until `write_out`, at
//! pre-commit, which shadows the bitmaps, the overflow tree and the index
//! block through the transaction manager and repeats until the counts those
//! allocations changed are all written (a fixpoint: once shadowed, blocks
//! are rewritten in place and allocate nothing more).
//!
//! Allocation takes a block only if it is free both now and in the committed
//! state, so a block freed in this transaction is not reused before commit.

use super::format::*;
use crate::block_manager::BlockManager;
use crate::btree::{self, NoRefs};
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};
use rustc_hash::{FxHashMap, FxHashSet};

/// The committed state: what the on-disk superblock describes.
#[derive(Clone)]
struct Committed {
    root: SmRoot,
    index: Vec<IndexEntry>,
}

pub struct MetadataSpaceMap {
    nr_blocks: u64,
    committed: Committed,
    /// Current index entries; blocknr 0 means "bitmap not created yet".
    index: Vec<IndexEntry>,
    /// Current overflow tree (0: not created yet).
    ref_count_root: u64,
    /// Current index block (0: not created yet).
    index_loc: u64,
    index_dirty: bool,
    /// Counts changed in this transaction (absolute values).
    counts: FxHashMap<u64, u32>,
    /// Changed counts not yet written into the current bitmaps.
    unwritten: FxHashSet<u64>,
    nr_allocated: u64,
    cursor: u64,
    /// Why the committed map could not be read, for a reader that opened
    /// the metadata without it: every count is refused with this.
    unreadable: Option<String>,
}

impl MetadataSpaceMap {
    /// A map over `nr_blocks` (clamped to the format's limit) with only
    /// block 0, the superblock, in use.
    pub fn format(nr_blocks: u64) -> Result<Self> {
        let nr_blocks = nr_blocks.min(MAX_METADATA_BLOCKS);
        if nr_blocks < 16 {
            return Err(Error::invalid(format!(
                "metadata device of {nr_blocks} blocks is too small"
            )));
        }
        let mut sm = MetadataSpaceMap {
            nr_blocks,
            committed: Committed {
                root: SmRoot::default(),
                index: Vec::new(),
            },
            index: vec![IndexEntry::default(); nr_bitmaps(nr_blocks)],
            ref_count_root: 0,
            index_loc: 0,
            index_dirty: true,
            counts: FxHashMap::default(),
            unwritten: FxHashSet::default(),
            nr_allocated: 0,
            cursor: 1,
            unreadable: None,
        };
        sm.set_count_raw(0, 0, 1);
        Ok(sm)
    }

    /// Opens the committed map described by `root`.
    pub fn open(bm: &BlockManager, root: &SmRoot) -> Result<Self> {
        let dev_blocks = bm.nr_blocks();
        if root.nr_blocks == 0 || root.nr_blocks > MAX_METADATA_BLOCKS {
            return Err(Error::corrupt(
                0,
                "metadata space map root",
                format!("nr_blocks {} out of range", root.nr_blocks),
            ));
        }
        if root.nr_blocks > dev_blocks {
            return Err(Error::invalid(format!(
                "the metadata space map covers {} blocks but the device has only {}",
                root.nr_blocks, dev_blocks
            )));
        }
        let b = bm.read_lock(root.bitmap_root, &INDEX_VALIDATOR)?;
        let index = unpack_metadata_index(&b, nr_bitmaps(root.nr_blocks));
        drop(b);
        for (i, ie) in index.iter().enumerate() {
            if ie.blocknr == 0 || ie.blocknr >= root.nr_blocks {
                return Err(Error::corrupt(
                    root.bitmap_root,
                    "space-map index",
                    format!("entry {} points at block {}", i, ie.blocknr),
                ));
            }
        }
        Ok(Self::committed(root, index, None))
    }

    /// A map whose blocks could not be read (`why`), for readers that need
    /// no counts (a dump, a metadata snapshot's trees): it refuses every
    /// count, and so every allocation.
    pub fn unreadable(root: &SmRoot, why: String) -> Self {
        Self::committed(root, Vec::new(), Some(why))
    }

    /// The map `root` names, with its index, unchanged since the commit.
    fn committed(root: &SmRoot, index: Vec<IndexEntry>, unreadable: Option<String>) -> Self {
        MetadataSpaceMap {
            nr_blocks: root.nr_blocks.min(MAX_METADATA_BLOCKS),
            committed: Committed {
                root: *root,
                index: index.clone(),
            },
            index,
            ref_count_root: root.ref_count_root,
            index_loc: root.bitmap_root,
            index_dirty: false,
            counts: FxHashMap::default(),
            unwritten: FxHashSet::default(),
            nr_allocated: root.nr_allocated,
            cursor: 0,
            unreadable,
        }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Refuses counts of a map opened [`MetadataSpaceMap::unreadable`].
    fn readable(&self) -> Result<()> {
        match &self.unreadable {
            Some(why) => Err(Error::invalid(format!(
                "the metadata space map cannot be read: {why}"
            ))),
            None => Ok(()),
        }
    }

    pub fn nr_allocated(&self) -> u64 {
        self.nr_allocated
    }

    /// Blocks with a count of 0 now. Some of them may still be held by the
    /// committed transaction, so fewer may be allocatable before commit.
    pub fn nr_free(&self) -> u64 {
        self.nr_blocks.saturating_sub(self.nr_allocated)
    }

    /// The count the committed transaction holds for `b`.
    fn committed_count(&self, bm: &BlockManager, b: u64) -> Result<u32> {
        if b >= self.committed.root.nr_blocks {
            return Ok(0);
        }
        let i = (b / ENTRIES_PER_BITMAP) as usize;
        let Some(ie) = self.committed.index.get(i) else {
            return Ok(0);
        };
        let bitmap = bm.read_lock(ie.blocknr, &BITMAP_VALIDATOR)?;
        let c = bitmap_get(&bitmap, b % ENTRIES_PER_BITMAP);
        drop(bitmap);
        if c < OVERFLOW_MARK {
            return Ok(c);
        }
        overflow_count(bm, self.committed.root.ref_count_root, b)
    }

    /// The current count of `b`.
    pub fn count(&self, bm: &BlockManager, b: u64) -> Result<u32> {
        self.readable()?;
        if b >= self.nr_blocks {
            return Err(Error::OutOfBounds {
                block: b,
                nr_blocks: self.nr_blocks,
            });
        }
        match self.counts.get(&b) {
            Some(&c) => Ok(c),
            None => self.committed_count(bm, b),
        }
    }

    fn set_count_raw(&mut self, b: u64, old: u32, new: u32) {
        if old == 0 && new != 0 {
            self.nr_allocated += 1;
        } else if old != 0 && new == 0 {
            self.nr_allocated -= 1;
        }
        self.counts.insert(b, new);
        self.unwritten.insert(b);
    }

    pub fn set_count(&mut self, bm: &BlockManager, b: u64, new: u32) -> Result<()> {
        let old = self.count(bm, b)?;
        self.set_count_raw(b, old, new);
        Ok(())
    }

    pub fn inc(&mut self, bm: &BlockManager, b: u64) -> Result<()> {
        let old = self.count(bm, b)?;
        let new = old
            .checked_add(1)
            .ok_or_else(|| Error::invalid(format!("reference count of block {b} overflows")))?;
        self.set_count_raw(b, old, new);
        Ok(())
    }

    pub fn dec(&mut self, bm: &BlockManager, b: u64) -> Result<()> {
        let old = self.count(bm, b)?;
        if old == 0 {
            return Err(Error::corrupt(
                b,
                "metadata space map",
                "unable to decrement the count of a free block",
            ));
        }
        self.set_count_raw(b, old, old - 1);
        Ok(())
    }

    /// Allocates a block free now and in the committed state; count 1.
    pub fn new_block(&mut self, bm: &BlockManager) -> Result<u64> {
        self.readable()?;
        let start = self.cursor.min(self.nr_blocks);
        let found = match self.find_free(bm, start, self.nr_blocks)? {
            Some(b) => Some(b),
            None => self.find_free(bm, 0, start)?,
        };
        let b = found.ok_or(Error::NoSpace("metadata"))?;
        self.set_count_raw(b, 0, 1);
        self.cursor = b + 1;
        Ok(b)
    }

    fn is_free_now(&self, b: u64) -> bool {
        self.counts.get(&b).is_none_or(|&c| c == 0)
    }

    fn find_free(&self, bm: &BlockManager, lo: u64, hi: u64) -> Result<Option<u64>> {
        let mut b = lo;
        while b < hi {
            let i = (b / ENTRIES_PER_BITMAP) as usize;
            let base = i as u64 * ENTRIES_PER_BITMAP;
            let end = (base + ENTRIES_PER_BITMAP).min(hi);
            match self.committed.index.get(i) {
                Some(ie) if ie.nr_free > 0 => {
                    let bitmap = bm.read_lock(ie.blocknr, &BITMAP_VALIDATOR)?;
                    let mut e = (b - base).max(ie.none_free_before as u64);
                    while let Some(f) = bitmap_find_free(&bitmap, e, end - base) {
                        if self.is_free_now(base + f) {
                            return Ok(Some(base + f));
                        }
                        e = f + 1;
                    }
                }
                Some(_) => {}
                None => {
                    // No committed bitmap: committed counts are all zero here.
                    if let Some(f) = (b..end).find(|&x| self.is_free_now(x)) {
                        return Ok(Some(f));
                    }
                }
            }
            b = end;
        }
        Ok(None)
    }

    /// Grows the map; the new bitmaps are created at the next write-out.
    pub fn extend(&mut self, nr_blocks: u64) -> Result<()> {
        if nr_blocks > MAX_METADATA_BLOCKS {
            return Err(Error::invalid(format!(
                "a metadata device holds at most {MAX_METADATA_BLOCKS} blocks ({nr_blocks} asked)"
            )));
        }
        if nr_blocks < self.nr_blocks {
            return Err(Error::invalid(format!(
                "cannot shrink the metadata space map from {} to {} blocks",
                self.nr_blocks, nr_blocks
            )));
        }
        self.nr_blocks = nr_blocks;
        self.index
            .resize(nr_bitmaps(nr_blocks), IndexEntry::default());
        self.index_dirty = true;
        Ok(())
    }
}

/// Looks up `b` in an overflow tree.
fn overflow_count(bm: &BlockManager, root: u64, b: u64) -> Result<u32> {
    let mut v = [0u8; 4];
    if !btree::lookup(bm, root, &[b], &mut v)? {
        return Err(Error::corrupt(
            root,
            "space-map overflow tree",
            format!("block {b} is marked as overflowing but has no entry"),
        ));
    }
    let c = u32::from_le_bytes(v);
    if c < OVERFLOW_MARK {
        return Err(Error::corrupt(
            root,
            "space-map overflow tree",
            format!("block {b} has overflow count {c} (< 3)"),
        ));
    }
    Ok(c)
}

/// What [`write_out`] needs of the map's owner: block operations (which
/// allocate from this very map) and the map itself. The transaction manager
/// implements it, so this layer never names the one above it.
pub(crate) trait MetadataSmOwner: TransactionOps {
    fn metadata_sm(&self) -> &MetadataSpaceMap;
    fn metadata_sm_mut(&mut self) -> &mut MetadataSpaceMap;
}

/// Writes the current counts into the space map's own blocks, to a fixpoint,
/// and makes the result the committed state. Returns the new root.
pub(crate) fn write_out(tm: &mut (impl MetadataSmOwner + ?Sized)) -> Result<SmRoot> {
    loop {
        create_missing_bitmaps(tm)?;
        if tm.metadata_sm().ref_count_root == 0 {
            let root = btree::empty_tree(tm, 4)?;
            tm.metadata_sm_mut().ref_count_root = root;
        }
        let mut batch: Vec<u64> = tm.metadata_sm_mut().unwritten.drain().collect();
        if batch.is_empty() {
            if !tm.metadata_sm().index_dirty {
                break;
            }
            write_index(tm)?;
            continue;
        }
        batch.sort_unstable();
        let overflow = write_bitmaps(tm, &batch)?;
        update_overflow(tm, &overflow)?;
    }
    let sm = tm.metadata_sm_mut();
    let root = SmRoot {
        nr_blocks: sm.nr_blocks,
        nr_allocated: sm.nr_allocated,
        bitmap_root: sm.index_loc,
        ref_count_root: sm.ref_count_root,
    };
    sm.committed = Committed {
        root,
        index: sm.index.clone(),
    };
    sm.counts.clear();
    Ok(root)
}

fn create_missing_bitmaps(tm: &mut (impl MetadataSmOwner + ?Sized)) -> Result<()> {
    for i in 0..tm.metadata_sm().index.len() {
        if tm.metadata_sm().index[i].blocknr == 0 {
            let w = tm.new_block(&BITMAP_VALIDATOR)?;
            let sm = tm.metadata_sm_mut();
            sm.index[i] = IndexEntry::fresh(w.loc());
            sm.index_dirty = true;
        }
    }
    Ok(())
}

/// Writes a sorted batch of counts into (shadowed) bitmaps. Returns the
/// overflow-tree changes: (block, Some(count >= 3)) or (block, None) to delete.
fn write_bitmaps(
    tm: &mut (impl MetadataSmOwner + ?Sized),
    batch: &[u64],
) -> Result<Vec<(u64, Option<u32>)>> {
    let mut overflow = Vec::new();
    let mut start = 0;
    while start < batch.len() {
        let i = (batch[start] / ENTRIES_PER_BITMAP) as usize;
        let mut end = start;
        while end < batch.len() && (batch[end] / ENTRIES_PER_BITMAP) as usize == i {
            end += 1;
        }
        let orig = tm.metadata_sm().index[i].blocknr;
        let (mut w, _) = tm.shadow(orig, &BITMAP_VALIDATOR)?;
        let mut ie = tm.metadata_sm().index[i];
        ie.blocknr = w.loc();
        for &b in &batch[start..end] {
            let e = b % ENTRIES_PER_BITMAP;
            let new = tm.metadata_sm().counts.get(&b).copied().unwrap_or(0);
            let old_mark = bitmap_get(&w, e);
            let new_mark = new.min(OVERFLOW_MARK);
            bitmap_set(&mut w, e, new_mark);
            ie.note_transition(e as u32, old_mark, new_mark);
            if new >= OVERFLOW_MARK {
                overflow.push((b, Some(new)));
            } else if old_mark == OVERFLOW_MARK {
                overflow.push((b, None));
            }
        }
        drop(w);
        let sm = tm.metadata_sm_mut();
        sm.index[i] = ie;
        sm.index_dirty = true;
        start = end;
    }
    Ok(overflow)
}

fn update_overflow(
    tm: &mut (impl MetadataSmOwner + ?Sized),
    changes: &[(u64, Option<u32>)],
) -> Result<()> {
    for &(b, count) in changes {
        let root = tm.metadata_sm().ref_count_root;
        let new_root = match count {
            Some(c) => btree::insert(tm, root, &[b], &c.to_le_bytes(), &mut NoRefs(4))?.0,
            None => btree::remove(tm, root, &[b], &mut NoRefs(4))?,
        };
        tm.metadata_sm_mut().ref_count_root = new_root;
    }
    Ok(())
}

fn write_index(tm: &mut (impl MetadataSmOwner + ?Sized)) -> Result<()> {
    let loc = tm.metadata_sm().index_loc;
    let mut w = if loc == 0 {
        tm.new_block(&INDEX_VALIDATOR)?
    } else {
        tm.shadow(loc, &INDEX_VALIDATOR)?.0
    };
    let sm = tm.metadata_sm_mut();
    pack_metadata_index(&mut w, &sm.index);
    sm.index_loc = w.loc();
    sm.index_dirty = false;
    Ok(())
}
