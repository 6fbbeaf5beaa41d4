//! The walk: B-trees level by level (all nodes of a level read in block
//! order, see [`pipeline`](super::pipeline)), each node verified once and
//! counted once per reference. Shared nodes are visited once; their other
//! references are checked against a summary of the node at the end.
//!
//! Generic over the client's trees ([`TreeKind`]) and what its leaves hold
//! ([`Client::leaf`]); everything is monomorphized, so the per-entry work
//! costs no dynamic call.

mod results;

use super::blocks::BlockSet;
use super::node::{key, verify_node};
use super::pipeline::{self, Buffers};
use super::report::{Problems, Section};
use crate::block_manager::le64;
use crate::btree::node::Shape;
use crate::io::BlockDevice;
use crate::progress::{NoProgress, ProgressHook};
use crate::space_map::RefCounts;
use crate::Block;
use rustc_hash::{FxHashMap, FxHashSet};
use std::fmt::Display;

/// Deeper than any B-tree of a metadata device can be.
pub const MAX_DEPTH: usize = 64;
/// References visited in one piece of a level, and the most a level
/// gathers (or references to nodes met before) before its parent level's
/// piece stops: about 2 MB of them (56 bytes each for thin).
const LEVEL_MAX: usize = 1 << 15;
/// Leaves read again at a time: what a pass reads past the end of its
/// window before it notices (16 MiB).
const REVISIT_PIECE: usize = 1 << 12;

/// Which tree a reference leads into, and whatever else the client's
/// messages need (a device, a snapshot...).
pub trait TreeKind: Copy + Send + Sync {
    /// The tree alone: what a node's summary remembers, so that a node met
    /// again from another tree is caught.
    type Tree: Copy + Eq;
    type Section: Section;
    fn tree(&self) -> Self::Tree;
    /// This reference, but into tree `t` (for messages).
    fn with_tree(self, t: Self::Tree) -> Self;
    fn leaf_value_size(&self) -> usize;
    fn section(&self) -> Self::Section;
    /// Names the tree, for messages.
    fn context(&self) -> String;
    /// Keep the children of this tree's internal nodes, to gather its leaf
    /// entries or count them after the walk.
    fn keep_children(&self) -> bool;
    /// Remember only the number of entries of this tree's leaves (a byte
    /// where a summary takes 32: the leaves of the largest trees); their
    /// other references are checked by reading them again. One tree at most
    /// may say so.
    fn compact_leaves(&self) -> bool {
        false
    }
}

/// A client's checker: its trees and what to do with a leaf's values.
pub trait Client: Sized {
    type Kind: TreeKind;
    /// Metadata blocks that are not B-tree nodes (superblock, space map
    /// index and bitmaps, array blocks...), as named in messages.
    type Other: Copy + Display + From<EngineBlock>;
    /// Handles the values of leaf `b` at `r` (its shape passed): counts
    /// the blocks they refer to, pushes the sub-trees to descend into onto
    /// `next` (with [`Walker::reference_node`]), keeps what it needs.
    fn leaf(
        w: &mut Walker<'_, Self>,
        r: &Ref<Self::Kind>,
        b: &Block,
        shape: &Shape,
        next: &mut Vec<Ref<Self::Kind>>,
    );
}

/// Blocks of the engine's structures that are not B-tree nodes: a space
/// map's (every client has one) and arrays' (named by the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineBlock {
    MetaIndex,
    MetaBitmap(u64),
    DataBitmap(u64),
    ArrayBlock { array: &'static str, index: u64 },
}

impl Display for EngineBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineBlock::MetaIndex => write!(f, "the metadata space map index"),
            EngineBlock::MetaBitmap(i) => write!(f, "metadata space map bitmap {i}"),
            EngineBlock::DataBitmap(i) => write!(f, "data space map bitmap {i}"),
            EngineBlock::ArrayBlock { array, index } => write!(f, "{array} block {index}"),
        }
    }
}

/// A reference to a node: which tree it belongs to and the key range its
/// parent gives it.
#[derive(Debug, Clone, Copy)]
pub struct Ref<K> {
    pub loc: u64,
    pub lo: u64,
    /// Exclusive upper bound.
    pub hi: Option<u64>,
    pub kind: K,
    pub root: bool,
}

impl<K: TreeKind> Ref<K> {
    pub fn root(loc: u64, kind: K) -> Self {
        Ref {
            loc,
            lo: 0,
            hi: None,
            kind,
            root: true,
        }
    }

    pub fn context(&self) -> String {
        self.kind.context()
    }
}

/// What was found at a node, for its other references.
#[derive(Debug, Clone, Copy)]
struct Summary<T> {
    loc: u32,
    nr: u16,
    max: u16,
    tree: T,
    leaf: bool,
    first: u64,
    last: u64,
}

pub(super) type KindOf<C> = <C as Client>::Kind;
pub(super) type TreeOf<C> = <KindOf<C> as TreeKind>::Tree;
pub(super) type SectionOf<C> = <KindOf<C> as TreeKind>::Section;

pub struct Walker<'a, C: Client> {
    pub dev: &'a dyn BlockDevice,
    /// Told of every block read.
    pub progress: &'a dyn ProgressHook,
    /// Batch buffers, reused by every read of the check.
    pub buffers: Buffers,
    /// Expected metadata counts; its length (below 2^32) bounds every
    /// metadata reference.
    pub meta: RefCounts,
    pub problems: Problems<SectionOf<C>>,
    /// The client's state: what its leaves gave.
    pub client: C,
    summaries: Vec<Summary<TreeOf<C>>>,
    sorted: bool,
    /// Leaves of the tree `compact_tree` ([`TreeKind::compact_leaves`]):
    /// 1 + their number of entries, by block (0: not one).
    leaf_nrs: Vec<u8>,
    compact_tree: Option<TreeOf<C>>,
    /// Children of internal nodes of trees that keep them: loc -> range of
    /// `child_locs`.
    children: FxHashMap<u32, (u32, u32)>,
    /// (u32::MAX for a pointer past any metadata block: never a node).
    child_locs: Vec<u32>,
    /// References to nodes already referenced.
    repeats: Vec<Ref<KindOf<C>>>,
    /// Of `repeats`, those whose node was not visited yet at the last
    /// [`Self::check_visited_repeats`].
    repeats_waiting: usize,
    pub others: FxHashMap<u64, C::Other>,
    /// Blocks counted by [`Self::reference_data_bitmap`].
    data_bitmaps: BlockSet,
    /// The array blocks among `others` (arrays may share them).
    pub(crate) array_blocks: FxHashSet<u64>,
}

impl<'a, C: Client> Walker<'a, C> {
    pub fn new(
        dev: &'a dyn BlockDevice,
        meta: RefCounts,
        client: C,
        progress: &'a dyn ProgressHook,
    ) -> Self {
        debug_assert!(meta.nr_blocks() <= u32::MAX as u64);
        Walker {
            dev,
            progress,
            buffers: Buffers::default(),
            meta,
            problems: Problems::default(),
            client,
            summaries: Vec::new(),
            sorted: true,
            leaf_nrs: Vec::new(),
            compact_tree: None,
            children: FxHashMap::default(),
            child_locs: Vec::new(),
            repeats: Vec::new(),
            repeats_waiting: 0,
            others: FxHashMap::default(),
            data_bitmaps: BlockSet::default(),
            array_blocks: FxHashSet::default(),
        }
    }

    /// Counts a reference to a block that is not a node; true on the first.
    pub fn reference_other(&mut self, loc: u64, what: C::Other, section: SectionOf<C>) -> bool {
        let first = self.count_other(loc, &what, section);
        if first {
            self.others.insert(loc, what);
        }
        first
    }

    /// [`Self::reference_other`] for a data space map bitmap (`what`),
    /// remembered as one bit: a data device may have millions of bitmaps.
    pub fn reference_data_bitmap(
        &mut self,
        loc: u64,
        what: C::Other,
        section: SectionOf<C>,
    ) -> bool {
        let first = self.count_other(loc, &what, section);
        if first {
            self.data_bitmaps.insert(loc);
        }
        first
    }

    /// Whether `loc` was counted by [`Self::reference_data_bitmap`].
    pub(super) fn is_data_bitmap(&self, loc: u64) -> bool {
        self.data_bitmaps.contains(loc)
    }

    fn count_other(&mut self, loc: u64, what: &C::Other, section: SectionOf<C>) -> bool {
        if loc >= self.meta.nr_blocks() {
            self.problems.fatal(
                section,
                format!(
                    "{what} is at block {loc}, beyond the metadata space map ({} blocks)",
                    self.meta.nr_blocks()
                ),
            );
            return false;
        }
        if self.meta.inc(loc) != 0 {
            self.problems.fatal(
                section,
                format!("{what} is at block {loc}, which is also used for something else"),
            );
            return false;
        }
        true
    }

    /// Counts a reference to a node; the node joins `next` (to be visited)
    /// on its first reference.
    pub fn reference_node(&mut self, r: Ref<KindOf<C>>, next: &mut Vec<Ref<KindOf<C>>>) {
        if r.loc >= self.meta.nr_blocks() {
            self.problems.fatal(
                r.kind.section(),
                format!(
                    "{}: points at block {}, beyond the metadata space map ({} blocks)",
                    r.context(),
                    r.loc,
                    self.meta.nr_blocks()
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

    /// Walks the trees below `roots`, level by level: each level's nodes
    /// in block order, in pieces of at most [`LEVEL_MAX`], the deepest
    /// level first. The references waiting then stay below
    /// `LEVEL_MAX` (plus a node's children) per level, whatever the size of
    /// the trees; where every level fits in one piece, as in all but huge
    /// pools, this is the plain breadth-first order.
    pub fn walk(&mut self, roots: &[Ref<KindOf<C>>]) {
        let mut first = Vec::new();
        for &r in roots {
            self.reference_node(r, &mut first);
        }
        // Per level: its references (sorted) and how many were visited.
        let mut levels = vec![(first, 0usize)];
        levels[0].0.sort_unstable_by_key(|r| r.loc);
        let (dev, progress) = (self.dev, self.progress);
        while let Some((level, done)) = levels.last_mut() {
            if *done == level.len() {
                levels.pop();
                continue;
            }
            let piece = &level[*done..level.len().min(*done + LEVEL_MAX)];
            let mut next = Vec::new();
            let mut visited = 0;
            let repeats_before = self.repeats.len();
            let mut buffers = std::mem::take(&mut self.buffers);
            pipeline::run(
                dev,
                progress,
                piece,
                &mut buffers,
                |r| r.loc,
                |r, b| match b {
                    Some(b) => verify_node(r.loc, b, r.kind.leaf_value_size()),
                    None => Err(format!("node {} cannot be read", r.loc)),
                },
                |r, b, v| {
                    // A full next level: the rest of the piece waits for
                    // it (read again then).
                    if next.len() + (self.repeats.len() - repeats_before) < LEVEL_MAX {
                        self.visit(r, b, v, &mut next);
                        visited += 1;
                    }
                },
            );
            self.buffers = buffers;
            *done += visited;
            if self.repeats.len() >= LEVEL_MAX.max(2 * self.repeats_waiting) {
                self.check_visited_repeats();
                self.repeats_waiting = self.repeats.len();
            }
            if next.is_empty() {
                continue;
            }
            if levels.len() >= MAX_DEPTH {
                let r = next[0];
                self.problems.fatal(
                    r.kind.section(),
                    format!(
                        "{}: node {} is deeper than {MAX_DEPTH} levels",
                        r.context(),
                        r.loc
                    ),
                );
                continue;
            }
            next.sort_unstable_by_key(|r| r.loc);
            levels.push((next, 0));
        }
    }

    /// Reads again the leaves `locs` (ascending, leaves of `kind`'s tree
    /// that the walk visited) that `wanted` still wants when their piece
    /// is read, in block order, and hands each one that still passes to
    /// `f`; nothing is counted or reported, and no progress told. For a
    /// client that counts what its leaves refer to in several passes.
    pub fn revisit(
        &mut self,
        locs: impl Iterator<Item = u64>,
        kind: KindOf<C>,
        wanted: impl Fn(&Self, u64) -> bool,
        mut f: impl FnMut(&mut Self, &Ref<KindOf<C>>, &Block, &Shape),
    ) {
        let dev = self.dev;
        let mut buffers = std::mem::take(&mut self.buffers);
        let mut locs = locs.peekable();
        while locs.peek().is_some() {
            let piece: Vec<Ref<KindOf<C>>> = locs
                .by_ref()
                .filter(|&loc| wanted(self, loc))
                .take(REVISIT_PIECE)
                .map(|loc| Ref {
                    root: false,
                    ..Ref::root(loc, kind)
                })
                .collect();
            pipeline::run(
                dev,
                &NoProgress,
                &piece,
                &mut buffers,
                |r| r.loc,
                |r, b| b.map(|b| verify_node(r.loc, b, r.kind.leaf_value_size())),
                |r, b, v| {
                    if let (Some(b), Some(Ok(shape))) = (b, v) {
                        if shape.leaf {
                            f(self, r, b, &shape);
                        }
                    }
                },
            );
        }
        self.buffers = buffers;
    }

    fn visit(
        &mut self,
        r: &Ref<KindOf<C>>,
        b: Option<&Block>,
        verdict: Result<Shape, String>,
        next: &mut Vec<Ref<KindOf<C>>>,
    ) {
        let (b, shape) = match (b, verdict) {
            (Some(b), Ok(shape)) => (b, shape),
            (_, Err(e)) => {
                self.problems
                    .fatal(r.kind.section(), format!("{}: {e}", r.context()));
                return;
            }
            (None, Ok(_)) => return,
        };
        let nr = shape.nr;
        let s = Summary {
            loc: r.loc as u32,
            nr: nr as u16,
            max: shape.max as u16,
            tree: r.kind.tree(),
            leaf: shape.leaf,
            first: if nr > 0 { key(b, 0) } else { 0 },
            last: if nr > 0 { key(b, nr - 1) } else { 0 },
        };
        self.check_ref(r, &s);
        if !(shape.leaf && self.compact(r, &s)) {
            if self.summaries.last().is_some_and(|p| p.loc > s.loc) {
                self.sorted = false;
            }
            self.summaries.push(s);
        }
        if shape.leaf {
            C::leaf(self, r, b, &shape, next);
            return;
        }
        let values = &b[shape.value_offset(0)..shape.value_offset(nr)];
        let keep_children = r.kind.keep_children();
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
                self.child_locs
                    .push(u32::try_from(child).unwrap_or(u32::MAX));
            }
        }
        if keep_children {
            self.children.insert(r.loc as u32, (start, nr as u32));
        }
    }

    /// Remembers leaf `s` as a byte if its tree keeps its leaves compact;
    /// true if it did.
    fn compact(&mut self, r: &Ref<KindOf<C>>, s: &Summary<TreeOf<C>>) -> bool {
        let tree = r.kind.tree();
        if !r.kind.compact_leaves() || s.nr >= u8::MAX as u16 {
            return false;
        }
        if *self.compact_tree.get_or_insert(tree) != tree {
            return false;
        }
        let at = s.loc as usize;
        if self.leaf_nrs.len() <= at {
            self.leaf_nrs.resize(at + 1, 0);
        }
        self.leaf_nrs[at] = s.nr as u8 + 1;
        true
    }

    /// The checks of a reference that depend on where it comes from.
    fn check_ref(&mut self, r: &Ref<KindOf<C>>, s: &Summary<TreeOf<C>>) {
        let section = r.kind.section();
        if !r.root && s.nr < s.max / 3 {
            self.problems.fatal(
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
            self.problems.fatal(
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
            self.problems.fatal(
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

/// The values of a leaf that passed, as one byte slice.
pub fn leaf_values<'b>(b: &'b Block, shape: &Shape) -> &'b [u8] {
    &b[shape.value_offset(0)..shape.value_offset(shape.nr)]
}
