//! One sequential pass over the whole metadata device, in large reads,
//! keeping a small summary of every block that validates as a B-tree node
//! or as a copy of the superblock (a metadata snapshot). Block contents are
//! not kept: later steps read the few nodes they need again.

use crate::format::device_details::MAX_DEVICE_ID;
use crate::format::superblock::{Superblock, SUPERBLOCK_VALIDATOR};
use pdata::block_manager::{le64, Validator};
use pdata::btree::node::{Node, BLOCKNR_OFFSET, NODE_VALIDATOR};
use pdata::io::BlockDevice;
use pdata::space_map::format::MAX_METADATA_BLOCKS;
use pdata::{Block, BLOCK_SIZE};

/// Blocks per read (1 MiB).
const CHUNK_BLOCKS: usize = 256;

/// What a valid node is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// The top level of the mapping tree: device id -> mapping-tree root.
    Top,
    /// A device's mapping tree: thin block -> block_time.
    Bottom,
    Details,
    /// Space-map trees, or nothing recognisable.
    Other,
}

/// A valid node, as the scan saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scanned {
    pub loc: u64,
    pub leaf: bool,
    pub value_size: u32,
    /// Start and length of its block pointers in `ScanIndex::pointers`:
    /// an internal node's children, or the values of a leaf that look
    /// like block numbers (a top-level leaf's mapping-tree roots).
    ptr_start: usize,
    ptr_len: usize,
}

pub(crate) struct ScanIndex {
    /// Sorted by location.
    pub nodes: Vec<Scanned>,
    pointers: Vec<u64>,
    kinds: Vec<Kind>,
    /// Valid superblocks found away from block 0 (metadata snapshots).
    pub copies: Vec<(u64, Superblock)>,
    /// Blocks the device failed to read.
    pub unreadable: u64,
}

impl ScanIndex {
    pub fn pointers(&self, n: &Scanned) -> &[u64] {
        self.pointers
            .get(n.ptr_start..n.ptr_start + n.ptr_len)
            .unwrap_or(&[])
    }

    pub fn position(&self, loc: u64) -> Option<usize> {
        self.nodes.binary_search_by_key(&loc, |n| n.loc).ok()
    }

    /// Valid nodes of `kind`.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Scanned> + '_ {
        self.nodes
            .iter()
            .zip(&self.kinds)
            .filter(move |(_, &k)| k == kind)
            .map(|(n, _)| n)
    }

    /// The nodes whose pointers refer to other nodes: internal nodes of
    /// known trees and top-level leaves.
    pub fn referrers(&self) -> impl Iterator<Item = &Scanned> + '_ {
        self.nodes
            .iter()
            .zip(&self.kinds)
            .filter(|(n, &k)| k != Kind::Other && (!n.leaf || k == Kind::Top))
            .map(|(n, _)| n)
    }
}

/// Reads every block of `dev` once, up to the most metadata the format can
/// address (the kernel uses no block past it; a larger device is read no
/// further).
pub(crate) fn scan(dev: &dyn BlockDevice) -> ScanIndex {
    let nr_blocks = dev.nr_blocks().min(MAX_METADATA_BLOCKS);
    let mut index = ScanIndex {
        nodes: Vec::new(),
        pointers: Vec::new(),
        kinds: Vec::new(),
        copies: Vec::new(),
        unreadable: 0,
    };
    let mut bufs: Vec<Block> = vec![[0u8; BLOCK_SIZE]; CHUNK_BLOCKS];
    let mut first = 0;
    while first < nr_blocks {
        let n = (nr_blocks - first).min(CHUNK_BLOCKS as u64) as usize;
        let chunk = &mut bufs[..n];
        let ok = {
            let mut refs: Vec<&mut Block> = chunk.iter_mut().collect();
            dev.read_blocks(first, &mut refs).is_ok()
        };
        for (i, b) in chunk.iter_mut().enumerate() {
            let loc = first + i as u64;
            // A failed large read is retried block by block.
            if !ok && dev.read_block(loc, b).is_err() {
                index.unreadable += 1;
                continue;
            }
            look_at(&mut index, loc, b, nr_blocks);
        }
        first += n as u64;
    }
    classify(&mut index);
    index
}

fn look_at(index: &mut ScanIndex, loc: u64, b: &Block, nr_blocks: u64) {
    // Cheap test first: nearly every block that is not metadata fails it.
    if loc == 0 || le64(b, BLOCKNR_OFFSET) != loc {
        return;
    }
    if NODE_VALIDATOR.check(loc, b).is_ok() {
        let n = Node(b);
        if n.check_key_order().is_err() {
            return;
        }
        let ptr_start = index.pointers.len();
        if n.value_size() == 8 && (n.is_internal() || looks_like_top_leaf(n, nr_blocks)) {
            index
                .pointers
                .extend((0..n.nr_entries()).map(|i| n.value_u64(i)));
        }
        let ptr_len = index.pointers.len() - ptr_start;
        index.nodes.push(Scanned {
            loc,
            leaf: n.is_leaf(),
            value_size: n.value_size() as u32,
            ptr_start,
            ptr_len,
        });
    } else if SUPERBLOCK_VALIDATOR.check(loc, b).is_ok() {
        index.copies.push((loc, Superblock::unpack(b)));
    }
}

/// Device ids for keys and block numbers on this device for values. A
/// mapping leaf matches only when every mapping is to data block 0 (its
/// values are below 2^24), which takes one entry: `classify` decides those.
fn looks_like_top_leaf(n: Node<'_>, nr_blocks: u64) -> bool {
    n.nr_entries() > 0
        && (0..n.nr_entries()).all(|i| n.key(i) <= MAX_DEVICE_ID && n.value_u64(i) < nr_blocks)
}

fn classify(index: &mut ScanIndex) {
    let mut kinds: Vec<Option<Kind>> = vec![None; index.nodes.len()];
    // Leaves first: their kind shows in their values.
    for (i, n) in index.nodes.iter().enumerate() {
        if !n.leaf {
            continue;
        }
        kinds[i] = Some(match n.value_size {
            24 => Kind::Details,
            8 if n.ptr_len > 1 || (n.ptr_len == 1 && points_at_node(index, n)) => Kind::Top,
            8 => Kind::Bottom,
            _ => Kind::Other,
        });
    }
    for i in 0..index.nodes.len() {
        if kinds[i].is_none() {
            let k = internal_kind(index, &mut kinds, i, 0);
            kinds[i] = Some(k);
        }
    }
    index.kinds = kinds
        .into_iter()
        .map(|k| k.unwrap_or(Kind::Other))
        .collect();
}

fn points_at_node(index: &ScanIndex, n: &Scanned) -> bool {
    index.pointers(n).iter().all(|&p| {
        index
            .position(p)
            .is_some_and(|j| index.nodes[j].value_size == 8)
    })
}

/// An internal node is of the kind of its first valid child.
fn internal_kind(index: &ScanIndex, kinds: &mut [Option<Kind>], i: usize, depth: usize) -> Kind {
    if let Some(k) = kinds[i] {
        return k;
    }
    if depth > 32 {
        return Kind::Other;
    }
    let n = index.nodes[i];
    let mut kind = Kind::Other;
    for &child in index.pointers(&n) {
        if let Some(j) = index.position(child) {
            if j != i {
                kind = internal_kind(index, kinds, j, depth + 1);
                break;
            }
        }
    }
    kinds[i] = Some(kind);
    kind
}
