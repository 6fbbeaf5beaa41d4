//! A full consistency walk of thin metadata: every reference from the
//! superblock down is followed and counted, every node is validated, and
//! the counts are compared with both space maps.
//!
//! This is the "after every commit" check of the property tests and the
//! engine of the demo's check; it holds everything in memory.

use crate::format::block_time::BlockTime;
use crate::format::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use crate::format::superblock::{Superblock, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR};
use pdata::block_manager::BlockManager;
use pdata::btree::node::{Node, NODE_VALIDATOR};
use pdata::io::BlockDevice;
use pdata::space_map::format::*;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Damage: anything but a leak.
    pub errors: Vec<String>,
    /// Blocks counted in a space map but referenced by nothing (harmless).
    pub leaks: Vec<String>,
    pub devices: BTreeMap<u64, DeviceDetails>,
    pub nr_mappings: u64,
    pub metadata_blocks_in_use: u64,
    pub data_blocks_in_use: u64,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.leaks.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// Top level of the mapping tree: dev -> sub-tree root.
    Top,
    /// A device's mappings: vblock -> block_time.
    Bottom,
    Details,
    /// Data space map index: bitmap number -> index entry.
    DataIndex,
    /// Space-map overflow counts.
    Overflow,
}

impl Tree {
    fn value_size(self) -> usize {
        match self {
            Tree::Top | Tree::Bottom => 8,
            Tree::Details => DEVICE_DETAILS_SIZE,
            Tree::DataIndex => INDEX_ENTRY_SIZE,
            Tree::Overflow => 4,
        }
    }
}

struct Walker<'a> {
    bm: &'a BlockManager,
    nr_meta: u64,
    nr_data: u64,
    meta_refs: Vec<u32>,
    data_refs: FxHashMap<u64, u32>,
    /// Entries under each node already walked (shared sub-trees are walked once).
    entries_below: FxHashMap<u64, u64>,
    errors: Vec<String>,
    /// Values found in the leaves of the tree being collected.
    collected: Vec<(u64, Vec<u8>)>,
    collect: bool,
}

impl Walker<'_> {
    fn error(&mut self, e: impl Into<String>) {
        if self.errors.len() < 1000 {
            self.errors.push(e.into());
        }
    }

    /// Counts one reference to metadata block `b`; true on the first.
    fn reference(&mut self, b: u64, what: &str) -> bool {
        if b >= self.nr_meta {
            self.error(format!(
                "{what} points at block {b}, beyond the metadata device ({} blocks)",
                self.nr_meta
            ));
            return false;
        }
        self.meta_refs[b as usize] += 1;
        self.meta_refs[b as usize] == 1
    }

    /// Walks a tree, counting references; returns the number of entries.
    fn tree(&mut self, root: u64, kind: Tree, what: &str) -> u64 {
        self.node(root, kind, 0, u64::MAX, true, what, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        loc: u64,
        kind: Tree,
        lo: u64,
        hi: u64,
        is_root: bool,
        what: &str,
        depth: usize,
    ) -> u64 {
        if !self.reference(loc, what) {
            return self.entries_below.get(&loc).copied().unwrap_or(0);
        }
        if depth > 32 {
            self.error(format!("{what}: tree deeper than 32 levels at block {loc}"));
            return 0;
        }
        let block = match self.bm.read_lock(loc, &NODE_VALIDATOR) {
            Ok(b) => b,
            Err(e) => {
                self.error(format!("{what}: {e}"));
                return 0;
            }
        };
        let n = Node(&block);
        let (nr, max) = (n.nr_entries(), n.max_entries());
        if max % 3 != 0 {
            self.error(format!(
                "{what}: node {loc} has max_entries {max}, not a multiple of 3"
            ));
        }
        if !is_root && nr < max / 3 {
            self.error(format!(
                "{what}: node {loc} has {nr} entries, under a third of {max}"
            ));
        }
        if let Err(r) = n.check_key_order() {
            self.error(format!("{what}: node {loc}: {r}"));
        }
        if nr > 0 && (n.key(0) < lo || n.key(nr - 1) >= hi) {
            self.error(format!(
                "{what}: node {loc} holds keys {}..={} outside its parent's range {lo}..{hi}",
                n.key(0),
                n.key(nr - 1)
            ));
        }
        let mut total = 0;
        if n.is_internal() {
            let children: Vec<(u64, u64, u64)> = (0..nr)
                .map(|i| {
                    let next = if i + 1 < nr { n.key(i + 1) } else { hi };
                    (n.value_u64(i), n.key(i), next)
                })
                .collect();
            drop(block);
            for (child, klo, khi) in children {
                total += self.node(child, kind, klo, khi, false, what, depth + 1);
            }
        } else {
            if n.value_size() != kind.value_size() {
                self.error(format!(
                    "{what}: leaf {loc} has value size {}, expected {}",
                    n.value_size(),
                    kind.value_size()
                ));
                return 0;
            }
            let entries: Vec<(u64, Vec<u8>)> =
                (0..nr).map(|i| (n.key(i), n.value(i).to_vec())).collect();
            drop(block);
            total = entries.len() as u64;
            for (k, v) in entries {
                self.leaf_value(kind, k, &v, what);
            }
        }
        self.entries_below.insert(loc, total);
        total
    }

    fn leaf_value(&mut self, kind: Tree, key: u64, v: &[u8], what: &str) {
        match kind {
            Tree::Bottom => {
                let bt = BlockTime::from_bytes(v);
                if bt.block >= self.nr_data {
                    self.error(format!(
                        "{what}: block {key} maps to data block {} beyond the pool ({} blocks)",
                        bt.block, self.nr_data
                    ));
                }
                *self.data_refs.entry(bt.block).or_insert(0) += 1;
            }
            Tree::DataIndex => {
                let ie = IndexEntry::unpack(v);
                self.reference(ie.blocknr, "data space-map index");
            }
            Tree::Top | Tree::Details | Tree::Overflow => {}
        }
        if self.collect {
            self.collected.push((key, v.to_vec()));
        }
    }

    fn collect_tree(&mut self, root: u64, kind: Tree, what: &str) -> Vec<(u64, Vec<u8>)> {
        self.collect = true;
        self.collected.clear();
        self.tree(root, kind, what);
        self.collect = false;
        std::mem::take(&mut self.collected)
    }

    /// The mapping tree: returns mapped-block counts per device.
    fn mappings(&mut self, root: u64, what: &str) -> BTreeMap<u64, u64> {
        let top = self.collect_tree(root, Tree::Top, what);
        let mut counts = BTreeMap::new();
        for (dev, v) in top {
            let sub = u64::from_le_bytes(v[..8].try_into().unwrap_or([0; 8]));
            let n = self.tree(sub, Tree::Bottom, &format!("{what}, device {dev}"));
            counts.insert(dev, n);
        }
        counts
    }
}

/// Reads counts from a space map's bitmaps and overflow tree.
fn read_counts(
    bm: &BlockManager,
    index: &[IndexEntry],
    nr_blocks: u64,
    overflow: &[(u64, Vec<u8>)],
    what: &str,
    errors: &mut Vec<String>,
) -> FxHashMap<u64, u32> {
    let ov: FxHashMap<u64, u32> = overflow
        .iter()
        .map(|(k, v)| (*k, u32::from_le_bytes(v[..4].try_into().unwrap_or([0; 4]))))
        .collect();
    let mut counts = FxHashMap::default();
    for (i, ie) in index.iter().enumerate() {
        let bitmap = match bm.read_lock(ie.blocknr, &BITMAP_VALIDATOR) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("{what}: bitmap {i}: {e}"));
                continue;
            }
        };
        let base = i as u64 * ENTRIES_PER_BITMAP;
        for e in 0..ENTRIES_PER_BITMAP.min(nr_blocks.saturating_sub(base)) {
            let c = bitmap_get(&bitmap, e);
            let b = base + e;
            let c = if c == OVERFLOW_MARK {
                match ov.get(&b) {
                    Some(&c) => c,
                    None => {
                        errors.push(format!(
                            "{what}: block {b} is marked overflowing but has no overflow entry"
                        ));
                        3
                    }
                }
            } else {
                if ov.contains_key(&b) {
                    errors.push(format!(
                        "{what}: block {b} has an overflow entry but a bitmap count of {c}"
                    ));
                }
                c
            };
            if c != 0 {
                counts.insert(b, c);
            }
        }
    }
    counts
}

fn compare(
    what: &str,
    actual: &FxHashMap<u64, u32>,
    expected: impl Iterator<Item = (u64, u32)>,
    expected_of: impl Fn(u64) -> u32,
    report: &mut CheckReport,
) {
    for (b, want) in expected {
        let have = actual.get(&b).copied().unwrap_or(0);
        if want != 0 && have != want {
            report.errors.push(format!(
                "{what}: block {b} has count {have} but {want} references"
            ));
        }
    }
    let mut leaked: Vec<u64> = actual
        .keys()
        .copied()
        .filter(|&b| expected_of(b) == 0)
        .collect();
    leaked.sort_unstable();
    for b in leaked.into_iter().take(1000) {
        report
            .leaks
            .push(format!("{what}: block {b} is counted but unreferenced"));
    }
}

/// Checks the metadata on `dev` (the committed state).
pub fn check(dev: Arc<dyn BlockDevice>) -> pdata::Result<CheckReport> {
    let bm = BlockManager::new(dev, 4096, false);
    let sb = {
        let b = bm.read_lock(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR)?;
        Superblock::unpack(&b)
    };
    let mut report = CheckReport::default();
    let nr_meta = sb.metadata_sm_root.nr_blocks.min(bm.nr_blocks());
    let mut w = Walker {
        bm: &bm,
        nr_meta,
        nr_data: sb.data_sm_root.nr_blocks,
        meta_refs: vec![0; nr_meta as usize],
        data_refs: FxHashMap::default(),
        entries_below: FxHashMap::default(),
        errors: Vec::new(),
        collected: Vec::new(),
        collect: false,
    };
    w.reference(SUPERBLOCK_LOCATION, "superblock");

    // Mapping and details trees, from the superblock and the metadata snapshot.
    let mapped = w.mappings(sb.data_mapping_root, "mapping tree");
    let details = w.collect_tree(sb.device_details_root, Tree::Details, "details tree");
    for (dev, v) in &details {
        report.devices.insert(*dev, DeviceDetails::unpack(v));
    }
    if sb.held_root != 0 && w.reference(sb.held_root, "metadata snapshot") {
        match bm.read_lock(sb.held_root, &SUPERBLOCK_VALIDATOR) {
            Ok(b) => {
                let snap = Superblock::unpack(&b);
                drop(b);
                w.mappings(snap.data_mapping_root, "metadata snapshot mapping tree");
                w.tree(
                    snap.device_details_root,
                    Tree::Details,
                    "metadata snapshot details tree",
                );
            }
            Err(e) => w.error(format!("metadata snapshot: {e}")),
        }
    }
    let detail_ids: Vec<u64> = report.devices.keys().copied().collect();
    let mapped_ids: Vec<u64> = mapped.keys().copied().collect();
    if detail_ids != mapped_ids {
        w.error(format!("devices in the details tree {detail_ids:?} differ from those in the mapping tree {mapped_ids:?}"));
    }
    for (dev, d) in &report.devices {
        if let Some(&n) = mapped.get(dev) {
            if n != d.mapped_blocks {
                w.error(format!(
                    "device {dev}: details say {} mapped blocks, its tree holds {n}",
                    d.mapped_blocks
                ));
            }
        }
    }
    report.nr_mappings = mapped.values().sum();

    // Metadata space map's own blocks.
    let msm = sb.metadata_sm_root;
    let mut meta_index = Vec::new();
    if w.reference(msm.bitmap_root, "metadata space-map index") {
        match bm.read_lock(msm.bitmap_root, &INDEX_VALIDATOR) {
            Ok(b) => meta_index = unpack_metadata_index(&b, nr_bitmaps(msm.nr_blocks)),
            Err(e) => w.error(format!("metadata space map: {e}")),
        }
    }
    for ie in &meta_index {
        w.reference(ie.blocknr, "metadata space-map bitmap");
    }
    let meta_overflow =
        w.collect_tree(msm.ref_count_root, Tree::Overflow, "metadata overflow tree");

    // Data space map.
    let dsm = sb.data_sm_root;
    let data_index: Vec<IndexEntry> = w
        .collect_tree(dsm.bitmap_root, Tree::DataIndex, "data space-map index")
        .iter()
        .map(|(_, v)| IndexEntry::unpack(v))
        .collect();
    if data_index.len() != nr_bitmaps(dsm.nr_blocks) {
        w.error(format!(
            "data space map has {} bitmaps for {} blocks",
            data_index.len(),
            dsm.nr_blocks
        ));
    }
    let data_overflow = w.collect_tree(dsm.ref_count_root, Tree::Overflow, "data overflow tree");

    let mut errors = std::mem::take(&mut w.errors);
    let meta_counts = read_counts(
        &bm,
        &meta_index,
        msm.nr_blocks,
        &meta_overflow,
        "metadata space map",
        &mut errors,
    );
    let data_counts = read_counts(
        &bm,
        &data_index,
        dsm.nr_blocks,
        &data_overflow,
        "data space map",
        &mut errors,
    );
    report.errors = errors;
    let meta_refs = std::mem::take(&mut w.meta_refs);
    let data_refs = std::mem::take(&mut w.data_refs);
    compare(
        "metadata space map",
        &meta_counts,
        meta_refs.iter().enumerate().map(|(b, &c)| (b as u64, c)),
        |b| meta_refs.get(b as usize).copied().unwrap_or(0),
        &mut report,
    );
    compare(
        "data space map",
        &data_counts,
        data_refs.iter().map(|(&b, &c)| (b, c)),
        |b| data_refs.get(&b).copied().unwrap_or(0),
        &mut report,
    );
    report.metadata_blocks_in_use = meta_counts.len() as u64;
    report.data_blocks_in_use = data_counts.len() as u64;
    Ok(report)
}
