//! Reading an array or bitset for the dump and for recovery, straight from
//! the device: the spine's leaves gathered (each node verified), then the
//! array blocks read in batches and verified. What cannot be read is
//! reported as lost cache-block ranges, so recovery can go on without it.

use pdata::array::{max_entries, ArrayBlock};
use pdata::check::array::verify_block;
use pdata::check::node::verify_node;
use pdata::io::{read_sorted, BlockDevice};
use pdata::BLOCK_SIZE;
use rustc_hash::FxHashSet;

/// Spine depth beyond any real one.
const MAX_DEPTH: usize = 64;
/// Array blocks read at a time.
const BATCH: usize = 128;

/// What was lost of an array: entries `begin..end` and why.
#[derive(Debug, Clone)]
pub struct Lost {
    pub begin: u64,
    pub end: u64,
    pub why: String,
}

/// The leaves of the spine at `root`: (array block index, location), and
/// the problems of the nodes that could not be used.
pub fn spine(
    dev: &dyn BlockDevice,
    root: u64,
    problems: &mut Vec<String>,
    leaves: &mut Vec<u64>,
) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut seen = FxHashSet::default();
    let mut stack = vec![(root, 0usize)];
    let mut b = Box::new([0u8; BLOCK_SIZE]);
    while let Some((loc, depth)) = stack.pop() {
        if depth > MAX_DEPTH || !seen.insert(loc) || loc >= dev.nr_blocks() {
            problems.push(format!("spine node {loc}: out of the device or met twice"));
            continue;
        }
        if let Err(e) = dev.read_block(loc, &mut b) {
            problems.push(format!("spine node {loc} cannot be read: {e}"));
            continue;
        }
        let shape = match verify_node(loc, &b, 8) {
            Ok(s) => s,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let n = pdata::btree::node::Node(&b);
        if shape.leaf {
            leaves.push(loc);
        }
        for i in (0..shape.nr).rev() {
            if shape.leaf {
                out.push((n.key(i), n.value_u64(i)));
            } else {
                stack.push((n.value_u64(i), depth + 1));
            }
        }
    }
    out
}

/// Reads the array at `root` of `nr_entries` values of `value_size` bytes:
/// `f(first, values)` for every array block that reads and verifies, in
/// index order. Returns what was lost (nothing when all is sound).
pub fn read_array(
    dev: &dyn BlockDevice,
    root: u64,
    value_size: usize,
    nr_entries: u64,
    f: impl FnMut(u64, &[u8]),
) -> Vec<Lost> {
    let mut problems = Vec::new();
    let entries = spine(dev, root, &mut problems, &mut Vec::new());
    read_entries(dev, entries, problems, value_size, nr_entries, f)
}

/// As [`read_array`], from the spine's leaf entries (array block index,
/// location) and the problems met gathering them.
pub fn read_entries(
    dev: &dyn BlockDevice,
    mut entries: Vec<(u64, u64)>,
    problems: Vec<String>,
    value_size: usize,
    nr_entries: u64,
    mut f: impl FnMut(u64, &[u8]),
) -> Vec<Lost> {
    let per = max_entries(value_size) as u64;
    let want = nr_entries.div_ceil(per);
    entries.sort_unstable();
    entries.dedup_by_key(|e| e.0);
    entries.retain(|e| e.0 < want);
    let mut lost = Vec::new();
    let lose = |lost: &mut Vec<Lost>, from: u64, to: u64, why: String| {
        lost.push(Lost {
            begin: from * per,
            end: (to * per).min(nr_entries),
            why,
        })
    };
    let why_spine = || {
        if problems.is_empty() {
            "not in the spine".to_string()
        } else {
            problems.join("; ")
        }
    };
    let mut next = 0u64;
    let mut bufs = vec![[0u8; BLOCK_SIZE]; BATCH];
    for chunk in entries.chunks(BATCH) {
        let mut order: Vec<usize> = (0..chunk.len()).collect();
        order.sort_unstable_by_key(|&i| chunk[i].1);
        let locs: Vec<u64> = order.iter().map(|&i| chunk[i].1).collect();
        let mut ok = vec![false; locs.len()];
        read_sorted(dev, &locs, &mut bufs, &mut ok);
        // Buffer of chunk entry i.
        let mut at = vec![0usize; chunk.len()];
        for (slot, &i) in order.iter().enumerate() {
            at[i] = slot;
        }
        for (i, &(index, loc)) in chunk.iter().enumerate() {
            if index > next {
                lose(&mut lost, next, index, why_spine());
            }
            next = index + 1;
            let slot = at[i];
            let expected = (nr_entries - index * per).min(per) as usize;
            let problem = if !ok[slot] {
                Some("cannot be read".to_string())
            } else {
                verify_block(loc, &bufs[slot], value_size, expected)
            };
            match problem {
                None => f(index * per, ArrayBlock(&bufs[slot]).values()),
                Some(p) => lose(
                    &mut lost,
                    index,
                    index + 1,
                    format!("array block {index} at block {loc}: {p}"),
                ),
            }
        }
    }
    if next < want {
        lose(&mut lost, next, want, why_spine());
    }
    lost
}
