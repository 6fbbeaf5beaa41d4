//! The full consistency check of thin metadata (what `thin_check` does):
//! the superblock, every node of every tree, the devices tree against the
//! mapping tree, and both space maps against the references actually found
//! (THIN.md §5-6). Problems are reported with where they are; leaks (a
//! count of 1 where nothing refers to the block) are the only non-fatal
//! ones.
//!
//! Fast and lean: blocks are read straight from the device level by level
//! in block order (no cache), verified on a second thread, and counted in
//! one byte per block; shared sub-trees are visited once but counted per
//! reference.
//!
//! That machinery is the engine's (`pdata::check`); this module says only
//! what is thin's: its trees and their values (`trees`), its device rules
//! (`devices`), its superblock, its data space map index, and the in-place
//! repairs (`repair`).

mod devices;
mod repair;
mod report;
mod space_maps;
mod superblock;
mod trees;

pub use repair::clear_needs_check;
pub use report::{CheckReport, Problem, Section, Severity};

use crate::format::superblock::SUPERBLOCK_LOCATION;
use crate::progress::{NoProgress, ProgressHook};
use pdata::check::space_map::{self as sm, BitmapRef, Map};
use pdata::check::RefCounts;
use pdata::io::BlockDevice;
use pdata::space_map::format::nr_bitmaps;
use pdata::space_map::spans::next_window_end;
use std::sync::Arc;
use trees::{root, Other, Thin, Tree, Walker};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Only the superblock.
    pub super_block_only: bool,
    /// The devices tree and the top level of the mapping tree only (so no
    /// space maps either).
    pub skip_mappings: bool,
    /// The metadata snapshot's trees instead of the live ones (it has no
    /// space maps).
    pub metadata_snap: bool,
    /// Walk this mapping tree instead of the superblock's.
    pub override_mapping_root: Option<u64>,
    /// Walk this device-details tree instead of the superblock's (1.x).
    pub override_details_root: Option<u64>,
    /// When leaks are the only problem, set the leaked blocks free (the
    /// device must be writable).
    pub repair_leaks: bool,
    /// Bytes the data block counts may take ([`default_budget`] if None):
    /// past it, the data blocks are counted window by window, a pass over
    /// the mapping leaves each.
    pub data_budget: Option<usize>,
}

/// The data counts' share of the check's memory: 40 MiB less the walk's
/// own that grows with the metadata (about 9 bytes per metadata block in
/// use: the mapping leaves' entries, the internal nodes' children, the
/// references to shared nodes, the leaves' spans), at least 8 MiB.
pub fn default_budget(meta_in_use: u64) -> usize {
    let walk = usize::try_from(meta_in_use.saturating_mul(9)).unwrap_or(usize::MAX);
    (40usize << 20).saturating_sub(walk).max(8 << 20)
}

/// Checks the metadata on `dev` (the committed state), all of it.
pub fn check(dev: Arc<dyn BlockDevice>) -> pdata::Result<CheckReport> {
    Ok(check_with(dev.as_ref(), &CheckOptions::default()))
}

/// Checks the metadata on `dev` as `opts` says.
pub fn check_with(dev: &dyn BlockDevice, opts: &CheckOptions) -> CheckReport {
    check_with_progress(dev, opts, &NoProgress)
}

/// Checks as `check_with` does, reporting to `progress` the metadata blocks
/// read, out of those the superblock says are in use.
pub fn check_with_progress(
    dev: &dyn BlockDevice,
    opts: &CheckOptions,
    progress: &dyn ProgressHook,
) -> CheckReport {
    let mut report = CheckReport::default();
    let sb = match superblock::read(dev, SUPERBLOCK_LOCATION) {
        Ok(sb) => sb,
        Err(e) => {
            report.fatal(Section::Superblock, format!("superblock {e}"));
            return report;
        }
    };
    report.superblock_ok = true;
    report.transaction_id = sb.transaction_id;
    let msm = sb.metadata_sm_root;
    let dsm = sb.data_sm_root;
    report.metadata_free_blocks = msm.nr_blocks.saturating_sub(msm.nr_allocated);
    for p in superblock::unsupported(&sb) {
        report.fatal(Section::Superblock, p);
    }
    if opts.super_block_only {
        return report;
    }

    // Every metadata reference must fall in the metadata space map, and
    // that map on the device.
    let (meta_len, problems) = sm::metadata_len(msm.nr_blocks, dev.nr_blocks());
    for p in problems {
        report.fatal(Section::Superblock, p);
    }
    // The data space map's bitmaps live on the metadata device.
    let data_len = if nr_bitmaps(dsm.nr_blocks) as u64 > meta_len {
        report.fatal(
            Section::Superblock,
            format!(
                "the data space map covers {} blocks, too many bitmaps for the metadata device",
                dsm.nr_blocks
            ),
        );
        0
    } else {
        dsm.nr_blocks
    };
    let budget = opts
        .data_budget
        .unwrap_or_else(|| default_budget(msm.nr_allocated));
    let (Ok(meta), Ok(data)) = (
        RefCounts::new(meta_len),
        RefCounts::window(data_len, 0, budget),
    ) else {
        report.fatal(
            Section::Superblock,
            format!("not enough memory to count references to {data_len} data blocks"),
        );
        return report;
    };
    progress.set_total(msm.nr_allocated);
    let mut w = Walker::new(
        dev,
        meta,
        Thin::new(data, dsm.nr_blocks, meta_len),
        progress,
    );
    w.problems = std::mem::take(&mut report.log);
    w.reference_other(SUPERBLOCK_LOCATION, Other::Superblock, Section::Superblock);

    let mut snap = None;
    if sb.held_root != 0
        && w.reference_other(sb.held_root, Other::SnapSuperblock, Section::Superblock)
    {
        match superblock::read(dev, sb.held_root) {
            Ok(s) => snap = Some(s),
            Err(e) => w.problems.fatal(
                Section::Superblock,
                format!(
                    "the metadata snapshot's superblock at block {} {e}",
                    sb.held_root
                ),
            ),
        }
    }
    if opts.metadata_snap && snap.is_none() {
        if sb.held_root == 0 {
            w.problems
                .fatal(Section::Superblock, "no metadata snapshot is held");
        }
        return finish(report, w);
    }

    let full = !opts.metadata_snap && !opts.skip_mappings;
    let mut roots = Vec::new();
    let top = opts.override_mapping_root.unwrap_or(sb.data_mapping_root);
    let details = opts.override_details_root.unwrap_or(sb.device_details_root);
    if !opts.metadata_snap {
        roots.push(root(details, Tree::Details, false));
        roots.push(root(top, Tree::Top, false));
    }
    if let Some(s) = &snap {
        roots.push(root(s.device_details_root, Tree::Details, true));
        roots.push(root(s.data_mapping_root, Tree::Top, true));
    }
    if full {
        roots.push(root(dsm.bitmap_root, Tree::DataIndex, false));
    }
    w.client.follow_bottom = !opts.skip_mappings;
    w.walk(&roots);

    w.check_repeats();
    let follow = w.client.follow_bottom;
    let live = (!opts.metadata_snap).then(|| devices::check(&mut w, false, details, top, follow));
    let snapped = snap.as_ref().map(|s| {
        devices::check(
            &mut w,
            true,
            s.device_details_root,
            s.data_mapping_root,
            follow,
        )
    });
    let (devices, nr_mappings) = live.or(snapped).unwrap_or_default();
    report.devices = devices;
    report.nr_mappings = nr_mappings;
    if !full {
        return finish(report, w);
    }

    // The space maps: their own structure always, their counts only when
    // the trees gave every reference (else the differences only echo the
    // damage found).
    let p = &w.problems;
    w.client.compare_counts = p.nr_fatal == p.nr_fatal_in(Section::SpaceMaps);
    let mut meta_index =
        sm::metadata_index(&mut w, msm.bitmap_root, msm.nr_blocks, Section::SpaceMaps);
    let mut data_index = space_maps::data_index(&mut w, dsm.nr_blocks);
    w.walk(&[
        root(msm.ref_count_root, Tree::MetaOverflow, false),
        root(dsm.ref_count_root, Tree::DataOverflow, false),
    ]);
    w.check_repeats();
    if !w.client.compare_counts {
        return finish(report, w);
    }
    report.counts_compared = true;
    let overflow = std::mem::take(&mut w.client.meta_overflow);
    sm::metadata_overflow(&mut w, overflow, Section::SpaceMaps);
    let mut bitmaps = Vec::with_capacity(meta_index.len() + data_index.len());
    bitmaps.extend(meta_index.iter().enumerate().map(|(i, e)| BitmapRef {
        map: Map::Metadata,
        index: i as u64,
        loc: e.blocknr,
    }));
    let whole = data_len == dsm.nr_blocks;
    let mut end = w.client.data.window_end();
    if whole {
        bitmaps.extend(space_maps::data_bitmaps(&data_index, 0..end));
    }
    let mut t = sm::Tally::default();
    let nr_blocks = [msm.nr_blocks, dsm.nr_blocks];
    compare(&mut w, bitmaps, nr_blocks, &mut t);
    // The data blocks the budget left out, window by window.
    // Each ended where the last one's density says, so that its pass
    // reads few leaves beyond it (`LeafSpans`).
    let mut start = 0;
    while whole && end < data_len {
        let Ok(data) = RefCounts::window(data_len, end, budget) else {
            break;
        };
        w.client.data = data.ending_by(next_window_end(end, end - start, data_len));
        start = end;
        end = space_maps::recount(&mut w);
        let bitmaps = space_maps::data_bitmaps(&data_index, start..end).collect();
        compare(&mut w, bitmaps, nr_blocks, &mut t);
    }
    sm::report_leaks(&mut w, &t, Section::SpaceMaps);
    report.metadata_blocks_in_use = t.in_use[0];
    report.data_blocks_in_use = t.in_use[1];
    if opts.repair_leaks && w.problems.nr_fatal == 0 && !t.leaky.is_empty() {
        let freed = repair::leaks(
            &w,
            &t.leaky,
            &mut meta_index,
            msm.bitmap_root,
            &mut data_index,
        )
        .and_then(|freed| {
            let data = space_maps::earlier_data_leaks(&mut w, &t.leaky, &mut data_index, budget)?;
            repair::finish(w.dev, [freed[0], freed[1] + data])
        });
        match freed {
            Ok(n) => report.repaired_leaks = n,
            Err(e) => w.problems.fatal(
                Section::SpaceMaps,
                format!("repairing the leaks failed: {e}"),
            ),
        }
    }
    finish(report, w)
}

/// Compares `bitmaps` (those within the metadata device) with the counts
/// at hand, adding to `t`.
fn compare(w: &mut Walker, mut bitmaps: Vec<BitmapRef>, nr_blocks: [u64; 2], t: &mut sm::Tally) {
    let limit = w.meta.nr_blocks();
    bitmaps.retain(|b| b.loc < limit);
    sm::compare_some(w, |t| &t.data, bitmaps, nr_blocks, Section::SpaceMaps, t);
}

/// The report, with the problems the walk found.
fn finish(mut report: CheckReport, w: Walker) -> CheckReport {
    report.log = w.problems;
    report
}
