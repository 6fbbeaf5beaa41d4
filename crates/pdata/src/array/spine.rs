//! The spine: a single-level B-tree mapping array-block index to the
//! location of the array block, and the copy-on-write of one array block
//! with the spine kept pointing at it.

use super::format::{ArrayBlock, ARRAY_VALIDATOR};
use super::Geometry;
use crate::block_manager::{BlockRead, ReadRef, WriteRef};
use crate::btree;
use crate::btree::node::{Node, NODE_VALIDATOR};
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};

/// Spine values: le64 array-block locations, each holding one reference
/// on its block. Array values are plain (no client counts them), so
/// releasing an array block releases nothing else: exactly [`BlockRefs`].
pub use crate::btree::BlockRefs as SpineRefs;

/// Location of array block `index`, if the spine has it.
pub fn lookup_block(r: &(impl BlockRead + ?Sized), root: u64, index: u64) -> Result<Option<u64>> {
    let mut v = [0u8; 8];
    Ok(btree::lookup(r, root, &[index], &mut v)?.then(|| u64::from_le_bytes(v)))
}

/// Read-locks the array block at `loc` and checks it holds `g`'s values.
pub fn read_block(r: &(impl BlockRead + ?Sized), loc: u64, g: Geometry) -> Result<ReadRef> {
    let b = r.read_lock(loc, &ARRAY_VALIDATOR)?;
    ArrayBlock(&b)
        .check_geometry(g.value_size)
        .map_err(|reason| Error::corrupt(loc, "array block", reason))?;
    Ok(b)
}

/// Read-locks array block `index`; `NotFound` when the spine lacks it.
pub fn read_block_at(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    g: Geometry,
    index: u64,
) -> Result<ReadRef> {
    let loc = lookup_block(r, root, index)?.ok_or(Error::NotFound)?;
    read_block(r, loc, g)
}

/// Makes array block `index` writable. Returns the new spine root and the
/// write-locked block (drop it before the next call on `tm`).
///
/// When shadowing moves the block, the spine slot is overwritten with the
/// new location. The old location gets one reference first: the overwrite
/// releases one (through [`SpineRefs::dec`]), and `shadow` already dropped
/// the one the slot held. This keeps the old block's count right whether
/// or not the spine leaf is shared: a shared leaf's copy duplicates the
/// slot (+1) before the overwrite (-1), so the original leaf keeps its
/// reference.
///
/// The kernel shadows the array block before the spine path, which is
/// wrong if a spine node above a block of this transaction is shared;
/// [`path_is_shared`] covers that case (no kernel client creates it).
pub fn shadow_block(
    tm: &mut (impl TransactionOps + ?Sized),
    mut root: u64,
    g: Geometry,
    index: u64,
) -> Result<(u64, WriteRef)> {
    let loc = lookup_block(tm, root, index)?.ok_or(Error::NotFound)?;
    // Check the block before changing any count.
    drop(read_block(tm, loc, g)?);
    // A block of this transaction with one reference is written in place.
    // That is only right if no spine node above it is shared (an array
    // cloned by taking a reference on its root in this transaction): then
    // unshare the path first, so the block's count shows the sharing.
    if tm.is_shadowed(loc) && path_is_shared(tm, root, index)? {
        root = btree::insert(tm, root, &[index], &loc.to_le_bytes(), &mut SpineRefs)?.0;
    }
    // If the block was shared, its copy duplicates its values; plain
    // values have nothing to count.
    let (w, _shared) = tm.shadow(loc, &ARRAY_VALIDATOR)?;
    let new = w.loc();
    if new == loc {
        return Ok((root, w));
    }
    drop(w);
    tm.inc(loc)?;
    root = btree::insert(tm, root, &[index], &new.to_le_bytes(), &mut SpineRefs)?.0;
    let w = tm.write_lock_shadowed(new, &ARRAY_VALIDATOR)?;
    Ok((root, w))
}

/// Deepest spine walked: far beyond any real tree, it stops cycles.
const MAX_DEPTH: usize = 64;

/// True when a spine node on the path to key `index` has more than one
/// reference.
fn path_is_shared(tm: &(impl TransactionOps + ?Sized), root: u64, index: u64) -> Result<bool> {
    let mut loc = root;
    for _ in 0..MAX_DEPTH {
        if tm.ref_count(loc)? > 1 {
            return Ok(true);
        }
        let b = tm.read_lock(loc, &NODE_VALIDATOR)?;
        let n = Node(&b);
        if n.is_leaf() {
            return Ok(false);
        }
        let Some(i) = n.lower_bound(index) else {
            return Ok(false);
        };
        loc = n.value_u64(i);
    }
    Err(Error::corrupt(
        root,
        "array spine",
        "spine too deep (a cycle?)",
    ))
}
