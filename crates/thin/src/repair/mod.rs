//! Recovery of damaged pool metadata as an event stream: what `thin_repair`
//! writes out and `thin_dump --repair` prints.
//!
//! When the superblock validates and every tree reads cleanly, recovery is
//! the plain walk. Otherwise it keeps whatever still reads:
//!
//! * a tree node that is lost (bad checksum, wrong location, bad shape,
//!   keys outside its parent's bounds) leaves a *gap*: the key range it
//!   covered. The metadata device is then scanned once, and gaps are filled
//!   with the valid nodes that lost their parent (see `search`);
//! * a lost superblock or root means a gap over every key;
//! * a device with mappings but no details gets details rebuilt (mapped
//!   blocks counted, times and transaction the pool's, so every older
//!   mapping counts as shared and a write to it copies first: safe);
//! * a device with details but no mapping tree gets the orphaned tree
//!   with exactly its number of mappings, or is dropped;
//! * mappings to data blocks past the end of the pool are dropped (a pool
//!   whose metadata claims more data blocks than its device has does not
//!   activate); when the pool size is lost it is the highest block mapped
//!   plus one, or `--nr-data-blocks`.
//!
//! Every choice that loses or guesses something is reported as a warning.

mod emit;
mod pool;
mod reader;
mod scan;
mod search;
mod survey;

use crate::format::device_details::DeviceDetails;
use crate::format::device_details::MAX_DEVICE_ID;
use crate::format::superblock::Superblock;
use crate::ir::Visitor;
use crate::progress::{NoProgress, ProgressHook};
use crate::{Result, ThinError};
use emit::{Plan, PlannedDevice};
use pdata::block_manager::le64;
use pdata::io::BlockDevice;
use pool::{Observed, SuperblockState};
use reader::Reader;
use search::{RootMatch, Search};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use survey::{salvage_entries, KeyRange, Piece, Survey};

/// Values that override (or stand in for) the superblock's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairOptions {
    pub transaction_id: Option<u64>,
    /// In 512-byte sectors.
    pub data_block_size: Option<u32>,
    pub nr_data_blocks: Option<u64>,
}

/// What a recovery found and did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Everything lost or guessed, one line each.
    pub warnings: Vec<String>,
    pub devices: u64,
    pub mappings: u64,
    /// The metadata was scanned for lost roots and orphaned nodes.
    pub scanned: bool,
}

/// Recovers the pool on `dev` into `out`.
pub fn recover(
    dev: Arc<dyn BlockDevice>,
    opts: &RepairOptions,
    out: &mut dyn Visitor,
) -> Result<RepairReport> {
    recover_with_progress(dev, opts, out, &NoProgress)
}

/// Recovers as `recover` does, first telling `progress` how many mappings
/// `out` will be given (the caller counts them as they come).
pub fn recover_with_progress(
    dev: Arc<dyn BlockDevice>,
    opts: &RepairOptions,
    out: &mut dyn Visitor,
    progress: &dyn ProgressHook,
) -> Result<RepairReport> {
    let sb = SuperblockState::read(dev.as_ref());
    let mut warnings = Vec::new();
    match &sb {
        SuperblockState::Valid(s) if s.incompat_flags != 0 => {
            return Err(ThinError::Incompatible(s.incompat_flags))
        }
        SuperblockState::Valid(_) => {}
        SuperblockState::Damaged(_, why) => warnings.push(format!(
            "superblock damaged ({why}): its fields are only hints"
        )),
        SuperblockState::Lost(why) => warnings.push(format!(
            "no superblock ({why}): searching the metadata for the trees"
        )),
    }
    let (reader, sm_failure) = Reader::new(dev.clone(), sb.fields().map(|s| &s.metadata_sm_root));
    if let Some(e) = sm_failure {
        warnings.push(format!("metadata space map unreadable ({e})"));
    }
    let mut rec = Recovery {
        dev,
        sb: &sb,
        survey: Survey::new(&reader),
        search: None,
        warnings,
    };
    let plan = rec.plan(opts)?;
    let mappings = plan.devices.iter().map(|d| d.details.mapped_blocks).sum();
    progress.set_total(mappings);
    emit::emit(&plan, &reader, out)?;
    Ok(RepairReport {
        devices: plan.devices.len() as u64,
        mappings,
        scanned: rec.search.is_some(),
        warnings: rec.warnings,
    })
}

struct Recovery<'r> {
    dev: Arc<dyn BlockDevice>,
    sb: &'r SuperblockState,
    survey: Survey<'r>,
    /// Built on first need: the scan is the expensive part.
    search: Option<Search>,
    warnings: Vec<String>,
}

/// A device on its way into the plan.
struct Found {
    details: Option<DeviceDetails>,
    subtrees: Vec<u64>,
}

impl<'r> Recovery<'r> {
    fn warn(&mut self, s: String) {
        self.warnings.push(s);
    }

    fn search(&mut self) -> &mut Search {
        Self::search_in(&mut self.search, self.dev.as_ref(), self.sb, self.survey.r)
    }

    fn plan(&mut self, opts: &RepairOptions) -> Result<Plan> {
        let details = self.details();
        let (top, searched) = self.top_level(&details);
        let mut found: BTreeMap<u64, Found> = BTreeMap::new();
        // Devices that need an orphaned tree, with the tree an orphaned
        // (maybe stale) top-level node gave them, if any.
        let mut needs: Vec<(u64, DeviceDetails, Option<u64>)> = Vec::new();
        // Devices with a top-level entry first: their gaps claim orphans
        // before the others look for a whole orphaned tree.
        for (&id, &root) in &top {
            let d = details.get(&id).copied();
            if let Some(d) = d.filter(|_| searched.contains(&id)) {
                let s = self.survey.summary(root);
                if s.is_some_and(|s| s.whole && s.mappings != d.mapped_blocks) {
                    needs.push((id, d, Some(root)));
                    continue;
                }
            }
            let subtrees = self.mapping_tree(id, root);
            found.insert(
                id,
                Found {
                    details: d,
                    subtrees,
                },
            );
        }
        for (&id, &d) in &details {
            if top.contains_key(&id) {
                continue;
            }
            if d.mapped_blocks == 0 {
                let subtrees = Vec::new();
                found.insert(
                    id,
                    Found {
                        details: Some(d),
                        subtrees,
                    },
                );
            } else {
                needs.push((id, d, None));
            }
        }
        if !needs.is_empty() {
            let wanted: Vec<(u64, DeviceDetails)> = needs.iter().map(|n| (n.0, n.1)).collect();
            let survey = &mut self.survey;
            let matches = Self::search_in(&mut self.search, self.dev.as_ref(), self.sb, survey.r)
                .match_roots(survey, &wanted);
            for (id, d, fallback) in needs {
                let m = matches.get(&id).cloned().unwrap_or(RootMatch::None);
                let Some(root) = self.matched_root(id, &d, m, fallback) else {
                    continue;
                };
                let subtrees = self.mapping_tree(id, root);
                found.insert(
                    id,
                    Found {
                        details: Some(d),
                        subtrees,
                    },
                );
            }
        }
        self.finish(found, opts)
    }

    /// The tree a device without a trustworthy top-level entry gets.
    fn matched_root(
        &mut self,
        id: u64,
        d: &DeviceDetails,
        m: RootMatch,
        fallback: Option<u64>,
    ) -> Option<u64> {
        let n = d.mapped_blocks;
        let (root, how) = match (m, fallback) {
            (RootMatch::Unique(r), _) => (r, "the only orphaned tree with"),
            (RootMatch::ByHistory(r), _) => (
                r,
                "of the orphaned trees with its count, the one an older top-level node names, with",
            ),
            (RootMatch::Ambiguous(c), fallback) => {
                let mut shown: Vec<String> = c.iter().take(4).map(|b| b.to_string()).collect();
                if c.len() > 4 {
                    shown.push(format!("{} more", c.len() - 4));
                }
                self.warn(format!(
                    "device {id}: orphaned trees at blocks {} all hold {n} mappings; not guessing which is its (that would mix devices' data)",
                    shown.join(", ")
                ));
                return self.fallback(id, n, fallback);
            }
            (RootMatch::None, fallback) => return self.fallback(id, n, fallback),
        };
        self.warn(format!(
            "device {id}: top-level entry lost; block {root} is {how} its {n} mappings"
        ));
        Some(root)
    }

    fn fallback(&mut self, id: u64, n: u64, fallback: Option<u64>) -> Option<u64> {
        match fallback {
            Some(r) => {
                self.warn(format!(
                    "device {id}: no orphaned tree holds its {n} mappings; the older one an orphaned top-level node names (block {r}) is kept"
                ));
                Some(r)
            }
            None => {
                self.warn(format!(
                    "device {id}: its mapping tree ({n} mappings) is lost; device dropped"
                ));
                None
            }
        }
    }

    /// Device id -> mapping-tree root, from the superblock's top level and
    /// whatever fills its gaps (those ids are given apart).
    fn top_level(
        &mut self,
        details: &BTreeMap<u64, DeviceDetails>,
    ) -> (BTreeMap<u64, u64>, BTreeSet<u64>) {
        let hint = self.sb.fields().map(|s| s.data_mapping_root);
        let nr_blocks = self.survey.r.nr_blocks();
        let plausible = |k: u64, v: u64| k <= MAX_DEVICE_ID && v < nr_blocks && v != 0;
        let mut top = BTreeMap::new();
        let mut bad = 0;
        let gaps = match hint {
            Some(root) => salvage_entries(self.survey.r, root, 8, KeyRange::ALL, &mut |k, v| {
                let v = le64(v, 0);
                if plausible(k, v) {
                    top.insert(k, v);
                } else {
                    bad += 1;
                }
            }),
            None => vec![KeyRange::ALL],
        };
        let gaps = if bad > 0 && !matches!(self.sb, SuperblockState::Valid(_)) {
            // A damaged superblock pointing at something else.
            top.clear();
            vec![KeyRange::ALL]
        } else {
            if bad > 0 {
                self.warn(format!(
                    "top level: {bad} entries that are not devices dropped"
                ));
            }
            gaps
        };
        let mut searched = BTreeSet::new();
        for gap in gaps {
            let survey = &mut self.survey;
            let entries = Self::search_in(&mut self.search, self.dev.as_ref(), self.sb, survey.r)
                .fill_top_gap(survey, gap, details);
            let n = entries.len();
            for (k, v) in entries {
                if plausible(k, v) && !top.contains_key(&k) {
                    top.insert(k, v);
                    searched.insert(k);
                }
            }
            self.warn(format!(
                "top level of the mapping tree: devices {} lost; {n} found in orphaned nodes",
                show(gap)
            ));
        }
        (top, searched)
    }

    fn details(&mut self) -> BTreeMap<u64, DeviceDetails> {
        let hint = self.sb.fields().map(|s| s.device_details_root);
        let mut details = BTreeMap::new();
        let gaps = match hint {
            Some(root) => salvage_entries(self.survey.r, root, 24, KeyRange::ALL, &mut |k, v| {
                details.insert(k, DeviceDetails::unpack(v));
            }),
            None => vec![KeyRange::ALL],
        };
        for gap in gaps {
            let r = self.survey.r;
            let entries = Self::search_in(&mut self.search, self.dev.as_ref(), self.sb, r)
                .fill_details_gap(r, gap);
            let n = entries.len();
            for (k, d) in entries {
                details.entry(k).or_insert(d);
            }
            self.warn(format!(
                "device details: devices {} lost; {n} found in orphaned nodes",
                show(gap)
            ));
        }
        let bad = details.split_off(&(MAX_DEVICE_ID + 1));
        if !bad.is_empty() {
            self.warn(format!(
                "device details: {} entries with ids past 2^24 dropped",
                bad.len()
            ));
        }
        details
    }

    /// The whole sub-trees of a device's mapping tree, gaps filled.
    fn mapping_tree(&mut self, id: u64, root: u64) -> Vec<u64> {
        let mut pieces = Vec::new();
        self.survey.expand(root, KeyRange::ALL, &mut pieces);
        let mut subtrees = Vec::new();
        for p in pieces {
            match p {
                Piece::Whole { loc, .. } => subtrees.push(loc),
                Piece::Gap(gap) => {
                    let survey = &mut self.survey;
                    let search =
                        Self::search_in(&mut self.search, self.dev.as_ref(), self.sb, survey.r);
                    let fill = search.fill_mapping_gap(survey, gap);
                    let mut n = 0;
                    for f in &fill {
                        if let Piece::Whole { loc, .. } = *f {
                            search.note_used(loc);
                            n += survey.summary(loc).map_or(0, |s| s.mappings);
                            subtrees.push(loc);
                        }
                    }
                    self.warn(format!(
                        "device {id}: mapping-tree nodes for blocks {} lost; {n} mappings found in orphaned nodes",
                        show(gap)
                    ));
                }
            }
        }
        subtrees
    }

    fn search_in<'a>(
        search: &'a mut Option<Search>,
        dev: &dyn BlockDevice,
        sb: &SuperblockState,
        r: &Reader,
    ) -> &'a mut Search {
        search.get_or_insert_with(|| new_search(dev, sb, r))
    }

    /// Pool fields, counts and details: the plan.
    fn finish(&mut self, found: BTreeMap<u64, Found>, opts: &RepairOptions) -> Result<Plan> {
        if found.is_empty() && matches!(self.sb, SuperblockState::Lost(_)) {
            return Err(ThinError::Invalid(
                "no thin-pool metadata found: neither a superblock nor any device".into(),
            ));
        }
        let mut seen = Observed::default();
        for f in found.values() {
            for &t in &f.subtrees {
                if let Some(s) = self.survey.summary(t) {
                    if s.mappings > 0 {
                        seen.max_block = seen.max_block.max(Some(s.max_block));
                    }
                    seen.max_time = seen.max_time.max(s.max_time);
                }
            }
            if let Some(d) = f.details {
                seen.max_time = seen.max_time.max(d.creation_time.max(d.snapshotted_time));
                seen.max_details_transaction =
                    seen.max_details_transaction.max(Some(d.transaction_id));
            }
        }
        let copies = if matches!(self.sb, SuperblockState::Valid(_)) {
            Vec::new()
        } else {
            let mut c: Vec<Superblock> = self
                .search()
                .scan
                .copies
                .iter()
                .map(|(_, s)| s.clone())
                .collect();
            c.sort_by_key(|s| std::cmp::Reverse(s.transaction_id));
            c
        };
        let mut warnings = Vec::new();
        let pool = pool::pool_info(self.sb, &copies, opts, &seen, &mut |w| warnings.push(w))?;
        self.warnings.extend(warnings);
        let limit = pool.nr_data_blocks;
        let mut devices = Vec::new();
        let mut past_end = 0;
        for (id, f) in found {
            let mut count = 0;
            for &t in &f.subtrees {
                let all = self.survey.summary(t).map_or(0, |s| s.mappings);
                let kept = self.survey.mappings_below(t, limit)?;
                past_end += all.saturating_sub(kept);
                count += kept;
            }
            let details = match f.details {
                Some(d) => {
                    if d.mapped_blocks != count {
                        self.warn(format!(
                            "device {id}: {count} mappings recovered, its details said {}",
                            d.mapped_blocks
                        ));
                    }
                    DeviceDetails {
                        mapped_blocks: count,
                        ..d
                    }
                }
                None => {
                    self.warn(format!(
                        "device {id}: details lost; rebuilt with {count} mappings, transaction {} and time {}",
                        pool.transaction_id, pool.time
                    ));
                    DeviceDetails {
                        mapped_blocks: count,
                        transaction_id: pool.transaction_id,
                        creation_time: pool.time,
                        snapshotted_time: pool.time,
                    }
                }
            };
            devices.push(PlannedDevice {
                id,
                details,
                subtrees: f.subtrees,
            });
        }
        if past_end > 0 {
            self.warn(format!(
                "{past_end} mappings to data blocks past the end of the pool ({limit} blocks) dropped"
            ));
        }
        Ok(Plan { pool, devices })
    }
}

fn new_search(dev: &dyn BlockDevice, sb: &SuperblockState, r: &Reader) -> Search {
    let scan = scan::scan(dev);
    let mut roots = Vec::new();
    if let Some(s) = sb.fields() {
        roots.push((s.data_mapping_root, true));
        roots.push((s.device_details_root, true));
    }
    for (loc, c) in &scan.copies {
        let live = r.sm_count(*loc).is_none_or(|n| n > 0);
        roots.push((c.data_mapping_root, live));
        roots.push((c.device_details_root, live));
    }
    Search::new(scan, r, &roots)
}

fn show(r: KeyRange) -> String {
    if r == KeyRange::ALL {
        "(all)".into()
    } else {
        format!("{}..={}", r.lo, r.hi)
    }
}
