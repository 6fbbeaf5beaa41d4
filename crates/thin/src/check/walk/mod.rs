//! The walk: B-trees level by level (all nodes of a level read in block
//! order, see `pipeline`), each node validated once and counted once per
//! reference. Shared nodes are visited once; their other references are
//! checked against a summary of the node at the end.

mod results;

use super::counts::RefCounts;
use super::node::{key, verify_node, Head};
use super::pipeline::{self, Buffers};
use super::report::{CheckReport, Section};
use crate::format::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use crate::progress::ProgressHook;
use pdata::block_manager::{le32, le64};
use pdata::io::BlockDevice;
use pdata::space_map::format::{IndexEntry, INDEX_ENTRY_SIZE};
use pdata::Block;
use rustc_hash::FxHashMap;

/// Deeper than any B-tree of a metadata device can be.
const MAX_DEPTH: usize = 64;

/// The trees of thin metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    Details,
    /// Top level of the mapping tree: device -> root of its mappings.
    Top,
    /// A device's mappings: virtual block -> block_time.
    Bottom,
    /// Data space map index: bitmap number -> index entry.
    DataIndex,
    DataOverflow,
    MetaOverflow,
}

impl Tree {
    fn leaf_value_size(self) -> usize {
        match self {
            Tree::Details => DEVICE_DETAILS_SIZE,
            Tree::Top | Tree::Bottom => 8,
            Tree::DataIndex => INDEX_ENTRY_SIZE,
            Tree::DataOverflow | Tree::MetaOverflow => 4,
        }
    }

    pub fn section(self) -> Section {
        match self {
            Tree::Details => Section::Devices,
            Tree::Top | Tree::Bottom => Section::Mappings,
            _ => Section::SpaceMaps,
        }
    }
}

/// A reference to a node: which tree it belongs to and the key range its
/// parent gives it.
#[derive(Debug, Clone, Copy)]
pub struct Ref {
    pub loc: u64,
    pub lo: u64,
    /// Exclusive upper bound.
    pub hi: Option<u64>,
    /// Bottom trees: the device.
    pub dev: u64,
    pub tree: Tree,
    /// In the metadata snapshot's trees.
    pub snap: bool,
    pub root: bool,
}

impl Ref {
    pub fn root(loc: u64, tree: Tree, snap: bool) -> Ref {
        Ref {
            loc,
            lo: 0,
            hi: None,
            dev: 0,
            tree,
            snap,
            root: true,
        }
    }

    /// Names the tree, for messages.
    pub fn context(&self) -> String {
        let snap = if self.snap { "metadata snapshot: " } else { "" };
        match self.tree {
            Tree::Details => format!("{snap}devices tree"),
            Tree::Top => format!("{snap}top level of the mapping tree"),
            Tree::Bottom => format!("{snap}mapping tree of device {}", self.dev),
            Tree::DataIndex => "data space map index".into(),
            Tree::DataOverflow => "data space map overflow tree".into(),
            Tree::MetaOverflow => "metadata space map overflow tree".into(),
        }
    }
}

/// What was found at a node, for its other references.
#[derive(Debug, Clone, Copy)]
struct Summary {
    loc: u32,
    nr: u16,
    max: u16,
    tree: Tree,
    leaf: bool,
    first: u64,
    last: u64,
}

/// Metadata blocks that are not B-tree nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    Superblock,
    SnapSuperblock,
    MetaIndex,
    MetaBitmap(u64),
    DataBitmap(u64),
}

impl std::fmt::Display for Other {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Other::Superblock => write!(f, "the superblock"),
            Other::SnapSuperblock => write!(f, "the metadata snapshot's superblock"),
            Other::MetaIndex => write!(f, "the metadata space map index"),
            Other::MetaBitmap(i) => write!(f, "metadata space map bitmap {i}"),
            Other::DataBitmap(i) => write!(f, "data space map bitmap {i}"),
        }
    }
}

/// An entry of the data space map index, and where it is stored.
#[derive(Debug, Clone, Copy)]
pub struct IndexSlot {
    pub key: u64,
    pub entry: IndexEntry,
    pub leaf: u64,
    pub slot: usize,
}

pub struct Walker<'a> {
    pub dev: &'a dyn BlockDevice,
    /// Told of every block read.
    pub progress: &'a dyn ProgressHook,
    /// Batch buffers, reused by every read of the check.
    pub buffers: Buffers,
    /// Expected metadata counts; its length bounds every metadata reference.
    pub meta: RefCounts,
    /// Expected data counts: empty when the data device is too large to
    /// be real (reported), else one per data block.
    pub data: RefCounts,
    /// Size of the data device.
    pub nr_data: u64,
    /// Follow the top level into the devices' mapping trees.
    pub follow_bottom: bool,
    /// Compare overflow entries with the counts found (not when damaged
    /// trees left the counts short).
    pub compare_counts: bool,
    summaries: Vec<Summary>,
    sorted: bool,
    /// Children of internal nodes of the mapping and devices trees: loc ->
    /// range of `child_locs`.
    children: FxHashMap<u32, (u32, u32)>,
    child_locs: Vec<u64>,
    /// References to nodes already referenced.
    repeats: Vec<Ref>,
    pub others: FxHashMap<u64, Other>,
    /// Entries of the leaves of the top level, (device, mapping root), and
    /// of the devices tree, by leaf (the live pool and the metadata snapshot
    /// share leaves).
    top_leaves: FxHashMap<u64, Vec<(u64, u64)>>,
    detail_leaves: FxHashMap<u64, Vec<(u64, DeviceDetails)>>,
    pub data_index: Vec<IndexSlot>,
    pub meta_overflow: Vec<(u64, u32)>,
    pub report: CheckReport,
}

impl<'a> Walker<'a> {
    pub fn new(
        dev: &'a dyn BlockDevice,
        meta: RefCounts,
        data: RefCounts,
        nr_data: u64,
        progress: &'a dyn ProgressHook,
    ) -> Self {
        Walker {
            dev,
            progress,
            buffers: Buffers::default(),
            meta,
            data,
            nr_data,
            follow_bottom: true,
            compare_counts: true,
            summaries: Vec::new(),
            sorted: true,
            children: FxHashMap::default(),
            child_locs: Vec::new(),
            repeats: Vec::new(),
            others: FxHashMap::default(),
            top_leaves: FxHashMap::default(),
            detail_leaves: FxHashMap::default(),
            data_index: Vec::new(),
            meta_overflow: Vec::new(),
            report: CheckReport::default(),
        }
    }

    /// Counts a reference to a block that is not a node; true on the first.
    pub fn reference_other(&mut self, loc: u64, what: Other, section: Section) -> bool {
        if loc >= self.meta.len() {
            self.report.fatal(
                section,
                format!(
                    "{what} is at block {loc}, beyond the metadata space map ({} blocks)",
                    self.meta.len()
                ),
            );
            return false;
        }
        if self.meta.inc(loc) != 0 {
            self.report.fatal(
                section,
                format!("{what} is at block {loc}, which is also used for something else"),
            );
            return false;
        }
        self.others.insert(loc, what);
        true
    }

    fn reference_node(&mut self, r: Ref, next: &mut Vec<Ref>) {
        if r.loc >= self.meta.len() {
            self.report.fatal(
                r.tree.section(),
                format!(
                    "{}: points at block {}, beyond the metadata space map ({} blocks)",
                    r.context(),
                    r.loc,
                    self.meta.len()
                ),
            );
            return;
        }
        if self.meta.inc(r.loc) == 0 {
            next.push(r);
        } else {
            self.repeats.push(r);
        }
    }

    /// Walks the trees below `roots`, level by level.
    pub fn walk(&mut self, roots: &[Ref]) {
        let mut frontier = Vec::new();
        for &r in roots {
            self.reference_node(r, &mut frontier);
        }
        let (dev, progress) = (self.dev, self.progress);
        while !frontier.is_empty() {
            frontier.sort_unstable_by_key(|r| r.loc);
            let mut next = Vec::new();
            let mut buffers = std::mem::take(&mut self.buffers);
            pipeline::run(
                dev,
                progress,
                &frontier,
                &mut buffers,
                |r| r.loc,
                |r, b| match b {
                    Some(b) => verify_node(r.loc, b, r.tree.leaf_value_size()),
                    None => Err(format!("node {} cannot be read", r.loc)),
                },
                |r, b, v| self.visit(r, b, v, &mut next),
            );
            self.buffers = buffers;
            frontier = next;
        }
    }

    fn visit(
        &mut self,
        r: &Ref,
        b: Option<&Block>,
        verdict: Result<Head, String>,
        next: &mut Vec<Ref>,
    ) {
        let (b, head) = match (b, verdict) {
            (Some(b), Ok(head)) => (b, head),
            (_, Err(e)) => {
                self.report
                    .fatal(r.tree.section(), format!("{}: {e}", r.context()));
                return;
            }
            (None, Ok(_)) => return,
        };
        let nr = head.nr;
        let s = Summary {
            loc: r.loc as u32,
            nr: nr as u16,
            max: head.max as u16,
            tree: r.tree,
            leaf: head.leaf,
            first: if nr > 0 { key(b, 0) } else { 0 },
            last: if nr > 0 { key(b, nr - 1) } else { 0 },
        };
        self.check_ref(r, &s);
        if self.summaries.last().is_some_and(|p| p.loc > s.loc) {
            self.sorted = false;
        }
        self.summaries.push(s);
        let values = &b[head.value_offset(0)..head.value_offset(nr)];
        let keep_children = matches!(r.tree, Tree::Bottom | Tree::Top | Tree::Details);
        if !head.leaf {
            let start = self.child_locs.len() as u32;
            for (i, v) in values.chunks_exact(8).enumerate() {
                let child = le64(v, 0);
                let hi = if i + 1 < nr {
                    Some(key(b, i + 1))
                } else {
                    r.hi
                };
                let c = Ref {
                    loc: child,
                    lo: key(b, i),
                    hi,
                    root: false,
                    ..*r
                };
                self.reference_node(c, next);
                if keep_children {
                    self.child_locs.push(child);
                }
            }
            if keep_children {
                self.children.insert(r.loc as u32, (start, nr as u32));
            }
            return;
        }
        match r.tree {
            Tree::Bottom => self.bottom_leaf(r, b, values),
            Tree::Top => {
                let mut entries = Vec::with_capacity(nr);
                for (i, v) in values.chunks_exact(8).enumerate() {
                    let (dev, root) = (key(b, i), le64(v, 0));
                    entries.push((dev, root));
                    if self.follow_bottom {
                        let sub = Ref {
                            dev,
                            ..Ref::root(root, Tree::Bottom, r.snap)
                        };
                        self.reference_node(sub, next);
                    }
                }
                self.top_leaves.insert(r.loc, entries);
            }
            Tree::Details => {
                let entries = values
                    .chunks_exact(DEVICE_DETAILS_SIZE)
                    .enumerate()
                    .map(|(i, v)| (key(b, i), DeviceDetails::unpack(v)))
                    .collect();
                self.detail_leaves.insert(r.loc, entries);
            }
            Tree::DataIndex => {
                for (i, v) in values.chunks_exact(INDEX_ENTRY_SIZE).enumerate() {
                    self.data_index.push(IndexSlot {
                        key: key(b, i),
                        entry: IndexEntry::unpack(v),
                        leaf: r.loc,
                        slot: i,
                    });
                }
            }
            Tree::DataOverflow => {
                for (i, v) in values.chunks_exact(4).enumerate() {
                    self.data_overflow_entry(key(b, i), le32(v, 0));
                }
            }
            Tree::MetaOverflow => {
                for (i, v) in values.chunks_exact(4).enumerate() {
                    self.meta_overflow.push((key(b, i), le32(v, 0)));
                }
            }
        }
    }

    /// Counts the data blocks of a mapping leaf.
    fn bottom_leaf(&mut self, r: &Ref, b: &Block, values: &[u8]) {
        let (nr_data, counted) = (self.nr_data, self.data.len());
        for (i, v) in values.chunks_exact(8).enumerate() {
            let block = le64(v, 0) >> crate::format::block_time::TIME_BITS;
            if block < counted {
                self.data.inc(block);
            } else if block >= nr_data {
                self.report.fatal(
                    Section::Mappings,
                    format!(
                        "{}: block {} maps to data block {block}, beyond the data device ({nr_data} blocks)",
                        r.context(),
                        key(b, i)
                    ),
                );
            }
        }
    }

    /// Compares an entry of the data overflow tree with the count found
    /// (every mapping has been counted by now).
    fn data_overflow_entry(&mut self, block: u64, count: u32) {
        if block >= self.nr_data {
            self.report.fatal(
                Section::SpaceMaps,
                format!(
                    "data space map overflow tree: entry for data block {block}, beyond the data device ({} blocks)",
                    self.nr_data
                ),
            );
            return;
        }
        if block >= self.data.len() || !self.compare_counts {
            return;
        }
        overflow_entry(&mut self.data, &mut self.report, "data", block, count);
    }

    /// The checks of a reference that depend on where it comes from.
    fn check_ref(&mut self, r: &Ref, s: &Summary) {
        let section = r.tree.section();
        if !r.root && s.nr < s.max / 3 {
            self.report.fatal(
                section,
                format!(
                    "{}: node {} has {} entries, fewer than a third of its {}",
                    r.context(),
                    r.loc,
                    s.nr,
                    s.max
                ),
            );
        }
        if s.nr == 0 {
            return;
        }
        if s.first < r.lo {
            self.report.fatal(
                section,
                format!(
                    "{}: node {} starts at key {}, below its parent's key {}",
                    r.context(),
                    r.loc,
                    s.first,
                    r.lo
                ),
            );
        }
        if let Some(hi) = r.hi.filter(|&hi| s.last >= hi) {
            self.report.fatal(
                section,
                format!(
                    "{}: node {} holds key {}, not below its parent's next key {hi}",
                    r.context(),
                    r.loc,
                    s.last
                ),
            );
        }
    }
}

/// Compares an overflow-tree entry with the count found, and marks it seen.
pub fn overflow_entry(
    counts: &mut RefCounts,
    report: &mut CheckReport,
    kind: &str,
    block: u64,
    count: u32,
) {
    match counts.get(block) {
        Some(found) if found == count && count >= 3 => counts.mark_overflow(block),
        Some(found) => {
            report.fatal(
                Section::SpaceMaps,
                format!(
                    "{kind} block {block}: the space map's overflow tree says {count} references, found {found}"
                ),
            );
            if found >= 3 {
                counts.mark_overflow(block);
            }
        }
        None => report.fatal(
            Section::SpaceMaps,
            format!("{kind} block {block} appears twice in the space map's overflow tree"),
        ),
    }
}
