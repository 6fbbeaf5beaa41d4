//! Insert (or overwrite), with pre-emptive splitting on the way down so
//! every parent has room for a new separator.

use super::node::{max_entries, Node, NodeMut, INTERNAL_NODE, NODE_VALIDATOR};
use super::spine::{check_value_size, lock, redistribute, shadow_node, shadow_node_locked, Link};
use super::value::{BlockRefs, ValueType};
use super::{empty_tree, lookup::MAX_DEPTH};
use crate::block_manager::WriteRef;
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};

/// Free slots a sibling needs before we rebalance into it instead of splitting.
const SPACE_THRESHOLD: usize = 8;

/// Inserts `value` under `keys` (one key per level), overwriting any old
/// value (released through `vt` unless equal). Returns the new root and
/// whether a new key was added.
pub fn insert(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    keys: &[u64],
    value: &[u8],
    vt: &mut dyn ValueType,
) -> Result<(u64, bool)> {
    if keys.is_empty() || value.len() != vt.size() {
        return Err(Error::invalid("btree insert: bad key or value size"));
    }
    let last = keys.len() - 1;
    let mut parent: Link = None;
    let mut loc = root;
    let mut new_root = root;
    for (level, &key) in keys[..last].iter().enumerate() {
        let (r, leaf, i) = insert_raw(tm, loc, key, &mut BlockRefs, parent)?;
        if level == 0 {
            new_root = r;
        }
        let present = {
            let w = lock(tm, leaf)?;
            let n = Node(&w);
            check_value_size(leaf, n, 8)?;
            i < n.nr_entries() && n.key(i) == key
        };
        if !present {
            // The kernel creates sub-trees with the final level's value size.
            let sub = empty_tree(tm, vt.size())?;
            let mut w = lock(tm, leaf)?;
            NodeMut(&mut w).insert_at(i, key, &sub.to_le_bytes());
        }
        let w = lock(tm, leaf)?;
        loc = Node(&w).value_u64(i);
        parent = Some((leaf, i));
    }
    let key = keys[last];
    let (r, leaf, i) = insert_raw(tm, loc, key, vt, parent)?;
    if last == 0 {
        new_root = r;
    }
    let mut w = lock(tm, leaf)?;
    check_value_size(leaf, Node(&w), vt.size())?;
    let n = Node(&w);
    if i < n.nr_entries() && n.key(i) == key {
        let old = n.value(i).to_vec();
        if !vt.equal(&old, value) {
            drop(w);
            vt.dec(tm.as_dyn(), &old)?;
            w = lock(tm, leaf)?;
        }
        NodeMut(&mut w).set_value(i, value);
        Ok((new_root, false))
    } else {
        NodeMut(&mut w).insert_at(i, key, value);
        Ok((new_root, true))
    }
}

/// Shadows the path to the leaf where `key` belongs, making room in every
/// node on the way. Returns (new root of this level, leaf, insert position).
fn insert_raw(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    key: u64,
    vt: &mut dyn ValueType,
    link: Link,
) -> Result<(u64, u64, usize)> {
    let mut parent = link;
    // The parent stays locked while its child is shadowed, so its slot can
    // be patched without locking it again.
    let mut parent_guard: Option<WriteRef> = None;
    let mut loc = root;
    let mut top = true;
    let mut new_root = root;
    for _ in 0..MAX_DEPTH {
        let mut w = shadow_node_locked(tm, loc, vt)?;
        let mut cur = w.loc();
        if let Some((p, i)) = parent {
            let mut pw = match parent_guard.take() {
                Some(g) => g,
                None => lock(tm, p)?,
            };
            if Node(&pw).value_u64(i) != cur {
                NodeMut(&mut pw).set_value_u64(i, cur);
            }
        }
        if top {
            new_root = cur;
        }
        let needs_room = {
            let n = Node(&w);
            n.nr_entries() >= n.max_entries() && !(n.is_leaf() && n.find(key).is_some())
        };
        if needs_room {
            drop(w);
            if top {
                split_beneath(tm, cur)?;
            } else {
                let (p, pi) =
                    parent.ok_or_else(|| Error::invalid("non-root node without parent"))?;
                let (c, _) = rebalance_or_split(tm, p, pi, cur, key, vt)?;
                cur = c;
            }
            w = lock(tm, cur)?;
        }
        let n = Node(&w);
        let i = n.lower_bound(key);
        if n.is_leaf() {
            let pos = match i {
                Some(i) if n.key(i) == key => i,
                Some(i) => i + 1,
                None => 0,
            };
            return Ok((new_root, cur, pos));
        }
        if n.nr_entries() == 0 {
            return Err(Error::corrupt(
                cur,
                "btree node",
                "internal node with no entries",
            ));
        }
        let i = match i {
            Some(i) => i,
            None => {
                // key is below every separator: lower the first one.
                NodeMut(&mut w).set_key(0, key);
                0
            }
        };
        loc = Node(&w).value_u64(i);
        parent = Some((cur, i));
        parent_guard = Some(w);
        top = false;
    }
    Err(super::cycle(root))
}

/// Splits a full root into two new children; the root stays where it is
/// and becomes an internal node over them.
fn split_beneath(tm: &mut (impl TransactionOps + ?Sized), loc: u64) -> Result<()> {
    let mut w = lock(tm, loc)?;
    let (flags, max, vs, nr) = {
        let n = Node(&w);
        (
            n.flags(),
            n.max_entries() as u32,
            n.value_size(),
            n.nr_entries(),
        )
    };
    let mut a = tm.new_block(&NODE_VALIDATOR)?;
    let mut b = tm.new_block(&NODE_VALIDATOR)?;
    NodeMut(&mut a).init(flags, max, vs);
    NodeMut(&mut b).init(flags, max, vs);
    {
        let mut nodes = [&mut w, &mut a, &mut b];
        let left = nr / 2;
        redistribute(&mut nodes, &[0, left, nr - left]);
    }
    let (ka, kb) = (Node(&a).key(0), Node(&b).key(0));
    let mut root = NodeMut(&mut w);
    root.init(INTERNAL_NODE, max_entries(8), 8);
    root.insert_at(0, ka, &a.loc().to_le_bytes());
    root.insert_at(1, kb, &b.loc().to_le_bytes());
    Ok(())
}

/// Makes room in the full child `cur` (at `pi` in parent `p`): move entries
/// into an unshared sibling with room, or split. Returns the node that now
/// covers `key` and its index in the parent.
fn rebalance_or_split(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    pi: usize,
    cur: u64,
    key: u64,
    vt: &mut dyn ValueType,
) -> Result<(u64, usize)> {
    let (nr_p, left, right) = {
        let w = lock(tm, p)?;
        let n = Node(&w);
        let nr = n.nr_entries();
        (
            nr,
            (pi > 0).then(|| n.value_u64(pi - 1)),
            (pi + 1 < nr).then(|| n.value_u64(pi + 1)),
        )
    };
    let mut sibling_shared = false;
    if let Some(l) = left {
        if tm.is_shared(l)? {
            sibling_shared = true;
        } else if free_slots(tm, l)? >= SPACE_THRESHOLD {
            let l = shadow_node(tm, l, Some((p, pi - 1)), vt)?;
            let (mut lw, mut cw) = (lock(tm, l)?, lock(tm, cur)?);
            let total = Node(&lw).nr_entries() + Node(&cw).nr_entries();
            redistribute(&mut [&mut lw, &mut cw], &[total / 2, total - total / 2]);
            let first = Node(&cw).key(0);
            drop((lw, cw));
            NodeMut(&mut *lock(tm, p)?).set_key(pi, first);
            return Ok(if key < first { (l, pi - 1) } else { (cur, pi) });
        }
    }
    if let Some(r) = right {
        if tm.is_shared(r)? {
            sibling_shared = true;
        } else if free_slots(tm, r)? >= SPACE_THRESHOLD {
            let r = shadow_node(tm, r, Some((p, pi + 1)), vt)?;
            let (mut cw, mut rw) = (lock(tm, cur)?, lock(tm, r)?);
            let total = Node(&cw).nr_entries() + Node(&rw).nr_entries();
            redistribute(&mut [&mut cw, &mut rw], &[total / 2, total - total / 2]);
            let first = Node(&rw).key(0);
            drop((cw, rw));
            NodeMut(&mut *lock(tm, p)?).set_key(pi + 1, first);
            return Ok(if key < first { (cur, pi) } else { (r, pi + 1) });
        }
    }
    match left {
        Some(l) if !sibling_shared && nr_p > 2 && right.is_some() => {
            split_two_into_three(tm, p, pi, l, cur, key, vt)
        }
        _ => split_one_into_two(tm, p, pi, cur, key),
    }
}

fn free_slots(tm: &(impl TransactionOps + ?Sized), loc: u64) -> Result<usize> {
    let b = tm.read_lock(loc, &NODE_VALIDATOR)?;
    let n = Node(&b);
    Ok(n.max_entries().saturating_sub(n.nr_entries()))
}

fn new_sibling(
    tm: &mut (impl TransactionOps + ?Sized),
    like: &crate::block_manager::WriteRef,
) -> Result<crate::block_manager::WriteRef> {
    let (flags, max, vs) = {
        let n = Node(like);
        (n.flags(), n.max_entries() as u32, n.value_size())
    };
    let mut w = tm.new_block(&NODE_VALIDATOR)?;
    NodeMut(&mut w).init(flags, max, vs);
    Ok(w)
}

fn split_one_into_two(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    pi: usize,
    cur: u64,
    key: u64,
) -> Result<(u64, usize)> {
    let mut cw = lock(tm, cur)?;
    let mut nw = new_sibling(tm, &cw)?;
    let nr = Node(&cw).nr_entries();
    redistribute(&mut [&mut cw, &mut nw], &[nr / 2, nr - nr / 2]);
    let (first, n) = (Node(&nw).key(0), nw.loc());
    drop((cw, nw));
    NodeMut(&mut *lock(tm, p)?).insert_at(pi + 1, first, &n.to_le_bytes());
    Ok(if key < first { (cur, pi) } else { (n, pi + 1) })
}

fn split_two_into_three(
    tm: &mut (impl TransactionOps + ?Sized),
    p: u64,
    pi: usize,
    left: u64,
    cur: u64,
    key: u64,
    vt: &mut dyn ValueType,
) -> Result<(u64, usize)> {
    let l = shadow_node(tm, left, Some((p, pi - 1)), vt)?;
    let mut lw = lock(tm, l)?;
    let mut cw = lock(tm, cur)?;
    let mut mw = new_sibling(tm, &lw)?;
    let total = Node(&lw).nr_entries() + Node(&cw).nr_entries();
    let nl = total / 3;
    let nm = (total - nl) / 2;
    redistribute(&mut [&mut lw, &mut mw, &mut cw], &[nl, nm, total - nl - nm]);
    let (mk, ck, m) = (Node(&mw).key(0), Node(&cw).key(0), mw.loc());
    drop((lw, cw, mw));
    let mut pw = lock(tm, p)?;
    let mut pn = NodeMut(&mut pw);
    pn.set_key(pi, ck);
    pn.insert_at(pi, mk, &m.to_le_bytes());
    Ok(if key < mk {
        (l, pi - 1)
    } else if key < ck {
        (m, pi)
    } else {
        (cur, pi + 1)
    })
}
