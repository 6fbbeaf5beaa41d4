//! Era's trees as the engine's walker sees them (`pdata::check::walk`):
//! the writeset tree (era -> writeset), the spines of the bitsets and of
//! the era array, and the metadata space map's overflow tree. The spines
//! and the writeset tree keep their leaves' entries by leaf, since the
//! metadata snapshot shares them with the live state.

use super::Section;
use crate::format::writeset::{WritesetDisk, WRITESET_DISK_SIZE};
use pdata::block_manager::le32;
use pdata::btree::node::Shape;
use pdata::check::array::SPINE_VALUE_SIZE;
use pdata::check::node::key;
use pdata::check::walk::{self, leaf_values, EngineBlock, TreeKind};
use pdata::check::RefCounts;
use pdata::Block;
use rustc_hash::FxHashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    Writesets,
    /// The spine of a bitset (a writeset) or of the era array.
    Spine,
    MetaOverflow,
}

#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub tree: Tree,
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
            Tree::Writesets => WRITESET_DISK_SIZE,
            Tree::Spine => SPINE_VALUE_SIZE,
            Tree::MetaOverflow => 4,
        }
    }

    fn section(&self) -> Section {
        match self.tree {
            Tree::Writesets | Tree::Spine => Section::Writesets,
            Tree::MetaOverflow => Section::SpaceMap,
        }
    }

    fn context(&self) -> String {
        let snap = if self.snap { "metadata snapshot: " } else { "" };
        match self.tree {
            Tree::Writesets => format!("{snap}writeset tree"),
            Tree::Spine => format!("{snap}array spine"),
            Tree::MetaOverflow => "metadata space map overflow tree".into(),
        }
    }

    fn keep_children(&self) -> bool {
        !matches!(self.tree, Tree::MetaOverflow)
    }
}

pub type Ref = walk::Ref<Kind>;
pub type Walker<'a> = walk::Walker<'a, Era>;

pub fn root(loc: u64, tree: Tree, snap: bool) -> Ref {
    Ref::root(loc, Kind { tree, snap })
}

/// Metadata blocks that are not B-tree nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    Superblock,
    SnapSuperblock,
    Engine(EngineBlock),
}

impl From<EngineBlock> for Other {
    fn from(b: EngineBlock) -> Self {
        Other::Engine(b)
    }
}

impl std::fmt::Display for Other {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Other::Superblock => write!(f, "the superblock"),
            Other::SnapSuperblock => write!(f, "the metadata snapshot's superblock"),
            Other::Engine(b) => write!(f, "{b}"),
        }
    }
}

/// What the check keeps of the leaves.
pub struct Era {
    /// Writeset tree leaves: (era, writeset).
    pub writeset_leaves: FxHashMap<u64, Vec<(u64, WritesetDisk)>>,
    /// Spine leaves: (array block index, location, leaf).
    pub spine_leaves: FxHashMap<u64, Vec<(u64, u64, u64)>>,
    pub meta_overflow: Vec<(u64, u32)>,
    /// Era has no data space map: the comparison's empty data counts.
    pub no_data: RefCounts,
}

impl Era {
    pub fn new() -> Self {
        Era {
            writeset_leaves: FxHashMap::default(),
            spine_leaves: FxHashMap::default(),
            meta_overflow: Vec::new(),
            no_data: RefCounts::new(0).expect("no blocks to count"),
        }
    }
}

impl walk::Client for Era {
    type Kind = Kind;
    type Other = Other;

    fn leaf(w: &mut Walker<'_>, r: &Ref, b: &Block, shape: &Shape, next: &mut Vec<Ref>) {
        let values = leaf_values(b, shape);
        match r.kind.tree {
            Tree::Writesets => {
                let mut entries = Vec::with_capacity(shape.nr);
                for (i, v) in values.chunks_exact(WRITESET_DISK_SIZE).enumerate() {
                    let ws = WritesetDisk::unpack(v);
                    entries.push((key(b, i), ws));
                    let spine = root(ws.root, Tree::Spine, r.kind.snap);
                    w.reference_node(spine, next);
                }
                w.client.writeset_leaves.insert(r.loc, entries);
            }
            Tree::Spine => {
                let entries = values
                    .chunks_exact(SPINE_VALUE_SIZE)
                    .enumerate()
                    .map(|(i, v)| (key(b, i), pdata::block_manager::le64(v, 0), r.loc))
                    .collect();
                w.client.spine_leaves.insert(r.loc, entries);
            }
            Tree::MetaOverflow => {
                for (i, v) in values.chunks_exact(4).enumerate() {
                    w.client.meta_overflow.push((key(b, i), le32(v, 0)));
                }
            }
        }
    }
}
