//! The full consistency check of era metadata (what `era_check` does): the
//! superblock, the writeset tree and every writeset's bitset, the current
//! writeset, the era array (no era newer than the current one), the
//! metadata snapshot's trees when there is one, and the metadata space map
//! against the references found. The machinery is the engine's
//! (`pdata::check`); this module says only what is era's.

mod trees;

use crate::format::superblock::{
    Superblock, MAX_NR_BLOCKS, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR,
};
use crate::format::writeset::{WritesetDisk, NO_WRITESET};
use crate::metadata::ERA_VALUE_SIZE;
use pdata::block_manager::{le32, Validator};
use pdata::check::array::{self as array_check, ArraySpec, Spine};
use pdata::check::space_map::{self as sm, BitmapRef, Map};
use pdata::check::{Problems, RefCounts};
use pdata::io::BlockDevice;
use pdata::progress::ProgressHook;
use pdata::space_map::format::MAX_METADATA_BLOCKS;
use rustc_hash::FxHashSet;
use trees::{root, Era, Other, Tree, Walker};

/// Where a problem is; the tool prints problems under these headings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Superblock,
    Writesets,
    EraArray,
    SpaceMap,
}

impl pdata::check::Section for Section {
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub super_block_only: bool,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub log: Problems<Section>,
    pub superblock_ok: bool,
    /// The space map's counts were compared with the references found.
    pub counts_compared: bool,
}

impl std::ops::Deref for CheckReport {
    type Target = Problems<Section>;
    fn deref(&self) -> &Self::Target {
        &self.log
    }
}

/// Reads and validates the era superblock (or the snapshot's copy) at `loc`.
pub fn read_superblock(dev: &dyn BlockDevice, loc: u64) -> Result<Superblock, String> {
    let mut b = pdata::block_manager::new_block_buffer();
    dev.read_block(loc, &mut b)
        .map_err(|e| format!("cannot be read: {e}"))?;
    SUPERBLOCK_VALIDATOR
        .check(loc, &b)
        .map_err(|e| e.to_string())?;
    let sb = Superblock::unpack(&b);
    // The era array needs a block per `per_block` origin blocks: a larger
    // count is damage (and would size the tools' memory).
    let per_block = pdata::array::max_entries(ERA_VALUE_SIZE) as u64;
    let most = dev.nr_blocks().saturating_mul(per_block);
    if u64::from(sb.nr_blocks) > most.min(u64::from(MAX_NR_BLOCKS)) {
        return Err(format!(
            "says {} origin blocks, more than the metadata device's era array could hold",
            sb.nr_blocks
        ));
    }
    Ok(sb)
}

/// Checks the era metadata on `dev`.
pub fn check(
    dev: &dyn BlockDevice,
    opts: &CheckOptions,
    progress: &dyn ProgressHook,
) -> CheckReport {
    let mut report = CheckReport::default();
    let sb = match read_superblock(dev, SUPERBLOCK_LOCATION) {
        Ok(sb) => sb,
        Err(e) => {
            report
                .log
                .fatal(Section::Superblock, format!("superblock {e}"));
            return report;
        }
    };
    report.superblock_ok = true;
    if sb.data_block_size == 0 {
        report
            .log
            .fatal(Section::Superblock, "the block size is zero");
    }
    if opts.super_block_only {
        return report;
    }
    let msm = sb.metadata_sm_root;
    let meta_len = msm.nr_blocks.min(dev.nr_blocks()).min(MAX_METADATA_BLOCKS);
    if meta_len < msm.nr_blocks {
        report.log.fatal(
            Section::Superblock,
            format!(
                "the metadata space map covers {} blocks, the device has only {}",
                msm.nr_blocks,
                dev.nr_blocks()
            ),
        );
    }
    let Ok(meta) = RefCounts::new(meta_len) else {
        report
            .log
            .fatal(Section::Superblock, "not enough memory to count references");
        return report;
    };
    progress.set_total(msm.nr_allocated);
    let mut w = Walker::new(dev, meta, Era::new(), progress);
    w.problems = std::mem::take(&mut report.log);
    w.reference_other(SUPERBLOCK_LOCATION, Other::Superblock, Section::Superblock);
    let mut snap = None;
    if sb.metadata_snap != 0
        && w.reference_other(sb.metadata_snap, Other::SnapSuperblock, Section::Superblock)
    {
        match read_superblock(dev, sb.metadata_snap) {
            Ok(s) => snap = Some(s),
            Err(e) => w.problems.fatal(
                Section::Superblock,
                format!(
                    "the metadata snapshot's superblock at block {} {e}",
                    sb.metadata_snap
                ),
            ),
        }
    }

    let mut roots = vec![
        root(sb.writeset_tree_root, Tree::Writesets, false),
        root(sb.era_array_root, Tree::Spine, false),
    ];
    let current = sb.current_writeset;
    if current.root != NO_WRITESET {
        roots.push(root(current.root, Tree::Spine, false));
    }
    if let Some(s) = &snap {
        roots.push(root(s.writeset_tree_root, Tree::Writesets, true));
        roots.push(root(s.era_array_root, Tree::Spine, true));
    }
    w.walk(&roots);
    w.check_repeats();

    let mut counted = FxHashSet::default();
    let mut checked = FxHashSet::default();
    for (s, is_snap) in std::iter::once((&sb, false)).chain(snap.iter().map(|s| (s, true))) {
        let mut writesets = Vec::new();
        w.gather(
            s.writeset_tree_root,
            Tree::Writesets,
            &w.client.writeset_leaves,
            &mut writesets,
        );
        let mut last = None;
        for &(era, ws) in &writesets {
            if last.is_some_and(|l| era <= l) {
                w.problems.fatal(
                    Section::Writesets,
                    format!("writeset tree: era {era} out of order"),
                );
            }
            last = Some(era);
            if era > u64::from(s.current_era) {
                w.problems.fatal(
                    Section::Writesets,
                    format!(
                        "writeset of era {era} is newer than the current era {}",
                        s.current_era
                    ),
                );
            }
            if checked.insert(ws.root) {
                check_writeset(&mut w, &mut counted, ws);
            }
        }
        if !is_snap && current.root != NO_WRITESET && checked.insert(current.root) {
            check_writeset(&mut w, &mut counted, current);
        }
        if checked.insert(s.era_array_root) {
            check_era_array(&mut w, &mut counted, s, is_snap);
        }
    }

    let p = &w.problems;
    let compare = p.nr_fatal == p.nr_fatal_in(Section::SpaceMap);
    let index = sm::metadata_index(&mut w, msm.bitmap_root, msm.nr_blocks, Section::SpaceMap);
    w.walk(&[root(msm.ref_count_root, Tree::MetaOverflow, false)]);
    w.check_repeats();
    if compare {
        report.counts_compared = true;
        let overflow = std::mem::take(&mut w.client.meta_overflow);
        sm::metadata_overflow(&mut w, overflow, Section::SpaceMap);
        let limit = w.meta.nr_blocks();
        let bitmaps = index
            .iter()
            .enumerate()
            .map(|(i, e)| BitmapRef {
                map: Map::Metadata,
                index: i as u64,
                loc: e.blocknr,
            })
            .filter(|b| b.loc < limit)
            .collect();
        sm::compare(
            &mut w,
            |c| &c.no_data,
            bitmaps,
            [msm.nr_blocks, 0],
            Section::SpaceMap,
        );
    }
    report.log = w.problems;
    report
}

/// The spine entries under `root`, each flagged when its leaf was already
/// counted with another array (the snapshot shares leaves with the live
/// state).
fn spine(w: &Walker, counted: &mut FxHashSet<u64>, root: u64) -> Spine {
    let mut entries = Vec::new();
    w.gather(root, Tree::Spine, &w.client.spine_leaves, &mut entries);
    let mut fresh = FxHashSet::default();
    let entries = entries
        .into_iter()
        .map(|(index, loc, leaf)| {
            let already = counted.contains(&leaf);
            fresh.insert(leaf);
            (index, loc, already)
        })
        .collect();
    counted.extend(fresh);
    Spine::from_entries(entries)
}

fn check_writeset(w: &mut Walker, counted: &mut FxHashSet<u64>, ws: WritesetDisk) {
    let s = spine(w, counted, ws.root);
    let name = "writeset bitset";
    array_check::check_bitset(
        w,
        s,
        name,
        u64::from(ws.nr_bits),
        Section::Writesets,
        |_, _, _| {},
    );
}

fn check_era_array(w: &mut Walker, counted: &mut FxHashSet<u64>, sb: &Superblock, snap: bool) {
    let s = spine(w, counted, sb.era_array_root);
    let spec = ArraySpec {
        name: if snap {
            "metadata snapshot's era array"
        } else {
            "era array"
        },
        value_size: ERA_VALUE_SIZE,
        nr_entries: u64::from(sb.nr_blocks),
    };
    let current = sb.current_era;
    array_check::check(w, s, spec, Section::EraArray, |w, first, values| {
        for (i, v) in values.chunks_exact(ERA_VALUE_SIZE).enumerate() {
            let era = le32(v, 0);
            if era > current {
                w.problems.fatal(
                    Section::EraArray,
                    format!(
                        "{}: block {} has era {era}, newer than the current era {current}",
                        spec.name,
                        first + i as u64
                    ),
                );
            }
        }
    });
}
