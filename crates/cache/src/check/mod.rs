//! The full consistency check of cache metadata (what `cache_check` does):
//! the superblock, every array and bitset block, the mappings, hints,
//! discards and (version 2) dirty bits by their rules, and the metadata
//! space map against the references found (CACHE.md). Each problem says
//! where it is; leaks, and oddities the kernel accepts (a dirty bit on an
//! unmapped block, hints of size 0), are the only non-fatal ones.
//!
//! The machinery is the engine's (`pdata::check`): this module says only
//! what is cache's: its superblock, its arrays and their values.

mod report;
mod trees;
mod values;

pub use report::{CheckReport, Problem, Section, Severity};
pub use trees::Array;

use crate::format::superblock::{
    Superblock, FLAGS, FLAG_NEEDS_CHECK, HINT_SIZE, MAX_DATA_BLOCK_SIZE, METADATA_SPACE_MAP_ROOT,
    MIN_DATA_BLOCK_SIZE, POLICY_NAME_SIZE, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR,
};
use pdata::block_manager::Validator;
use pdata::check::array::{self as arrays, ArraySpec};
use pdata::check::repair as fix;
use pdata::check::space_map::{self as sm, BitmapRef, Map};
use pdata::check::RefCounts;
use pdata::checksum::SALT_CACHE_SUPERBLOCK;
use pdata::io::BlockDevice;
use pdata::progress::{NoProgress, ProgressHook};
use trees::{Cache, Other, Tree, Walker};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub super_block_only: bool,
    pub skip_mappings: bool,
    pub skip_hints: bool,
    pub skip_discards: bool,
    /// When leaks are the only problem, set the leaked blocks free (the
    /// device must be writable).
    pub repair_leaks: bool,
}

/// Reads and validates the superblock at block 0.
pub fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock, String> {
    let mut b = [0u8; pdata::BLOCK_SIZE];
    dev.read_block(SUPERBLOCK_LOCATION, &mut b)
        .map_err(|e| format!("cannot be read: {e}"))?;
    SUPERBLOCK_VALIDATOR
        .check(SUPERBLOCK_LOCATION, &b)
        .map_err(|e| e.to_string())?;
    Ok(Superblock::unpack(&b))
}

/// What is wrong with a cache block size of `bs` sectors, for the kernel.
pub fn block_size_problem(bs: u32) -> Option<String> {
    let ok = (MIN_DATA_BLOCK_SIZE..=MAX_DATA_BLOCK_SIZE).contains(&bs)
        && bs.is_multiple_of(MIN_DATA_BLOCK_SIZE);
    (!ok).then(|| {
        format!(
            "cache block size {bs} sectors: the kernel takes a multiple of {MIN_DATA_BLOCK_SIZE} in {MIN_DATA_BLOCK_SIZE}..={MAX_DATA_BLOCK_SIZE}"
        )
    })
}

/// What is wrong with a superblock that validated; fatal all.
pub fn superblock_problems(sb: &Superblock) -> Vec<String> {
    let mut p = Vec::new();
    if sb.incompat_flags != 0 {
        p.push(format!(
            "unsupported incompatible features (flags {:#x})",
            sb.incompat_flags
        ));
    }
    if !sb.policy_name.contains(&0) {
        p.push(format!(
            "the policy name is not NUL-terminated within {POLICY_NAME_SIZE} bytes"
        ));
    }
    if sb.policy_hint_size != 0 && sb.policy_hint_size != HINT_SIZE {
        p.push(format!(
            "policy hint size {}: only 0 and {HINT_SIZE} are supported",
            sb.policy_hint_size
        ));
    }
    p.extend(block_size_problem(sb.data_block_size));
    if sb.mapping_root == 0 {
        p.push("no mapping array (mapping root 0)".into());
    }
    if sb.separate_dirty_bits() && sb.dirty_root == 0 {
        p.push("dirty bitset not found (version 2 with dirty root 0)".into());
    }
    if sb.discard_nr_blocks > 0 && sb.discard_root == 0 {
        p.push(format!(
            "{} discard blocks but no discard bitset",
            sb.discard_nr_blocks
        ));
    }
    p
}

/// Checks the metadata on `dev`, all of it.
pub fn check(dev: &dyn BlockDevice) -> CheckReport {
    check_with(dev, &CheckOptions::default(), &NoProgress)
}

/// Checks as `opts` says, telling `progress` of the blocks read.
pub fn check_with(
    dev: &dyn BlockDevice,
    opts: &CheckOptions,
    progress: &dyn ProgressHook,
) -> CheckReport {
    let mut report = CheckReport::default();
    let sb = match read_superblock(dev) {
        Ok(sb) => sb,
        Err(e) => {
            report.fatal(Section::Superblock, format!("superblock: {e}"));
            return report;
        }
    };
    report.superblock_ok = true;
    report.version = sb.version;
    report.nr_cache_blocks = sb.cache_blocks;
    for p in superblock_problems(&sb) {
        report.fatal(Section::Superblock, p);
    }
    if opts.super_block_only || !report.is_sound() {
        return report;
    }
    let msm = sb.metadata_sm_root;
    let (meta_len, problems) = sm::metadata_len(msm.nr_blocks, dev.nr_blocks());
    for p in problems {
        report.fatal(Section::Superblock, p);
    }
    let (Ok(meta), Ok(client)) = (RefCounts::new(meta_len), Cache::new()) else {
        report.fatal(Section::Superblock, "not enough memory for the counts");
        return report;
    };
    progress.set_total(msm.nr_allocated);
    let mut w = Walker::new(dev, meta, client, progress);
    w.problems = std::mem::take(&mut report.log);
    w.reference_other(SUPERBLOCK_LOCATION, Other::Superblock, Section::Superblock);

    // Every structure is walked whatever is skipped (they hold references);
    // skipping only drops the rules about their values.
    let hints = sb.hint_root != 0;
    if hints && sb.policy_hint_size == 0 {
        report.notes.push(
            "the superblock's hint size is 0 but a hint array exists: taken as 4-byte hints".into(),
        );
    }
    let mut roots = vec![trees::Ref::root(
        sb.mapping_root,
        Tree::Spine(Array::Mapping),
    )];
    if hints {
        roots.push(trees::Ref::root(sb.hint_root, Tree::Spine(Array::Hint)));
    }
    if sb.discard_root != 0 {
        roots.push(trees::Ref::root(
            sb.discard_root,
            Tree::Spine(Array::Discard),
        ));
    }
    if sb.separate_dirty_bits() {
        roots.push(trees::Ref::root(sb.dirty_root, Tree::Spine(Array::Dirty)));
    }
    w.walk(&roots);
    w.check_repeats();

    let mut v = values::Values::new(&sb, opts);
    let spines = std::mem::take(&mut w.client.spines);
    let [mapping, hint, discard, dirty] = spines;
    let n = u64::from(sb.cache_blocks);
    let spec = |a: Array, value_size, nr_entries| ArraySpec {
        name: a.name(),
        value_size,
        nr_entries,
    };
    arrays::check(
        &mut w,
        mapping,
        spec(Array::Mapping, 8, n),
        Section::Mappings,
        |w, first, vals| v.mappings(w, first, vals),
    );
    v.finish_mappings(&mut w);
    // Damaged mappings would make every dirty bit look misplaced.
    v.rules &= w.problems.nr_fatal_in(Section::Mappings) == 0;
    if hints {
        arrays::check(
            &mut w,
            hint,
            spec(Array::Hint, 4, n),
            Section::Hints,
            |_, _, _| {},
        );
    }
    if sb.discard_root != 0 {
        arrays::check_bitset(
            &mut w,
            discard,
            Array::Discard.name(),
            sb.discard_nr_blocks,
            Section::Discards,
            |_, _, _| {},
        );
    }
    if sb.separate_dirty_bits() {
        arrays::check_bitset(
            &mut w,
            dirty,
            Array::Dirty.name(),
            n,
            Section::Dirty,
            |_, i, word| v.dirty_word(i, word),
        );
    }
    v.finish(&mut report);

    // The space map: its structure always, its counts only when every
    // reference was found.
    w.client.meta_overflow.clear();
    let compare = w.problems.nr_fatal == 0;
    let mut index = sm::metadata_index(&mut w, msm.bitmap_root, msm.nr_blocks, Section::SpaceMap);
    w.walk(&[trees::Ref::root(msm.ref_count_root, Tree::MetaOverflow)]);
    w.check_repeats();
    if compare && w.problems.nr_fatal == 0 {
        report.counts_compared = true;
        let overflow = std::mem::take(&mut w.client.meta_overflow);
        sm::metadata_overflow(&mut w, overflow, Section::SpaceMap);
        let limit = w.meta.nr_blocks();
        let bitmaps: Vec<BitmapRef> = index
            .iter()
            .enumerate()
            .map(|(i, e)| BitmapRef {
                map: Map::Metadata,
                index: i as u64,
                loc: e.blocknr,
            })
            .filter(|b| b.loc < limit)
            .collect();
        let t = sm::compare(
            &mut w,
            |c| &c.no_data,
            bitmaps,
            [msm.nr_blocks, 0],
            Section::SpaceMap,
        );
        if opts.repair_leaks && w.problems.nr_fatal == 0 && !t.leaky.is_empty() {
            let fixed =
                fix::free_metadata_leaks(dev, &t.leaky, &w.meta, &mut index, msm.bitmap_root)
                    .and_then(|n| fix::flush(dev).map(|()| n))
                    .and_then(|n| {
                        fix::lower_nr_allocated(
                            dev,
                            SUPERBLOCK_LOCATION,
                            SALT_CACHE_SUPERBLOCK,
                            &[(METADATA_SPACE_MAP_ROOT, n)],
                        )
                        .map(|()| n)
                    });
            match fixed {
                Ok(n) => report.repaired_leaks = n,
                Err(e) => w.problems.fatal(
                    Section::SpaceMap,
                    format!("repairing the leaks failed: {e}"),
                ),
            }
        }
    }
    report.log = w.problems;
    report
}

/// Clears the needs_check flag of the superblock, in place; true if it was
/// set.
pub fn clear_needs_check(dev: &dyn BlockDevice) -> Result<bool, String> {
    read_superblock(dev).map_err(|e| format!("superblock: {e}"))?;
    fix::clear_superblock_flag(
        dev,
        SUPERBLOCK_LOCATION,
        FLAGS,
        FLAG_NEEDS_CHECK,
        SALT_CACHE_SUPERBLOCK,
    )
}
