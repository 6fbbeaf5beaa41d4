//! Remove, rebalancing the children of each node before stepping into one,
//! so no node visited drops below a third full when the entry goes.

use super::lookup::{lookup, lookup_ge, MAX_DEPTH};
use super::node::{Node, NodeMut};
use super::spine::{check_value_size, inc_children, lock, redistribute, shadow_node, Link};
use super::value::{BlockRefs, ValueType};
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};

/// Removes `keys` (one per level); the value is released through `vt`.
/// An absent key is `NotFound` and changes nothing.
pub fn remove(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    keys: &[u64],
    vt: &mut dyn ValueType,
) -> Result<u64> {
    let mut probe = vec![0u8; vt.size()];
    if keys.is_empty() || !lookup(tm, root, keys, &mut probe)? {
        return Err(Error::NotFound);
    }
    let last = keys.len() - 1;
    let mut parent: Link = None;
    let mut loc = root;
    let mut new_root = root;
    for (level, &key) in keys[..last].iter().enumerate() {
        let (r, leaf, i) = remove_raw(tm, loc, key, &mut BlockRefs, parent)?;
        if level == 0 {
            new_root = r;
        }
        let w = lock(tm, leaf)?;
        loc = Node(&w).value_u64(i);
        parent = Some((leaf, i));
    }
    let (r, leaf, i) = remove_raw(tm, loc, keys[last], vt, parent)?;
    if last == 0 {
        new_root = r;
    }
    let mut w = lock(tm, leaf)?;
    check_value_size(leaf, Node(&w), vt.size())?;
    let old = Node(&w).value(i).to_vec();
    NodeMut(&mut w).delete_at(i);
    drop(w);
    vt.dec(tm.as_dyn(), &old)?;
    Ok(new_root)
}

/// Removes every key in [begin, end) of a single-level tree. Returns the new
/// root and the number of keys removed.
pub fn remove_range(
    tm: &mut (impl TransactionOps + ?Sized),
    mut root: u64,
    begin: u64,
    end: u64,
    vt: &mut dyn ValueType,
) -> Result<(u64, u64)> {
    let mut count = 0;
    let mut x = begin;
    while x < end {
        let Some((k, _)) = lookup_ge(tm, root, x)? else {
            break;
        };
        if k >= end {
            break;
        }
        root = remove(tm, root, &[k], vt)?;
        count += 1;
        match k.checked_add(1) {
            Some(next) => x = next,
            None => break,
        }
    }
    Ok((root, count))
}

/// Shadows the path to the leaf holding `key`, rebalancing on the way.
/// Returns (new root of this level, leaf, index of key).
fn remove_raw(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    key: u64,
    vt: &mut dyn ValueType,
    link: Link,
) -> Result<(u64, u64, usize)> {
    let mut parent = link;
    let mut loc = root;
    let mut new_root = root;
    for depth in 0..MAX_DEPTH {
        let cur = shadow_node(tm, loc, parent, vt)?;
        if depth == 0 {
            new_root = cur;
        }
        let internal = Node(&*lock(tm, cur)?).is_internal();
        if internal {
            rebalance_children(tm, cur, key, vt)?;
        }
        let w = lock(tm, cur)?;
        let n = Node(&w);
        if n.is_leaf() {
            let i = n.find(key).ok_or(Error::NotFound)?;
            return Ok((new_root, cur, i));
        }
        let i = n.lower_bound(key).ok_or(Error::NotFound)?;
        loc = n.value_u64(i);
        parent = Some((cur, i));
    }
    Err(super::cycle(root))
}

/// Makes sure the child of `p` that covers `key` can lose an entry: merge
/// or redistribute it with its siblings, or collapse a root with one child.
fn rebalance_children(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    key: u64,
    vt: &mut dyn ValueType,
) -> Result<()> {
    let (nr, i, only_child) = {
        let w = lock(tm, p)?;
        let n = Node(&w);
        (n.nr_entries(), n.lower_bound(key), n.value_u64(0))
    };
    if nr == 1 {
        return collapse_root(tm, p, only_child, vt);
    }
    let i = i.ok_or(Error::NotFound)?;
    if i == 0 {
        rebalance2(tm, p, 0, vt)
    } else if i == nr - 1 {
        rebalance2(tm, p, i - 1, vt)
    } else {
        rebalance3(tm, p, i - 1, vt)
    }
}

/// The root has a single child: take the child's place (and contents).
fn collapse_root(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    child: u64,
    vt: &mut dyn ValueType,
) -> Result<()> {
    let mut copy = crate::block_manager::new_block_buffer();
    {
        let c = tm.read_lock(child, &super::node::NODE_VALIDATOR)?;
        copy.copy_from_slice(&c[..]);
    }
    if tm.is_shared(child)? {
        inc_children(tm, Node(&copy), vt)?;
    }
    lock(tm, p)?.copy_from_slice(&copy[..]);
    tm.dec(child)
}

fn children(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    first: usize,
    n: usize,
) -> Result<Vec<u64>> {
    let w = lock(tm, p)?;
    let node = Node(&w);
    Ok((first..first + n).map(|i| node.value_u64(i)).collect())
}

fn check_same_capacity(locs: &[u64], maxes: &[usize]) -> Result<()> {
    if maxes.windows(2).any(|w| w[0] != w[1]) {
        return Err(Error::corrupt(
            locs[0],
            "btree node",
            "sibling nodes have different capacities",
        ));
    }
    Ok(())
}

fn rebalance2(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    li: usize,
    vt: &mut dyn ValueType,
) -> Result<()> {
    let c = children(tm, p, li, 2)?;
    let l = shadow_node(tm, c[0], Some((p, li)), vt)?;
    let r = shadow_node(tm, c[1], Some((p, li + 1)), vt)?;
    let (mut lw, mut rw) = (lock(tm, l)?, lock(tm, r)?);
    let (nl, nr) = (Node(&lw).nr_entries(), Node(&rw).nr_entries());
    let max = Node(&lw).max_entries();
    check_same_capacity(&[l, r], &[max, Node(&rw).max_entries()])?;
    let t = max / 3;
    let total = nl + nr;
    if total < 2 * (t + 1) {
        // Merge: everything goes left, the right node goes away.
        redistribute(&mut [&mut lw, &mut rw], &[total, 0]);
        drop((lw, rw));
        NodeMut(&mut *lock(tm, p)?).delete_at(li + 1);
        tm.dec(r)
    } else {
        redistribute(&mut [&mut lw, &mut rw], &[total / 2, total - total / 2]);
        let first = Node(&rw).key(0);
        drop((lw, rw));
        NodeMut(&mut *lock(tm, p)?).set_key(li + 1, first);
        Ok(())
    }
}

fn rebalance3(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    li: usize,
    vt: &mut dyn ValueType,
) -> Result<()> {
    let c = children(tm, p, li, 3)?;
    let l = shadow_node(tm, c[0], Some((p, li)), vt)?;
    let m = shadow_node(tm, c[1], Some((p, li + 1)), vt)?;
    let r = shadow_node(tm, c[2], Some((p, li + 2)), vt)?;
    let (mut lw, mut mw, mut rw) = (lock(tm, l)?, lock(tm, m)?, lock(tm, r)?);
    let (nl, nm, nr) = (
        Node(&lw).nr_entries(),
        Node(&mw).nr_entries(),
        Node(&rw).nr_entries(),
    );
    let max = Node(&lw).max_entries();
    check_same_capacity(
        &[l, m, r],
        &[max, Node(&mw).max_entries(), Node(&rw).max_entries()],
    )?;
    let t = max / 3;
    let total = nl + nm + nr;
    if total < 4 * t + 1 {
        // Delete the centre: as much as fits goes left, the rest right.
        let to_left = nm.min(max - nl);
        redistribute(
            &mut [&mut lw, &mut mw, &mut rw],
            &[nl + to_left, 0, nm - to_left + nr],
        );
        let first = (Node(&rw).nr_entries() > 0).then(|| Node(&rw).key(0));
        drop((lw, mw, rw));
        {
            let mut pw = lock(tm, p)?;
            let mut pn = NodeMut(&mut pw);
            if let Some(k) = first {
                pn.set_key(li + 2, k);
            }
            pn.delete_at(li + 1);
        }
        tm.dec(m)?;
        rebalance2(tm, p, li, vt)
    } else {
        let nr_new = total / 3;
        let nl_new = total / 3 + usize::from(total % 3 != 0);
        let nm_new = total - nl_new - nr_new;
        redistribute(&mut [&mut lw, &mut mw, &mut rw], &[nl_new, nm_new, nr_new]);
        let (km, kr) = (Node(&mw).key(0), Node(&rw).key(0));
        drop((lw, mw, rw));
        let mut pw = lock(tm, p)?;
        let mut pn = NodeMut(&mut pw);
        pn.set_key(li + 1, km);
        pn.set_key(li + 2, kr);
        Ok(())
    }
}
