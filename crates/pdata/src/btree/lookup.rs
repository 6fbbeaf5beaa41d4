//! Read-only searches. They take any [`BlockRead`], so they work on the
//! committed state (block manager) and on a transaction in progress alike.

use super::node::{Node, NODE_VALIDATOR};
use crate::block_manager::BlockRead;
use crate::{Error, Result};

/// Deepest tree accepted: far beyond any real tree, it stops loops in
/// corrupt metadata.
pub const MAX_DEPTH: usize = 32;

/// A found entry: (key, value).
pub type Entry = (u64, Vec<u8>);

fn too_deep(loc: u64) -> Error {
    Error::corrupt(
        loc,
        "btree node",
        "tree deeper than any valid tree (a cycle?)",
    )
}

/// Looks up `keys` (one per level) and copies the value into `out`.
/// Returns false when the key is absent.
pub fn lookup(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    keys: &[u64],
    out: &mut [u8],
) -> Result<bool> {
    let mut loc = root;
    for (level, &key) in keys.iter().enumerate() {
        let last = level + 1 == keys.len();
        let mut depth = 0;
        // The keys the node at `loc` holds, from its parent: a hint for
        // the search (the node's first and last keys need not be read).
        let mut span: Option<(u64, u64)> = None;
        loop {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(too_deep(loc));
            }
            let b = r.read_lock(loc, &NODE_VALIDATOR)?;
            let n = Node(&b);
            let Some(i) = n.lower_bound_within(key, span) else {
                return Ok(false);
            };
            if n.is_internal() {
                let upper = if i + 1 < n.nr_entries() {
                    Some(n.key(i + 1))
                } else {
                    span.map(|(_, hi)| hi)
                };
                span = upper.map(|hi| (n.key(i), hi));
                loc = n.value_u64(i);
                continue;
            }
            if n.key(i) != key {
                return Ok(false);
            }
            if last {
                let v = n.value(i);
                if v.len() != out.len() {
                    return Err(Error::corrupt(
                        loc,
                        "btree node",
                        format!("value size {} where {} was expected", v.len(), out.len()),
                    ));
                }
                out.copy_from_slice(v);
                return Ok(true);
            }
            loc = n.value_u64(i);
            break;
        }
    }
    Ok(false)
}

/// First entry with key >= `key` in a single-level tree: (key, value).
pub fn lookup_next(r: &(impl BlockRead + ?Sized), root: u64, key: u64) -> Result<Option<Entry>> {
    lookup_ge(r, root, key)
}

/// Smallest key >= `key`, with its value.
pub fn lookup_ge(r: &(impl BlockRead + ?Sized), root: u64, key: u64) -> Result<Option<Entry>> {
    ge(r, root, key, 0)
}

fn ge(r: &(impl BlockRead + ?Sized), loc: u64, key: u64, depth: usize) -> Result<Option<Entry>> {
    if depth > MAX_DEPTH {
        return Err(too_deep(loc));
    }
    let b = r.read_lock(loc, &NODE_VALIDATOR)?;
    let n = Node(&b);
    if n.is_leaf() {
        let i = n.upper_bound(key);
        return Ok((i < n.nr_entries()).then(|| (n.key(i), n.value(i).to_vec())));
    }
    let start = n.lower_bound(key).unwrap_or(0);
    let children: Vec<u64> = (start..n.nr_entries()).map(|i| n.value_u64(i)).collect();
    drop(b);
    // Parent keys are lower bounds only, so a child may hold nothing >= key.
    for child in children {
        if let Some(found) = ge(r, child, key, depth + 1)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Largest key <= `key`, with its value.
pub fn lookup_le(r: &(impl BlockRead + ?Sized), root: u64, key: u64) -> Result<Option<Entry>> {
    le(r, root, key, 0)
}

fn le(r: &(impl BlockRead + ?Sized), loc: u64, key: u64, depth: usize) -> Result<Option<Entry>> {
    if depth > MAX_DEPTH {
        return Err(too_deep(loc));
    }
    let b = r.read_lock(loc, &NODE_VALIDATOR)?;
    let n = Node(&b);
    let Some(i) = n.lower_bound(key) else {
        return Ok(None);
    };
    if n.is_leaf() {
        return Ok(Some((n.key(i), n.value(i).to_vec())));
    }
    let children: Vec<u64> = (0..=i).rev().map(|j| n.value_u64(j)).collect();
    drop(b);
    for child in children {
        if let Some(found) = le(r, child, key, depth + 1)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Smallest key of a single-level tree.
pub fn find_lowest(r: &(impl BlockRead + ?Sized), root: u64) -> Result<Option<Entry>> {
    lookup_ge(r, root, 0)
}

/// Largest key of a single-level tree.
pub fn find_highest(r: &(impl BlockRead + ?Sized), root: u64) -> Result<Option<Entry>> {
    lookup_le(r, root, u64::MAX)
}
