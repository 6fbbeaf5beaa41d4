//! Ordered traversal.

use super::lookup::MAX_DEPTH;
use super::node::{Node, NODE_VALIDATOR};
use crate::block_manager::BlockRead;
use crate::Result;

/// Calls `f(key, value)` for every entry of a single-level tree, in key order.
pub fn walk(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    walk_range(r, root, 0, u64::MAX, f)
}

/// Calls `f(key, value)` for every entry with `begin <= key < end`, in order.
pub fn walk_range(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    begin: u64,
    end: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    range(r, root, begin, end, f, 0)
}

fn range(
    r: &(impl BlockRead + ?Sized),
    loc: u64,
    begin: u64,
    end: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(super::cycle(loc));
    }
    let b = r.read_lock(loc, &NODE_VALIDATOR)?;
    let n = Node(&b);
    if n.is_leaf() {
        for i in n.upper_bound(begin)..n.nr_entries() {
            let k = n.key(i);
            if k >= end {
                break;
            }
            f(k, n.value(i))?;
        }
        return Ok(());
    }
    let first = n.lower_bound(begin).unwrap_or(0);
    let children: Vec<u64> = (first..n.nr_entries())
        .take_while(|&i| i == first || n.key(i) < end)
        .map(|i| n.value_u64(i))
        .collect();
    drop(b);
    r.prefetch(&children, &NODE_VALIDATOR);
    for child in children {
        range(r, child, begin, end, f, depth + 1)?;
    }
    Ok(())
}

/// Calls `f(loc, node, depth)` for every node of a single-level tree, parents first.
pub fn walk_nodes(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    f: &mut dyn FnMut(u64, Node<'_>, usize) -> Result<()>,
) -> Result<()> {
    nodes(r, root, f, 0)
}

fn nodes(
    r: &(impl BlockRead + ?Sized),
    loc: u64,
    f: &mut dyn FnMut(u64, Node<'_>, usize) -> Result<()>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(super::cycle(loc));
    }
    let b = r.read_lock(loc, &NODE_VALIDATOR)?;
    let n = Node(&b);
    f(loc, n, depth)?;
    if n.is_leaf() {
        return Ok(());
    }
    let children: Vec<u64> = (0..n.nr_entries()).map(|i| n.value_u64(i)).collect();
    drop(b);
    for child in children {
        nodes(r, child, f, depth + 1)?;
    }
    Ok(())
}
