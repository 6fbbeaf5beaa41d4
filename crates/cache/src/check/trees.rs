//! Cache's structures as the engine's walker sees them: the spines of its
//! arrays and bitsets (B-trees of array block locations) and the metadata
//! space map's overflow tree; what the check keeps of their leaves.

use super::report::Section;
use pdata::block_manager::le32;
use pdata::btree::node::Shape;
use pdata::check::array::{Spine, SPINE_VALUE_SIZE};
use pdata::check::node::key;
use pdata::check::walk::{self, leaf_values, EngineBlock, TreeKind};
use pdata::check::RefCounts;
use pdata::Block;

/// Cache's arrays and bitsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Array {
    Mapping,
    Hint,
    Discard,
    Dirty,
}

impl Array {
    pub const ALL: [Array; 4] = [Array::Mapping, Array::Hint, Array::Discard, Array::Dirty];

    pub fn name(self) -> &'static str {
        match self {
            Array::Mapping => "mapping array",
            Array::Hint => "hint array",
            Array::Discard => "discard bitset",
            Array::Dirty => "dirty bitset",
        }
    }

    pub fn section(self) -> Section {
        match self {
            Array::Mapping => Section::Mappings,
            Array::Hint => Section::Hints,
            Array::Discard => Section::Discards,
            Array::Dirty => Section::Dirty,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The spine of an array or bitset.
    Spine(Array),
    MetaOverflow,
}

impl TreeKind for Tree {
    type Tree = Tree;
    type Section = Section;

    fn tree(&self) -> Tree {
        *self
    }

    fn with_tree(self, t: Tree) -> Self {
        t
    }

    fn leaf_value_size(&self) -> usize {
        match self {
            Tree::Spine(_) => SPINE_VALUE_SIZE,
            Tree::MetaOverflow => 4,
        }
    }

    fn section(&self) -> Section {
        match self {
            Tree::Spine(a) => a.section(),
            Tree::MetaOverflow => Section::SpaceMap,
        }
    }

    fn context(&self) -> String {
        match self {
            Tree::Spine(a) => format!("{} spine", a.name()),
            Tree::MetaOverflow => "metadata space map overflow tree".into(),
        }
    }

    fn keep_children(&self) -> bool {
        false
    }
}

/// Metadata blocks that are not B-tree nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    Superblock,
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
            Other::Engine(b) => write!(f, "{b}"),
        }
    }
}

/// What the check keeps of the leaves.
pub struct Cache {
    /// Spine entries of each array, by [`Array`] order.
    pub spines: [Spine; 4],
    pub meta_overflow: Vec<(u64, u32)>,
    /// Cache has no data space map: the comparison gets an empty one.
    pub no_data: RefCounts,
}

impl Cache {
    pub fn new() -> pdata::Result<Self> {
        Ok(Cache {
            spines: Default::default(),
            meta_overflow: Vec::new(),
            no_data: RefCounts::new(0)?,
        })
    }
}

pub type Walker<'a> = walk::Walker<'a, Cache>;
pub type Ref = walk::Ref<Tree>;

impl walk::Client for Cache {
    type Kind = Tree;
    type Other = Other;

    fn leaf(w: &mut Walker<'_>, r: &Ref, b: &Block, shape: &Shape, _: &mut Vec<Ref>) {
        match r.kind {
            Tree::Spine(a) => w.client.spines[a as usize].push_leaf(b, shape),
            Tree::MetaOverflow => {
                for (i, v) in leaf_values(b, shape).chunks_exact(4).enumerate() {
                    w.client.meta_overflow.push((key(b, i), le32(v, 0)));
                }
            }
        }
    }
}
