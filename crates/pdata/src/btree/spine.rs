//! Shared steps of the modifying algorithms: shadowing a node on the way
//! down (with reference counts for a copy of a shared node) and moving
//! entries between sibling nodes.

use super::node::{Entries, Node, NodeMut, NODE_VALIDATOR};
use super::value::ValueType;
use crate::block_manager::{le64, WriteRef};
use crate::tm_ops::TransactionOps;
use crate::Result;

/// A child slot: (parent node location, index in the parent).
pub type Link = Option<(u64, usize)>;

/// Shadows the node at `loc`; if the copy shares a shared node's children,
/// counts them once more; points the parent's slot at the result.
pub fn shadow_node(
    tm: &mut (impl TransactionOps + ?Sized),
    loc: u64,
    parent: Link,
    vt: &mut dyn ValueType,
) -> Result<u64> {
    let new = shadow_node_locked(tm, loc, vt)?.loc();
    if let Some((p, i)) = parent {
        let mut pw = lock(tm, p)?;
        if Node(&pw).value_u64(i) != new {
            NodeMut(&mut pw).set_value_u64(i, new);
        }
    }
    Ok(new)
}

/// Like [`shadow_node`] without the parent: returns the shadowed node
/// still write-locked, so a descent locks each node once.
pub fn shadow_node_locked(
    tm: &mut (impl TransactionOps + ?Sized),
    loc: u64,
    vt: &mut dyn ValueType,
) -> Result<WriteRef> {
    let (w, shared) = tm.shadow(loc, &NODE_VALIDATOR)?;
    if !shared {
        return Ok(w);
    }
    let new = w.loc();
    let copy = copy_node(&w);
    drop(w);
    inc_children(tm, Node(&copy), vt)?;
    lock(tm, new)
}

fn copy_node(w: &WriteRef) -> Box<crate::Block> {
    let mut b = crate::block_manager::new_block_buffer();
    b.copy_from_slice(&w[..]);
    b
}

/// Adds one reference to everything a node points at: child nodes for an
/// internal node, the values (through the value type) for a leaf.
pub fn inc_children(
    tm: &mut (impl TransactionOps + ?Sized),
    n: Node<'_>,
    vt: &mut dyn ValueType,
) -> Result<()> {
    if n.is_internal() {
        for v in n.values().chunks_exact(8) {
            tm.inc(le64(v, 0))?;
        }
        Ok(())
    } else {
        vt.inc(tm.as_dyn(), n.values())
    }
}

/// Write-locks a node already shadowed in this transaction.
pub fn lock(tm: &mut (impl TransactionOps + ?Sized), loc: u64) -> Result<WriteRef> {
    tm.write_lock_shadowed(loc, &NODE_VALIDATOR)
}

/// Spreads the entries of `nodes` (in order) so node j holds `counts[j]`.
pub fn redistribute(nodes: &mut [&mut WriteRef], counts: &[usize]) {
    let mut all = Entries::default();
    for n in nodes.iter() {
        all.take_from(Node(n));
    }
    debug_assert_eq!(all.keys.len(), counts.iter().sum::<usize>());
    let mut from = 0;
    for (n, &c) in nodes.iter_mut().zip(counts) {
        all.put_into(&mut NodeMut(n), from, c);
        from += c;
    }
}

/// Checks that a value has the size the tree stores.
pub fn check_value_size(loc: u64, n: Node<'_>, expected: usize) -> Result<()> {
    if n.value_size() != expected {
        return Err(crate::Error::corrupt(
            loc,
            "btree node",
            format!(
                "value size {} where {} was expected",
                n.value_size(),
                expected
            ),
        ));
    }
    Ok(())
}
