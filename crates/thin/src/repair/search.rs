//! What lost nodes left behind. A node is *lost-parented* ("orphan") when
//! fewer valid nodes point at it than used to: with the metadata space map,
//! its count is above the references found from allocated valid nodes
//! (freed garbage has count 0 and never qualifies); without it, nothing
//! valid points at it at all. Orphans fill the key ranges whose nodes are
//! lost, newest first, never two for one key.

use super::reader::Reader;
use super::scan::{Kind, ScanIndex};
use super::survey::{salvage_entries, KeyRange, Piece, Survey};
use crate::format::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use pdata::block_manager::le64;
use pdata::btree::node::Node;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Reverse;
use std::collections::BTreeMap;

/// A node that lost references.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Orphan {
    pub loc: u64,
    /// How many, when the space map tells.
    pub lost_refs: Option<u32>,
}

/// A whole mapping sub-tree that may fill a gap.
#[derive(Debug, Clone, Copy)]
struct CandidatePiece {
    loc: u64,
    keys: KeyRange,
    mappings: u64,
    max_time: u32,
}

/// An orphaned node of the top level or of the details tree, with the
/// entries that read below it.
#[derive(Debug, Clone)]
pub(crate) struct CandidateEntries {
    pub loc: u64,
    keys: KeyRange,
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Larger is preferred.
    score: [u64; 4],
}

pub(crate) struct Search {
    pub scan: ScanIndex,
    orphans: FxHashMap<Kind, Vec<Orphan>>,
    pieces: Option<Vec<CandidatePiece>>,
    top: Option<Vec<CandidateEntries>>,
    details: Option<Vec<CandidateEntries>>,
    /// Orphans already given to a device, with the uses left (None:
    /// unlimited, when the space map does not tell).
    uses_left: FxHashMap<u64, Option<u32>>,
}

impl Search {
    /// `roots`: blocks the superblock (and its copies) point at, as
    /// (block, whether the pointer is live).
    pub fn new(scan: ScanIndex, r: &Reader, roots: &[(u64, bool)]) -> Self {
        let orphans = find_orphans(&scan, r, roots);
        Search {
            scan,
            orphans,
            pieces: None,
            top: None,
            details: None,
            uses_left: FxHashMap::default(),
        }
    }

    fn orphans(&self, kind: Kind) -> &[Orphan] {
        self.orphans.get(&kind).map_or(&[], |v| v.as_slice())
    }

    /// Whole mapping sub-trees for the keys `gap` of a device, in key order.
    pub fn fill_mapping_gap(&mut self, survey: &mut Survey<'_>, gap: KeyRange) -> Vec<Piece> {
        if self.pieces.is_none() {
            self.pieces = Some(self.mapping_pieces(survey));
        }
        let cands = self.pieces.as_deref().unwrap_or(&[]);
        let mut taken: Vec<CandidatePiece> = Vec::new();
        for c in cands {
            if gap.contains(&c.keys) && !taken.iter().any(|t| t.keys.overlaps(&c.keys)) {
                taken.push(*c);
            }
        }
        taken.sort_by_key(|c| c.keys.lo);
        taken
            .iter()
            .map(|c| Piece::Whole {
                loc: c.loc,
                keys: c.keys,
            })
            .collect()
    }

    /// The whole parts of every orphaned mapping node, best first.
    fn mapping_pieces(&self, survey: &mut Survey<'_>) -> Vec<CandidatePiece> {
        let mut out = Vec::new();
        let mut pieces = Vec::new();
        for o in self.orphans(Kind::Bottom) {
            pieces.clear();
            survey.expand(o.loc, KeyRange::ALL, &mut pieces);
            for p in &pieces {
                if let Piece::Whole { loc, keys } = *p {
                    if let Some(s) = survey.summary(loc) {
                        out.push(CandidatePiece {
                            loc,
                            keys,
                            mappings: s.mappings,
                            max_time: s.max_time,
                        });
                    }
                }
            }
        }
        out.sort_by_key(|c| (Reverse(c.max_time), Reverse(c.mappings), Reverse(c.loc)));
        out
    }

    /// Top-level entries (device id -> mapping-tree root) for `gap`;
    /// `details` (what survives of the details tree) ranks the candidates.
    pub fn fill_top_gap(
        &mut self,
        survey: &mut Survey<'_>,
        gap: KeyRange,
        details: &BTreeMap<u64, DeviceDetails>,
    ) -> Vec<(u64, u64)> {
        if self.top.is_none() {
            let mut c = self.entry_candidates(survey.r, Kind::Top, 8);
            for e in &mut c {
                e.score = top_score(survey, &e.entries, details);
            }
            c.sort_by_key(|e| (Reverse(e.score), Reverse(e.loc)));
            self.top = Some(c);
        }
        fill_entries(self.top.as_deref().unwrap_or(&[]), gap)
            .map(|(k, v)| (k, le64(v, 0)))
            .collect()
    }

    /// Details-tree entries for `gap`.
    pub fn fill_details_gap(&mut self, r: &Reader, gap: KeyRange) -> Vec<(u64, DeviceDetails)> {
        if self.details.is_none() {
            let mut c = self.entry_candidates(r, Kind::Details, DEVICE_DETAILS_SIZE);
            for e in &mut c {
                e.score = details_score(&e.entries);
            }
            c.sort_by_key(|e| (Reverse(e.score), Reverse(e.loc)));
            self.details = Some(c);
        }
        fill_entries(self.details.as_deref().unwrap_or(&[]), gap)
            .map(|(k, v)| (k, DeviceDetails::unpack(v)))
            .collect()
    }

    fn entry_candidates(&self, r: &Reader, kind: Kind, value_size: usize) -> Vec<CandidateEntries> {
        let mut out = Vec::new();
        for o in self.orphans(kind) {
            let mut entries = Vec::new();
            salvage_entries(r, o.loc, value_size, KeyRange::ALL, &mut |k, v| {
                entries.push((k, v.to_vec()))
            });
            if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                let keys = KeyRange {
                    lo: first.0,
                    hi: last.0,
                };
                out.push(CandidateEntries {
                    loc: o.loc,
                    keys,
                    entries,
                    score: [0; 4],
                });
            }
        }
        out
    }

    /// Orphaned mapping trees for devices whose top-level entry is lost:
    /// `wanted` is (device, mappings its details count). A tree is given
    /// to a device only when nothing else could be its: the one orphan with
    /// exactly that many mappings, or, among several, the one sharing most
    /// with what an older top-level node (a stale copy, a metadata
    /// snapshot) names for that device. An orphan serves as many devices as
    /// references it lost (snapshots share trees). Never a guess between
    /// devices: their data would be mixed.
    pub fn match_roots(
        &mut self,
        survey: &mut Survey<'_>,
        wanted: &[(u64, DeviceDetails)],
    ) -> BTreeMap<u64, RootMatch> {
        let mut by_count: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for o in self.orphans(Kind::Bottom) {
            if !self.can_use(o.loc) {
                continue;
            }
            if let Some(s) = survey.summary(o.loc) {
                by_count.entry(s.mappings).or_default().push(o.loc);
            }
        }
        let mut groups: BTreeMap<u64, Vec<(u64, DeviceDetails)>> = BTreeMap::new();
        for &(id, d) in wanted {
            groups.entry(d.mapped_blocks).or_default().push((id, d));
        }
        let mut out = BTreeMap::new();
        let mut history: Option<BTreeMap<u64, Vec<u64>>> = None;
        for (count, devices) in groups {
            let cands = by_count.get(&count).cloned().unwrap_or_default();
            if let [one] = cands.as_slice() {
                // Devices sharing one tree: as many as references it lost;
                // without the space map, a snapshot and its origin (one
                // snapshot time).
                let shared = match self.lost_refs(*one) {
                    Some(n) => n as usize >= devices.len(),
                    None => devices
                        .iter()
                        .all(|(_, d)| d.snapshotted_time == devices[0].1.snapshotted_time),
                };
                for &(id, _) in &devices {
                    let m = if shared {
                        self.take(*one);
                        RootMatch::Unique(*one)
                    } else {
                        RootMatch::Ambiguous(cands.clone())
                    };
                    out.insert(id, m);
                }
                continue;
            }
            for (id, _) in devices {
                let free: Vec<u64> = cands.iter().copied().filter(|&c| self.can_use(c)).collect();
                let m = if free.is_empty() {
                    if cands.is_empty() {
                        RootMatch::None
                    } else {
                        RootMatch::Ambiguous(cands.clone())
                    }
                } else {
                    let old = history.get_or_insert_with(|| self.older_top_entries(survey.r));
                    let olds = old.get(&id).map(|v| v.as_slice()).unwrap_or(&[]);
                    let mut scored: Vec<(u64, u64)> = free
                        .iter()
                        .map(|&c| {
                            let best = olds
                                .iter()
                                .map(|&o| shared_entries(survey.r, c, o))
                                .max()
                                .unwrap_or(0);
                            (best, c)
                        })
                        .collect();
                    scored.sort_unstable_by_key(|&(n, _)| Reverse(n));
                    match scored.as_slice() {
                        [(a, c)] if *a > 0 => RootMatch::ByHistory(*c),
                        [(a, c), (b, _), ..] if *a > 0 && a > b => RootMatch::ByHistory(*c),
                        _ => RootMatch::Ambiguous(free),
                    }
                };
                if let RootMatch::ByHistory(c) = m {
                    self.take(c);
                }
                out.insert(id, m);
            }
        }
        out
    }

    fn lost_refs(&self, loc: u64) -> Option<u32> {
        self.orphans(Kind::Bottom)
            .iter()
            .find(|o| o.loc == loc)
            .and_then(|o| o.lost_refs)
    }

    fn can_use(&self, loc: u64) -> bool {
        self.uses_left.get(&loc) != Some(&Some(0))
    }

    fn take(&mut self, loc: u64) {
        let lost = self.lost_refs(loc);
        if let Some(n) = self.uses_left.entry(loc).or_insert(lost) {
            *n = n.saturating_sub(1);
        }
    }

    /// Device -> the mapping-tree roots every valid top-level leaf names
    /// for it (stale ones included: their trees share nodes with the
    /// current ones).
    fn older_top_entries(&self, r: &Reader) -> BTreeMap<u64, Vec<u64>> {
        let mut out: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for n in self.scan.of_kind(Kind::Top).filter(|n| n.leaf) {
            salvage_entries(r, n.loc, 8, KeyRange::ALL, &mut |k, v| {
                out.entry(k).or_default().push(le64(v, 0))
            });
        }
        out
    }

    /// Marks an orphan as used by a device's gap, so root matching leaves it.
    pub fn note_used(&mut self, loc: u64) {
        self.uses_left.insert(loc, Some(0));
    }
}

/// Which orphaned tree a device gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootMatch {
    /// The only orphan with the device's number of mappings.
    Unique(u64),
    /// Several have it; this one shares most with the device's older tree.
    ByHistory(u64),
    /// Several have it and nothing tells them apart.
    Ambiguous(Vec<u64>),
    None,
}

/// Entries two nodes have in common: child pointers of internal nodes,
/// (key, value) pairs of leaves.
fn shared_entries(r: &Reader, a: u64, b: u64) -> u64 {
    if a == b {
        return u64::MAX;
    }
    let entries = |loc: u64| -> Option<(bool, FxHashSet<(u64, u64)>)> {
        let blk = r.node(loc, 8)?;
        let n = Node(&blk);
        let leaf = n.is_leaf();
        let key = |i: usize| if leaf { n.key(i) } else { 0 };
        Some((
            leaf,
            (0..n.nr_entries())
                .map(|i| (key(i), n.value_u64(i)))
                .collect(),
        ))
    };
    match (entries(a), entries(b)) {
        (Some((la, ea)), Some((lb, eb))) if la == lb => ea.intersection(&eb).count() as u64,
        _ => 0,
    }
}

fn fill_entries(cands: &[CandidateEntries], gap: KeyRange) -> impl Iterator<Item = (u64, &[u8])> {
    let mut taken: Vec<&CandidateEntries> = Vec::new();
    for c in cands {
        if gap.contains(&c.keys) && !taken.iter().any(|t| t.keys.overlaps(&c.keys)) {
            taken.push(c);
        }
    }
    taken.sort_by_key(|c| c.keys.lo);
    taken
        .into_iter()
        .flat_map(|c| c.entries.iter().map(|(k, v)| (*k, v.as_slice())))
}

/// The most devices whose mapping count agrees with their details (the
/// same transaction), then the newest sub-trees, then the most devices
/// that read, then mappings.
fn top_score(
    survey: &mut Survey<'_>,
    entries: &[(u64, Vec<u8>)],
    details: &BTreeMap<u64, DeviceDetails>,
) -> [u64; 4] {
    let (mut agree, mut age, mut readable, mut mappings) = (0u64, 0u64, 0u64, 0u64);
    for (id, v) in entries {
        if let Some(s) = survey.summary(le64(v, 0)) {
            agree += details
                .get(id)
                .is_some_and(|d| d.mapped_blocks == s.mappings) as u64;
            age = age.max(s.max_time as u64);
            readable += 1;
            mappings += s.mappings;
        }
    }
    [agree, age, readable, mappings]
}

/// Highest transaction first, then the newest times, then devices.
fn details_score(entries: &[(u64, Vec<u8>)]) -> [u64; 4] {
    let (mut tid, mut time) = (0u64, 0u64);
    for (_, v) in entries {
        let d = DeviceDetails::unpack(v);
        tid = tid.max(d.transaction_id);
        time = time.max(d.creation_time.max(d.snapshotted_time) as u64);
    }
    [tid, time, entries.len() as u64, 0]
}

fn find_orphans(
    scan: &ScanIndex,
    r: &Reader,
    roots: &[(u64, bool)],
) -> FxHashMap<Kind, Vec<Orphan>> {
    // (references from any valid node, references from allocated ones)
    let mut refs: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
    let mut add = |b: u64, live: bool| {
        let e = refs.entry(b).or_default();
        e.0 += 1;
        e.1 += live as u32;
    };
    for &(b, live) in roots {
        add(b, live);
    }
    for n in scan.referrers() {
        let live = r.sm_count(n.loc).is_none_or(|c| c > 0);
        for &p in scan.pointers(n) {
            add(p, live);
        }
    }
    let mut out: FxHashMap<Kind, Vec<Orphan>> = FxHashMap::default();
    for kind in [Kind::Top, Kind::Bottom, Kind::Details] {
        let mut v = Vec::new();
        for n in scan.of_kind(kind) {
            let (any, live) = refs.get(&n.loc).copied().unwrap_or_default();
            let lost_refs = match r.sm_count(n.loc) {
                Some(c) if c > live => Some(Some(c - live)),
                Some(_) => None,
                None if any == 0 => Some(None),
                None => None,
            };
            if let Some(lost_refs) = lost_refs {
                v.push(Orphan {
                    loc: n.loc,
                    lost_refs,
                });
            }
        }
        out.insert(kind, v);
    }
    out
}
