//! Growing and shrinking an array (SEMANTICS §7).

use super::format::{ArrayBlock, ArrayBlockMut, ARRAY_VALIDATOR};
use super::spine::{lookup_block, read_block_at, shadow_block, SpineRefs};
use super::Geometry;
use crate::block_manager::BlockRead;
use crate::btree;
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};

/// Fills value `i` into a zeroed slot.
pub type Fill<'a> = dyn FnMut(u64, &mut [u8]) + 'a;

pub fn resize(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    g: Geometry,
    old_len: u64,
    new_len: u64,
    fill: &mut Fill<'_>,
) -> Result<u64> {
    check_len(tm, root, g, old_len)?;
    match new_len.cmp(&old_len) {
        std::cmp::Ordering::Equal => Ok(root),
        std::cmp::Ordering::Greater => grow(tm, root, g, old_len, new_len, fill),
        std::cmp::Ordering::Less => shrink(tm, root, g, old_len, new_len),
    }
}

/// Cheap check that the array at `root` holds `len` values: its last block
/// is where `len` puts it, with the entries `len` gives it, and no block
/// follows.
fn check_len(r: &(impl BlockRead + ?Sized), root: u64, g: Geometry, len: u64) -> Result<()> {
    let nb = g.nr_blocks(len);
    if let Some(loc) = lookup_block(r, root, nb)? {
        return Err(Error::corrupt(
            loc,
            "array block",
            format!("array block {nb} exists, so the array is longer than {len} values"),
        ));
    }
    if nb == 0 {
        return Ok(());
    }
    let blk = match read_block_at(r, root, g, nb - 1) {
        Err(Error::NotFound) => {
            return Err(Error::corrupt(
                root,
                "array spine",
                format!("no array block {} in an array of {len} values", nb - 1),
            ))
        }
        other => other?,
    };
    let (have, want) = (
        ArrayBlock(&blk).nr_entries(),
        g.entries_in_block(len, nb - 1),
    );
    if have != want {
        return Err(Error::corrupt(
            blk.loc(),
            "array block",
            format!("last block holds {have} values where an array of {len} has {want}"),
        ));
    }
    Ok(())
}

/// Fills the old last block up, then appends new blocks.
pub fn grow(
    tm: &mut (impl TransactionOps + ?Sized),
    mut root: u64,
    g: Geometry,
    old_len: u64,
    new_len: u64,
    fill: &mut Fill<'_>,
) -> Result<u64> {
    let old_blocks = g.nr_blocks(old_len);
    let new_blocks = g.nr_blocks(new_len);
    let partial = g.entries_in_block(old_len, old_blocks.saturating_sub(1));
    if old_blocks > 0 && partial < g.max as usize {
        let b = old_blocks - 1;
        let end = g.entries_in_block(new_len, b);
        let (r, mut w) = shadow_block(tm, root, g, b)?;
        root = r;
        fill_slots(&mut ArrayBlockMut(&mut w), g, b, partial, end, fill);
    }
    for b in old_blocks..new_blocks {
        let mut w = tm.new_block(&ARRAY_VALIDATOR)?;
        let loc = w.loc();
        let mut a = ArrayBlockMut(&mut w);
        a.init(g.value_size);
        fill_slots(&mut a, g, b, 0, g.entries_in_block(new_len, b), fill);
        drop(w);
        root = btree::insert(tm, root, &[b], &loc.to_le_bytes(), &mut SpineRefs)?.0;
    }
    Ok(root)
}

/// Fills slots [from, to) of block `b` and makes `to` its entry count.
fn fill_slots(
    a: &mut ArrayBlockMut<'_>,
    g: Geometry,
    b: u64,
    from: usize,
    to: usize,
    fill: &mut Fill<'_>,
) {
    for s in from..to {
        let v = a.value_mut(s);
        v.fill(0);
        fill(b * g.max + s as u64, v);
    }
    a.set_nr_entries(to);
}

/// Drops the blocks past the new end, then trims the new last block.
fn shrink(
    tm: &mut (impl TransactionOps + ?Sized),
    mut root: u64,
    g: Geometry,
    old_len: u64,
    new_len: u64,
) -> Result<u64> {
    if new_len == 0 {
        super::delete(tm, root)?;
        return btree::empty_tree(tm, 8);
    }
    let old_blocks = g.nr_blocks(old_len);
    let new_blocks = g.nr_blocks(new_len);
    if new_blocks < old_blocks {
        let (r, removed) = btree::remove_range(tm, root, new_blocks, old_blocks, &mut SpineRefs)?;
        root = r;
        if removed != old_blocks - new_blocks {
            return Err(Error::corrupt(
                root,
                "array spine",
                format!(
                    "{removed} array blocks in {new_blocks}..{old_blocks} where {} were expected",
                    old_blocks - new_blocks
                ),
            ));
        }
    }
    let b = new_blocks - 1;
    let keep = g.entries_in_block(new_len, b);
    let had = g.entries_in_block(old_len, b);
    if keep < had {
        let (r, mut w) = shadow_block(tm, root, g, b)?;
        root = r;
        let mut a = ArrayBlockMut(&mut w);
        for s in keep..had {
            a.value_mut(s).fill(0);
        }
        a.set_nr_entries(keep);
    }
    Ok(root)
}
