//! era_invalidate's answer read straight from the device (the tool's path;
//! the live handle uses `EraView::written_since`, which gives the same
//! answer): the spines are walked through a small cache, then every array
//! block of the era array and of the writesets asked for is read in sorted
//! batches and verified on the engine's pipeline workers, and folded into
//! one bit per origin block.

use crate::dump::CACHE_BLOCKS;
use crate::error::{EraError, Result};
use crate::metadata::query::{push_block, EraView, Run};
use crate::metadata::ERA_VALUE_SIZE;
use pdata::array::{max_entries, ArrayBlock};
use pdata::bitset::{nr_words, BITS_PER_WORD, WORD_SIZE};
use pdata::block_manager::{le32, le64, BlockManager};
use pdata::btree;
use pdata::check::array::verify_block;
use pdata::check::pipeline::{self, Buffers};
use pdata::io::BlockDevice;
use pdata::progress::NoProgress;
use std::sync::Arc;

/// One array block to read.
struct Job {
    loc: u64,
    /// Its first value's index in its array.
    first: u64,
    /// Values it must hold.
    nr: usize,
    value_size: usize,
    /// None: the era array; Some(i): writeset `i` of the list.
    set: Option<usize>,
}

/// The blocks written in era `since` or later, as `EraView::written_since`.
pub fn written_since(dev: Arc<dyn BlockDevice>, view: &EraView, since: u32) -> Result<Vec<Run>> {
    let bm = BlockManager::new(dev.clone(), CACHE_BLOCKS, false);
    let n = u64::from(view.nr_blocks);
    let sets = view.writesets_since(&bm, since)?;
    let mut jobs = Vec::new();
    spine(&bm, view.era_array_root, ERA_VALUE_SIZE, n, None, &mut jobs)?;
    for (i, ws) in sets.iter().enumerate() {
        let words = nr_words(u64::from(ws.nr_bits));
        spine(&bm, ws.root, WORD_SIZE, words, Some(i), &mut jobs)?;
    }
    jobs.sort_unstable_by_key(|j| j.loc);
    let mut marks = vec![0u64; nr_words(n) as usize];
    let mut failed = None;
    pipeline::run(
        dev.as_ref(),
        &NoProgress,
        &jobs,
        &mut Buffers::default(),
        |j| j.loc,
        |j, b| match b {
            Some(b) => verify_block(j.loc, b, j.value_size, j.nr),
            None => Some("cannot be read".into()),
        },
        |j, b, verdict| match (b, verdict) {
            (Some(b), None) => {
                let values = ArrayBlock(b).values();
                match j.set {
                    None => fold_eras(&mut marks, j.first, values, n, since),
                    Some(i) => fold_words(
                        &mut marks,
                        j.first,
                        values,
                        n.min(u64::from(sets[i].nr_bits)),
                    ),
                }
            }
            (_, problem) => {
                failed.get_or_insert_with(|| {
                    pdata::Error::corrupt(j.loc, "array block", problem.unwrap_or_default())
                });
            }
        },
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut runs = Vec::new();
    for (i, &word) in marks.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            push_block(
                &mut runs,
                i as u64 * BITS_PER_WORD + u64::from(w.trailing_zeros()),
            );
            w &= w - 1;
        }
    }
    Ok(runs)
}

/// Adds the jobs of the array at `root` of `len` values: its spine must
/// hold blocks 0.. exactly as its length needs.
fn spine(
    bm: &BlockManager,
    root: u64,
    value_size: usize,
    len: u64,
    set: Option<usize>,
    jobs: &mut Vec<Job>,
) -> Result<()> {
    let per_block = max_entries(value_size) as u64;
    let want = len.div_ceil(per_block);
    let mut next = 0u64;
    btree::walk(bm, root, &mut |k, v| {
        if k != next || k >= want || v.len() != 8 {
            return Err(pdata::Error::corrupt(
                root,
                "array spine",
                format!("entry {k} where {next} of {want} was expected"),
            ));
        }
        let first = k * per_block;
        jobs.push(Job {
            loc: le64(v, 0),
            first,
            nr: (len - first).min(per_block) as usize,
            value_size,
            set,
        });
        next += 1;
        Ok(())
    })?;
    if next != want {
        return Err(EraError::Invalid(format!(
            "an array of {len} values has {next} blocks, not {want}"
        )));
    }
    Ok(())
}

fn fold_eras(marks: &mut [u64], first: u64, values: &[u8], n: u64, since: u32) {
    for (i, v) in values.chunks_exact(ERA_VALUE_SIZE).enumerate() {
        let b = first + i as u64;
        let era = le32(v, 0);
        if b < n && era >= since && era != 0 {
            marks[(b / BITS_PER_WORD) as usize] |= 1 << (b % BITS_PER_WORD);
        }
    }
}

/// ORs words `first..` of a bitset into `marks`, bits below `end` only.
fn fold_words(marks: &mut [u64], first: u64, values: &[u8], end: u64) {
    for (k, v) in values.chunks_exact(WORD_SIZE).enumerate() {
        let bit = (first + k as u64) * BITS_PER_WORD;
        if bit >= end {
            break;
        }
        let live = (end - bit).min(BITS_PER_WORD);
        let mask = if live == BITS_PER_WORD {
            !0
        } else {
            (1u64 << live) - 1
        };
        marks[(bit / BITS_PER_WORD) as usize] |= le64(v, 0) & mask;
    }
}
