//! Recovery of a cache whose superblock is wholly lost (zeroed, garbage):
//! what the superblock said is given by the caller (the cache block size,
//! which nothing else records) or inferred, and the mapping array is found
//! by scanning every block of the device for spine leaves whose array
//! blocks hold values that can only be mappings.
//!
//! Rules: a leaf is a mapping leaf when every array block it names is a
//! sound array block of 8-byte values that are all mappings (flags only
//! VALID and DIRTY, origin block 0 when not VALID) and some are mapped.
//! Where leaves of several transactions offer one index, the leaf holding
//! the most mappings wins (the largest consistent set). The shutdown state
//! is unknown without the superblock: every mapping comes back dirty, so
//! the dirty bitset is only used to tell the version.

use crate::check::block_size_problem;
use crate::format::mapping::{unpack, FLAG_DIRTY, FLAG_VALID};
use crate::format::superblock::{Policy, Superblock, HINT_SIZE};
use crate::scan::{all_leaves, Leaf};
use crate::{CacheError, Result};
use pdata::array::{max_entries, ArrayBlock};
use pdata::bitset::nr_words;
use pdata::block_manager::le64;
use pdata::check::array::verify_block;
use pdata::io::{read_sorted, BlockDevice};
use pdata::BLOCK_SIZE;
use rustc_hash::{FxHashMap, FxHashSet};

/// What stands in for a lost superblock's fields.
#[derive(Debug, Clone, Default)]
pub struct LostSuperblock {
    /// Cache block size in sectors: required.
    pub block_size: Option<u32>,
    /// 1 or 2; else 2 when a dirty bitset is found, 1 when not.
    pub version: Option<u32>,
    /// Else the mapping array's length as found.
    pub nr_cache_blocks: Option<u32>,
    /// Else smq.
    pub policy: Option<String>,
}

/// The superblock put together, the mapping array's spine entries (array
/// block index, location), and what was guessed.
pub(crate) struct Rebuilt {
    pub sb: Superblock,
    pub entries: Vec<(u64, u64)>,
    /// Cache blocks to leave unmapped.
    pub disputed: FxHashSet<u64>,
    pub warnings: Vec<String>,
}

/// An array block of 8-byte values found by scanning.
struct Found {
    nr_entries: usize,
    /// Mapped entries, when every value is a mapping.
    mappings: Option<u64>,
    /// A mapped entry carries the v1 dirty flag.
    dirty_flag: bool,
}

const BATCH: usize = 128;

/// The sound array blocks of 8-byte values at `locs`.
fn array_blocks(dev: &dyn BlockDevice, mut locs: Vec<u64>) -> FxHashMap<u64, Found> {
    locs.sort_unstable();
    locs.dedup();
    locs.retain(|&l| l < dev.nr_blocks());
    let mut out = FxHashMap::default();
    let mut bufs = vec![[0u8; BLOCK_SIZE]; BATCH];
    for chunk in locs.chunks(BATCH) {
        let mut ok = vec![false; chunk.len()];
        read_sorted(dev, chunk, &mut bufs, &mut ok);
        for (i, &loc) in chunk.iter().enumerate() {
            let a = ArrayBlock(&bufs[i]);
            // Checked against its own count: only soundness is asked here.
            if !ok[i] || verify_block(loc, &bufs[i], 8, a.nr_entries()).is_some() {
                continue;
            }
            let (mut mapped, mut all, mut dirty_flag) = (0u64, true, false);
            for v in a.values().chunks_exact(8) {
                let (oblock, flags) = unpack(le64(v, 0));
                if flags & !(FLAG_VALID | FLAG_DIRTY) != 0
                    || (flags & FLAG_VALID == 0 && oblock != 0)
                {
                    all = false;
                    break;
                }
                if flags & FLAG_VALID != 0 {
                    mapped += 1;
                    dirty_flag |= flags & FLAG_DIRTY != 0;
                }
            }
            out.insert(
                loc,
                Found {
                    nr_entries: a.nr_entries(),
                    mappings: all.then_some(mapped),
                    dirty_flag,
                },
            );
        }
    }
    out
}

/// Puts together what the lost superblock said, from `o` and a scan.
pub(crate) fn rebuild(dev: &dyn BlockDevice, o: &LostSuperblock) -> Result<Rebuilt> {
    let bs = o.block_size.ok_or_else(|| {
        CacheError::Invalid(
            "the cache block size is recorded nowhere else: give it with --block-size SECTORS"
                .into(),
        )
    })?;
    if let Some(p) = block_size_problem(bs) {
        return Err(CacheError::Invalid(p));
    }
    let policy = Policy {
        name: o.policy.clone().unwrap_or_else(|| Policy::smq().name),
        ..Policy::smq()
    };
    let policy_name = policy.name_bytes().map_err(CacheError::Invalid)?;
    let mut warnings = Vec::new();

    let leaves: Vec<Leaf> = all_leaves(dev);
    let blocks = array_blocks(
        dev,
        leaves
            .iter()
            .flat_map(|l| l.1.iter().map(|e| e.1))
            .collect(),
    );
    // Mapping leaves with their mappings, the fullest first.
    let mut mapping_leaves: Vec<(u64, &Leaf)> = leaves
        .iter()
        .filter_map(|leaf| {
            let mut total = 0;
            for (_, loc) in &leaf.1 {
                total += blocks.get(loc)?.mappings?;
            }
            (total > 0).then_some((total, leaf))
        })
        .collect();
    mapping_leaves.sort_by_key(|(total, leaf)| (std::cmp::Reverse(*total), leaf.0));
    let mut chosen: FxHashMap<u64, u64> = FxHashMap::default();
    let mut rivals: Vec<(u64, u64)> = Vec::new();
    for (_, leaf) in &mapping_leaves {
        for &(k, loc) in &leaf.1 {
            match chosen.get(&k) {
                Some(&l) if l != loc => rivals.push((k, loc)),
                Some(_) => {}
                None => {
                    chosen.insert(k, loc);
                }
            }
        }
    }
    let disputed = disputed(dev, &chosen, rivals);
    if !disputed.is_empty() {
        warnings.push(format!(
            "{} cache blocks are mapped differently by mapping arrays of different transactions, and which is the newest is recorded nowhere but the superblock: they come back unmapped",
            disputed.len()
        ));
    }
    let Some(&last) = chosen.keys().max() else {
        return Err(CacheError::Invalid(
            "no mapping array found on the device: refusing to write an empty cache".into(),
        ));
    };
    let per = max_entries(8) as u64;
    let found_n = last * per
        + blocks
            .get(&chosen[&last])
            .map_or(0, |b| b.nr_entries as u64);
    let n = match o.nr_cache_blocks {
        Some(n) => {
            if u64::from(n) != found_n {
                warnings.push(format!(
                    "--nr-cache-blocks {n}, but the mapping array found holds {found_n} entries: its blocks of another length are lost"
                ));
            }
            u64::from(n)
        }
        None => {
            warnings.push(format!(
                "{found_n} cache blocks, as far as the mapping array found reaches (give --nr-cache-blocks if there were more)"
            ));
            found_n
        }
    };
    let nr_cache_blocks = u32::try_from(n)
        .map_err(|_| CacheError::Invalid(format!("{n} cache blocks: more than a cache holds")))?;
    let mut entries: Vec<(u64, u64)> = chosen.into_iter().collect();
    entries.sort_unstable();

    let version = match o.version {
        Some(v) => v,
        None => {
            let used: FxHashSet<u64> = entries.iter().map(|e| e.1).collect();
            let v1_flags = entries
                .iter()
                .any(|e| blocks.get(&e.1).is_some_and(|b| b.dirty_flag));
            let v = if !v1_flags && has_bitset(&leaves, &blocks, &used, nr_words(n)) {
                2
            } else {
                1
            };
            warnings.push(format!(
                "metadata version {v} taken ({}; give --metadata-version to say otherwise)",
                if v == 2 {
                    "a dirty bitset of the cache's size was found"
                } else {
                    "no dirty bitset was found"
                }
            ));
            v
        }
    };
    if !(1..=2).contains(&version) {
        return Err(CacheError::Invalid(format!(
            "metadata version {version}: only 1 and 2 exist"
        )));
    }

    let mut sb = Superblock::unpack(&[0u8; BLOCK_SIZE]);
    sb.version = version;
    sb.data_block_size = bs;
    sb.cache_blocks = nr_cache_blocks;
    sb.policy_name = policy_name;
    sb.policy_version = policy.version;
    sb.policy_hint_size = HINT_SIZE;
    // Not read: the entries are given; nonzero as any sound superblock's.
    sb.mapping_root = entries[0].1;
    warnings.push(format!(
        "superblock lost: {} mapping array blocks found by scanning the device; hints and discards dropped, every mapping dirty",
        entries.len()
    ));
    Ok(Rebuilt {
        sb,
        entries,
        disputed,
        warnings,
    })
}

/// A leaf not of the mapping array names a whole array of `words`
/// 8-byte values from index 0: version 2's dirty bitset.
fn has_bitset(
    leaves: &[Leaf],
    blocks: &FxHashMap<u64, Found>,
    used: &FxHashSet<u64>,
    words: u64,
) -> bool {
    leaves.iter().any(|(_, e)| {
        !e.is_empty()
            && e.iter().enumerate().all(|(i, &(k, loc))| {
                k == i as u64 && !used.contains(&loc) && blocks.contains_key(&loc)
            })
            && e.iter()
                .map(|x| blocks.get(&x.1).map_or(0, |b| b.nr_entries as u64))
                .sum::<u64>()
                == words
    })
}

/// A mapping entry as the rival arrays are compared: the origin block if
/// mapped (the dirty flag aside: all come back dirty).
fn mapping_at(b: &[u8; BLOCK_SIZE], i: usize) -> Option<u64> {
    let a = ArrayBlock(b);
    (i < a.nr_entries())
        .then(|| unpack(le64(a.value(i), 0)))
        .and_then(|(o, f)| (f & FLAG_VALID != 0).then_some(o))
}

/// The cache blocks on which the chosen array block of an index and a
/// rival one (of another transaction) disagree.
fn disputed(
    dev: &dyn BlockDevice,
    chosen: &FxHashMap<u64, u64>,
    rivals: Vec<(u64, u64)>,
) -> FxHashSet<u64> {
    let per = max_entries(8) as usize;
    let mut out = FxHashSet::default();
    let (mut a, mut b) = ([0u8; BLOCK_SIZE], [0u8; BLOCK_SIZE]);
    for (k, loc) in rivals {
        let Some(&mine) = chosen.get(&k) else {
            continue;
        };
        if dev.read_block(mine, &mut a).is_err() || dev.read_block(loc, &mut b).is_err() {
            continue;
        }
        for i in 0..per {
            if mapping_at(&a, i) != mapping_at(&b, i) {
                out.insert(k * per as u64 + i as u64);
            }
        }
    }
    out
}
