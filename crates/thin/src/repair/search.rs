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
use rustc_hash::FxHashMap;
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
    /// Orphans already given to a device, with the uses left.
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

    /// An orphaned mapping tree holding exactly `mappings` mappings, for a
    /// device whose top-level entry is lost. Orphans shared by several
    /// devices (snapshots) serve as many devices as references they lost.
    pub fn find_mapping_root(&mut self, survey: &mut Survey<'_>, mappings: u64) -> Option<u64> {
        let mut best: Option<(u64, bool, u32)> = None;
        for o in self.orphans(Kind::Bottom) {
            let uses = self.uses_left.get(&o.loc).copied();
            if uses == Some(Some(0)) {
                continue;
            }
            let Some(s) = survey.summary(o.loc) else {
                continue;
            };
            if s.mappings != mappings {
                continue;
            }
            // Unused ones first, then the newest.
            let key = (o.loc, uses.is_none(), s.max_time);
            if best.is_none_or(|b| (key.1, key.2) > (b.1, b.2)) {
                best = Some(key);
            }
        }
        let (loc, _, _) = best?;
        let lost = self
            .orphans(Kind::Bottom)
            .iter()
            .find(|o| o.loc == loc)
            .and_then(|o| o.lost_refs);
        let left = self.uses_left.entry(loc).or_insert(lost);
        if let Some(n) = left {
            *n = n.saturating_sub(1);
        }
        Some(loc)
    }

    /// Marks an orphan as used by a device's gap, so root matching leaves it.
    pub fn note_used(&mut self, loc: u64) {
        self.uses_left.insert(loc, Some(0));
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
