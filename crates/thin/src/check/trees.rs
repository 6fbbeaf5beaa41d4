//! Thin's trees as the engine's walker sees them (`pdata::check::walk`):
//! which trees there are, what their leaves hold, and what the check keeps
//! of them: the devices and top-level entries, the data blocks mapped
//! (counted), the space maps' index and overflow entries.

use super::report::Section;
use crate::format::block_time::TIME_BITS;
use crate::format::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use pdata::block_manager::{le32, le64};
use pdata::btree::node::Shape;
use pdata::check::node::key;
use pdata::check::space_map::overflow_entry;
use pdata::check::walk::{self, leaf_values, EngineBlock, TreeKind};
use pdata::check::RefCounts;
use pdata::space_map::format::{IndexEntry, INDEX_ENTRY_SIZE};
use pdata::space_map::spans::LeafSpans;
use pdata::Block;
use rustc_hash::FxHashMap;

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
    pub fn section(self) -> Section {
        match self {
            Tree::Details => Section::Devices,
            Tree::Top | Tree::Bottom => Section::Mappings,
            _ => Section::SpaceMaps,
        }
    }
}

/// Where a reference leads: the tree, and for messages the device (bottom
/// trees) and whether it is in the metadata snapshot's trees.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub tree: Tree,
    pub dev: u64,
    pub snap: bool,
}

impl TreeKind for Kind {
    type Tree = Tree;
    type Section = Section;

    fn tree(&self) -> Tree {
        self.tree
    }

    fn with_tree(self, tree: Tree) -> Self {
        Kind { tree, ..self }
    }

    fn leaf_value_size(&self) -> usize {
        match self.tree {
            Tree::Details => DEVICE_DETAILS_SIZE,
            Tree::Top | Tree::Bottom => 8,
            Tree::DataIndex => INDEX_ENTRY_SIZE,
            Tree::DataOverflow | Tree::MetaOverflow => 4,
        }
    }

    fn section(&self) -> Section {
        self.tree.section()
    }

    fn context(&self) -> String {
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

    fn keep_children(&self) -> bool {
        matches!(self.tree, Tree::Bottom | Tree::Top | Tree::Details)
    }

    fn compact_leaves(&self) -> bool {
        self.tree == Tree::Bottom
    }
}

pub type Ref = walk::Ref<Kind>;
pub type Walker<'a> = walk::Walker<'a, Thin>;

/// A reference to the root of `tree`.
pub fn root(loc: u64, tree: Tree, snap: bool) -> Ref {
    Ref::root(loc, Kind { tree, dev: 0, snap })
}

/// Metadata blocks that are not B-tree nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    Superblock,
    SnapSuperblock,
    SpaceMap(EngineBlock),
}

impl From<EngineBlock> for Other {
    fn from(b: EngineBlock) -> Self {
        Other::SpaceMap(b)
    }
}

impl std::fmt::Display for Other {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Other::Superblock => write!(f, "the superblock"),
            Other::SnapSuperblock => write!(f, "the metadata snapshot's superblock"),
            Other::SpaceMap(b) => write!(f, "{b}"),
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

/// What thin's check keeps of the leaves.
pub struct Thin {
    /// Expected data counts: empty when the data device is too large to
    /// be real (reported), else one per data block, of the window counted
    /// (`RefCounts::window`).
    pub data: RefCounts,
    /// Counting again for a later window: count, report nothing.
    pub recount: bool,
    /// The mapping leaves and data overflow leaves and the data blocks
    /// they refer to, to count again those of each later window.
    pub bottom_leaves: LeafSpans,
    pub overflow_leaves: LeafSpans,
    /// Size of the data device.
    pub nr_data: u64,
    /// Follow the top level into the devices' mapping trees.
    pub follow_bottom: bool,
    /// Compare overflow entries with the counts found (not when damaged
    /// trees left the counts short).
    pub compare_counts: bool,
    /// Entries of the leaves of the top level, (device, mapping root), and
    /// of the devices tree, by leaf (the live pool and the metadata snapshot
    /// share leaves).
    top_leaves: FxHashMap<u64, Vec<(u64, u64)>>,
    detail_leaves: FxHashMap<u64, Vec<(u64, DeviceDetails)>>,
    pub data_index: Vec<IndexSlot>,
    pub meta_overflow: Vec<(u64, u32)>,
}

impl Thin {
    /// `meta_len`: the metadata blocks a leaf may be.
    pub fn new(data: RefCounts, nr_data: u64, meta_len: u64) -> Self {
        // One entry per bitmap, reserved exactly: doubling would hold three
        // times as much at its peak on a large data device.
        let bitmaps = pdata::space_map::format::nr_bitmaps(data.nr_blocks());
        Thin {
            data,
            recount: false,
            bottom_leaves: LeafSpans::new(nr_data, 0..meta_len),
            overflow_leaves: LeafSpans::new(nr_data, 0..meta_len),
            nr_data,
            follow_bottom: true,
            compare_counts: true,
            top_leaves: FxHashMap::default(),
            detail_leaves: FxHashMap::default(),
            data_index: Vec::with_capacity(bitmaps),
            meta_overflow: Vec::new(),
        }
    }
}

impl walk::Client for Thin {
    type Kind = Kind;
    type Other = Other;

    fn leaf(w: &mut Walker<'_>, r: &Ref, b: &Block, shape: &Shape, next: &mut Vec<Ref>) {
        let values = leaf_values(b, shape);
        let nr = shape.nr;
        match r.kind.tree {
            Tree::Bottom => bottom_leaf(w, r, b, values),
            Tree::Top => {
                let mut entries = Vec::with_capacity(nr);
                for (i, v) in values.chunks_exact(8).enumerate() {
                    let (dev, root) = (key(b, i), le64(v, 0));
                    entries.push((dev, root));
                    if w.client.follow_bottom {
                        let sub = Ref::root(
                            root,
                            Kind {
                                tree: Tree::Bottom,
                                dev,
                                snap: r.kind.snap,
                            },
                        );
                        w.reference_node(sub, next);
                    }
                }
                w.client.top_leaves.insert(r.loc, entries);
            }
            Tree::Details => {
                let entries = values
                    .chunks_exact(DEVICE_DETAILS_SIZE)
                    .enumerate()
                    .map(|(i, v)| (key(b, i), DeviceDetails::unpack(v)))
                    .collect();
                w.client.detail_leaves.insert(r.loc, entries);
            }
            Tree::DataIndex => {
                for (i, v) in values.chunks_exact(INDEX_ENTRY_SIZE).enumerate() {
                    w.client.data_index.push(IndexSlot {
                        key: key(b, i),
                        entry: IndexEntry::unpack(v),
                        leaf: r.loc,
                        slot: i,
                    });
                }
            }
            Tree::DataOverflow => {
                let keys: Vec<u64> = (0..nr).map(|i| key(b, i)).collect();
                w.client.overflow_leaves.record_all(r.loc, &keys);
                overflow_leaf(w, b, values);
            }
            Tree::MetaOverflow => {
                for (i, v) in values.chunks_exact(4).enumerate() {
                    w.client.meta_overflow.push((key(b, i), le32(v, 0)));
                }
            }
        }
    }
}

/// Applies the entries of a data overflow leaf.
pub fn overflow_leaf(w: &mut Walker<'_>, b: &Block, values: &[u8]) {
    for (i, v) in values.chunks_exact(4).enumerate() {
        data_overflow_entry(w, key(b, i), le32(v, 0));
    }
}

/// Counts the data blocks of a mapping leaf (those in the window).
pub fn bottom_leaf(w: &mut Walker<'_>, r: &Ref, b: &Block, values: &[u8]) {
    let t = &mut w.client;
    let (nr_data, counted) = (t.nr_data, t.data.nr_blocks());
    // A leaf holds at most (4096 - 32) / 16 entries. The usual leaf, every
    // block on the device, in one go.
    let mut blocks = [0u64; 256];
    let mut highest = 0;
    for (slot, v) in blocks.iter_mut().zip(values.chunks_exact(8)) {
        *slot = le64(v, 0) >> TIME_BITS;
        highest = highest.max(*slot);
    }
    let all = (values.len() / 8).min(blocks.len());
    if all == values.len() / 8 && highest < counted {
        if !t.recount {
            t.bottom_leaves.record_all(r.loc, &blocks[..all]);
        }
        // Only a later window's pass (or a huge pool's first) filters.
        let d = &t.data;
        let n = if d.window_start() == 0 && highest < d.window_end() {
            all
        } else {
            d.keep_window(&mut blocks[..all])
        };
        t.data.inc_all(&blocks[..n]);
        return;
    }
    let mut n = 0;
    for (i, v) in values.chunks_exact(8).enumerate() {
        let block = le64(v, 0) >> TIME_BITS;
        if block < counted && n < blocks.len() {
            blocks[n] = block;
            n += 1;
        } else if block < counted {
            t.data.inc(block);
        } else if block >= nr_data && !t.recount {
            w.problems.fatal(
                Section::Mappings,
                format!(
                    "{}: block {} maps to data block {block}, beyond the data device ({nr_data} blocks)",
                    r.context(),
                    key(b, i)
                ),
            );
        }
    }
    t.data.inc_all(&blocks[..n]);
    if !t.recount {
        let valid = values.chunks_exact(8).map(|v| le64(v, 0) >> TIME_BITS);
        let valid: Vec<u64> = valid.filter(|&b| b < counted).collect();
        t.bottom_leaves.record_all(r.loc, &valid);
    }
}

/// Compares an entry of the data overflow tree with the count found
/// (every mapping has been counted by now).
fn data_overflow_entry(w: &mut Walker<'_>, block: u64, count: u32) {
    let t = &mut w.client;
    if block >= t.nr_data {
        if t.recount {
            return;
        }
        w.problems.fatal(
            Section::SpaceMaps,
            format!(
                "data space map overflow tree: entry for data block {block}, beyond the data device ({} blocks)",
                t.nr_data
            ),
        );
        return;
    }
    if !t.data.in_window(block) || !t.compare_counts {
        return;
    }
    overflow_entry(
        &mut t.data,
        &mut w.problems,
        Section::SpaceMaps,
        "data",
        block,
        count,
    );
}

/// The (device, mapping root) entries of the top level whose root is
/// `root`, in key order. Call after the walk.
pub fn top_entries(w: &Walker<'_>, root: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    w.gather(root, Tree::Top, &w.client.top_leaves, &mut out);
    out
}

/// The entries of the devices tree whose root is `root`.
pub fn detail_entries(w: &Walker<'_>, root: u64) -> Vec<(u64, DeviceDetails)> {
    let mut out = Vec::new();
    w.gather(root, Tree::Details, &w.client.detail_leaves, &mut out);
    out
}
