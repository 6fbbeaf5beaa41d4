//! dm-array: a copy-on-write array of fixed-size values.
//!
//! An array is named by the root of its *spine*, a single-level B-tree
//! mapping array-block index `0..nblocks` (no gaps) to the location of an
//! array block packing `max_entries(value_size)` values. Value `i` lives in
//! block `i / max` at slot `i % max`; every block but the last is full.
//! The length is not stored: the client keeps it and passes it to
//! [`resize`].
//!
//! Values are plain bytes: no kernel client counts references through an
//! array, so this module does not either. The spine's values (array-block
//! locations) are counted, through [`SpineRefs`].
//!
//! Every change shadows what it touches and returns the new spine root.

pub mod builder;
pub mod format;

mod resize;
mod spine;
mod walk;

#[cfg(test)]
pub(crate) mod test_util;
#[cfg(test)]
mod tests;

pub use builder::ArrayBuilder;
pub use format::{max_entries, ArrayBlock, ArrayBlockValidator, ARRAY_VALIDATOR, MAX_VALUE_SIZE};
pub use spine::SpineRefs;

use crate::block_manager::BlockRead;
use crate::btree;
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};
use format::ArrayBlockMut;

/// Shape of an array of `value_size`-byte values.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    value_size: usize,
    /// Values per array block.
    max: u64,
}

impl Geometry {
    fn new(value_size: usize) -> Result<Geometry> {
        if value_size == 0 || value_size > MAX_VALUE_SIZE {
            return Err(Error::invalid(format!(
                "array value size {value_size} is not in 1..={MAX_VALUE_SIZE}"
            )));
        }
        Ok(Geometry {
            value_size,
            max: max_entries(value_size) as u64,
        })
    }

    /// Array blocks holding `len` values.
    fn nr_blocks(self, len: u64) -> u64 {
        len.div_ceil(self.max)
    }

    /// Values block `b` holds in an array of `len` values.
    fn entries_in_block(self, len: u64, b: u64) -> usize {
        len.saturating_sub(b * self.max).min(self.max) as usize
    }

    /// (block index, slot) of value `i`.
    fn locate(self, i: u64) -> (u64, usize) {
        (i / self.max, (i % self.max) as usize)
    }

    fn check_len(self, v: &[u8], what: &str) -> Result<()> {
        if v.len() != self.value_size {
            return Err(Error::invalid(format!(
                "array {what} of {} bytes where the values have {}",
                v.len(),
                self.value_size
            )));
        }
        Ok(())
    }
}

/// Creates an array of `nr_entries` copies of `default`.
pub fn new(
    tm: &mut (impl TransactionOps + ?Sized),
    value_size: usize,
    nr_entries: u64,
    default: &[u8],
) -> Result<u64> {
    let g = Geometry::new(value_size)?;
    g.check_len(default, "default value")?;
    new_with(tm, value_size, nr_entries, |_, v| {
        v.copy_from_slice(default)
    })
}

/// Creates an array of `nr_entries` values; `f(i, slot)` fills value `i`
/// (the slot starts zeroed).
pub fn new_with(
    tm: &mut (impl TransactionOps + ?Sized),
    value_size: usize,
    nr_entries: u64,
    mut f: impl FnMut(u64, &mut [u8]),
) -> Result<u64> {
    let g = Geometry::new(value_size)?;
    let root = btree::empty_tree(tm, 8)?;
    resize::grow(tm, root, g, 0, nr_entries, &mut f)
}

/// Copies value `index` into `out`. `NotFound` when `index` is past the
/// end of the array.
pub fn get(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    value_size: usize,
    index: u64,
    out: &mut [u8],
) -> Result<()> {
    let g = Geometry::new(value_size)?;
    g.check_len(out, "output buffer")?;
    with_value(r, root, g, index, |v| out.copy_from_slice(v))
}

/// Applies `f` to value `index`; `NotFound` past the end of the array.
fn with_value<R>(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    g: Geometry,
    index: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let (b, slot) = g.locate(index);
    let blk = spine::read_block_at(r, root, g, b)?;
    let a = ArrayBlock(&blk);
    if slot >= a.nr_entries() {
        return Err(Error::NotFound);
    }
    Ok(f(a.value(slot)))
}

/// Stores `value` at `index` (which must be inside the array: `NotFound`
/// otherwise, with nothing changed). Returns the new root.
pub fn set(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    value_size: usize,
    index: u64,
    value: &[u8],
) -> Result<u64> {
    let g = Geometry::new(value_size)?;
    g.check_len(value, "value")?;
    if with_value(tm, root, g, index, |v| v == value)? {
        return Ok(root);
    }
    let (b, slot) = g.locate(index);
    let (root, mut w) = spine::shadow_block(tm, root, g, b)?;
    ArrayBlockMut(&mut w).value_mut(slot).copy_from_slice(value);
    Ok(root)
}

/// Changes the length from `old_len` (the current one) to `new_len`. New
/// values are copies of `default`; dropped ones are forgotten. Returns the
/// new root.
pub fn resize(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    value_size: usize,
    old_len: u64,
    new_len: u64,
    default: &[u8],
) -> Result<u64> {
    let g = Geometry::new(value_size)?;
    g.check_len(default, "default value")?;
    resize_with(tm, root, value_size, old_len, new_len, |_, v| {
        v.copy_from_slice(default)
    })
}

/// [`resize`], where `f(i, slot)` fills each new value `i` (the slot
/// starts zeroed).
pub fn resize_with(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    value_size: usize,
    old_len: u64,
    new_len: u64,
    mut f: impl FnMut(u64, &mut [u8]),
) -> Result<u64> {
    let g = Geometry::new(value_size)?;
    resize::resize(tm, root, g, old_len, new_len, &mut f)
}

/// Drops one reference to the array: its spine, and the array blocks no
/// other spine shares.
pub fn delete(tm: &mut (impl TransactionOps + ?Sized), root: u64) -> Result<()> {
    btree::delete_tree(tm, root, 1, &mut SpineRefs)
}

/// Calls `f(index, value)` for every value, in index order, checking the
/// shape on the way: spine keys without gaps, blocks of `value_size`
/// values, every block full but the last, none empty. A shape error names
/// the offending block.
pub fn walk(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    value_size: usize,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    walk_blocks(r, root, value_size, |first, values| {
        for (i, v) in values.chunks_exact(value_size).enumerate() {
            f(first + i as u64, v)?;
        }
        Ok(())
    })
}

/// As [`walk`], a block at a time: `f(first index, values)` gets each
/// array block's values (`value_size` bytes each), so a caller can loop
/// over them without a call per value.
pub fn walk_blocks(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    value_size: usize,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let g = Geometry::new(value_size)?;
    walk::walk(r, root, g, &mut f)
}

/// The length of the array, from its last block (the shape of the rest is
/// not checked: use [`walk`] for that).
pub fn nr_entries(r: &(impl BlockRead + ?Sized), root: u64, value_size: usize) -> Result<u64> {
    let g = Geometry::new(value_size)?;
    let Some((last, v)) = btree::find_highest(r, root)? else {
        return Ok(0);
    };
    let loc = u64::from_le_bytes(
        v.as_slice()
            .try_into()
            .map_err(|_| Error::corrupt(root, "array spine", "spine value is not 8 bytes"))?,
    );
    let blk = spine::read_block(r, loc, g)?;
    Ok(last * g.max + ArrayBlock(&blk).nr_entries() as u64)
}
