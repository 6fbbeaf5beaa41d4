//! B-tree node format (one 4096-byte block):
//!
//! ```text
//! +------+-------+---------+------------+-------------+------------+---------+
//! | 0    | 4     | 8       | 16         | 20          | 24         | 28      |
//! | csum | flags | blocknr | nr_entries | max_entries | value_size | padding |
//! | u32  | u32   | u64     | u32        | u32         | u32        | u32     |
//! +------+-------+---------+------------+-------------+------------+---------+
//! | 32: keys[max_entries], le64                                             |
//! | 32 + 8 * max_entries: values[max_entries], value_size bytes each        |
//! +-------------------------------------------------------------------------+
//! ```
//!
//! Values start after `max_entries` keys, not after `nr_entries`.

use crate::block_manager::{le32, le64, put_le32, put_le64, Validator};
use crate::checksum::{seal, SALT_BTREE_NODE};
use crate::{Block, Error, Result, BLOCK_SIZE};

pub use crate::checksum::CSUM_OFFSET;
pub const FLAGS_OFFSET: usize = CSUM_OFFSET + size_of::<u32>();
pub const BLOCKNR_OFFSET: usize = FLAGS_OFFSET + size_of::<u32>();
pub const NR_ENTRIES_OFFSET: usize = BLOCKNR_OFFSET + size_of::<u64>();
pub const MAX_ENTRIES_OFFSET: usize = NR_ENTRIES_OFFSET + size_of::<u32>();
pub const VALUE_SIZE_OFFSET: usize = MAX_ENTRIES_OFFSET + size_of::<u32>();
const PADDING_OFFSET: usize = VALUE_SIZE_OFFSET + size_of::<u32>();
pub const HEADER_SIZE: usize = PADDING_OFFSET + size_of::<u32>();
const _: () = assert!(HEADER_SIZE == 32, "the kernel's node header");
/// Bytes of a key.
pub const KEY_SIZE: usize = size_of::<u64>();

pub const INTERNAL_NODE: u32 = 1;
pub const LEAF_NODE: u32 = 2;

/// Below this many entries a node is searched by bisection alone.
const INTERPOLATE_MIN: usize = 8;

/// Size of an internal node's values (child block numbers).
pub const INTERNAL_VALUE_SIZE: usize = 8;

/// Capacity of a node for `value_size`: the largest multiple of 3 that fits.
pub const fn max_entries(value_size: usize) -> u32 {
    let fit = (BLOCK_SIZE - HEADER_SIZE) / (KEY_SIZE + value_size);
    (3 * (fit / 3)) as u32
}
// Internal nodes and the common leaves hold what the kernel's do.
const _: () = assert!(max_entries(INTERNAL_VALUE_SIZE) == 252);
const _: () = assert!(max_entries(4) == 336 && max_entries(16) == 168);

/// A read-only view of a node.
#[derive(Clone, Copy)]
pub struct Node<'a>(pub &'a Block);

impl<'a> Node<'a> {
    pub fn flags(&self) -> u32 {
        le32(self.0, FLAGS_OFFSET)
    }
    pub fn is_leaf(&self) -> bool {
        self.flags() & LEAF_NODE != 0
    }
    pub fn is_internal(&self) -> bool {
        !self.is_leaf()
    }
    pub fn blocknr(&self) -> u64 {
        le64(self.0, BLOCKNR_OFFSET)
    }
    pub fn nr_entries(&self) -> usize {
        le32(self.0, NR_ENTRIES_OFFSET) as usize
    }
    pub fn max_entries(&self) -> usize {
        le32(self.0, MAX_ENTRIES_OFFSET) as usize
    }
    pub fn value_size(&self) -> usize {
        le32(self.0, VALUE_SIZE_OFFSET) as usize
    }
    pub fn key(&self, i: usize) -> u64 {
        le64(self.0, HEADER_SIZE + 8 * i)
    }
    fn value_offset(&self, i: usize) -> usize {
        HEADER_SIZE + 8 * self.max_entries() + i * self.value_size()
    }
    pub fn value(&self, i: usize) -> &'a [u8] {
        let off = self.value_offset(i);
        &self.0[off..off + self.value_size()]
    }
    /// Value `i` read as a le64 (child pointers, sub-tree roots, block_time).
    pub fn value_u64(&self, i: usize) -> u64 {
        le64(self.0, self.value_offset(i))
    }
    /// All live values, packed.
    pub fn values(&self) -> &'a [u8] {
        let off = self.value_offset(0);
        &self.0[off..off + self.nr_entries() * self.value_size()]
    }
    pub fn keys(&self) -> impl Iterator<Item = u64> + 'a {
        let n = *self;
        (0..n.nr_entries()).map(move |i| n.key(i))
    }

    /// Largest index whose key is <= `x`, or None if every key is > x.
    pub fn lower_bound(&self, x: u64) -> Option<usize> {
        self.lower_bound_within(x, None)
    }

    /// `lower_bound`, told that the keys lie in `span` (a parent's key
    /// for this node and the next one), which spares reading the first
    /// and last keys to interpolate. A wrong span costs time, never the
    /// answer.
    pub fn lower_bound_within(&self, x: u64, span: Option<(u64, u64)>) -> Option<usize> {
        let n = self.nr_entries();
        // Invariant: keys[..lo] <= x < keys[hi..]
        let (mut lo, mut hi) = if n > INTERPOLATE_MIN {
            match self.interpolate(x, n, span) {
                Ok(found) => return found,
                Err(range) => range,
            }
        } else {
            (0, n)
        };
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) <= x {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// An interpolated probe, then a gallop outwards from it, before the
    /// binary search. A node is 32 cache lines of keys and bisection
    /// misses on ~6 of them, one after another; keys often run densely (a
    /// volume's mappings, the first keys of their leaves), where the probe
    /// lands on `x` at once, and evenly spread keys put it close, where
    /// the gallop's first steps stay on its cache line. Keys strictly
    /// increase, so a probe at `g` also bounds the answer to within
    /// `|key(g) - x|` places of `g`. Returns the answer, or the range still
    /// to search. On a corrupt node (keys out of order) the result is
    /// wrong but in bounds, as bisection's is.
    fn interpolate(
        &self,
        x: u64,
        n: usize,
        span: Option<(u64, u64)>,
    ) -> Result<Option<usize>, (usize, usize)> {
        // The guess is in [0, n) either way.
        let g = match span {
            Some((a, b)) if a <= x && x < b => {
                (u128::from(x - a) * n as u128 / u128::from(b - a)) as usize
            }
            _ => {
                let (first, last) = (self.key(0), self.key(n - 1));
                if x < first {
                    return Ok(None);
                }
                if x >= last {
                    return Ok(Some(n - 1));
                }
                // first <= x < last
                (u128::from(x - first) * (n as u128 - 1) / u128::from(last - first)) as usize
            }
        };
        let kg = self.key(g);
        let (mut lo, mut hi);
        if kg <= x {
            // keys[..=g] <= x; keys[j] >= kg + (j - g) > x for j > g + (x - kg).
            hi = (g as u64 + 1).saturating_add(x - kg).min(n as u64) as usize;
            let (mut base, mut step) = (g, 1);
            while base + step < hi {
                if self.key(base + step) <= x {
                    base += step;
                    step *= 2;
                } else {
                    hi = base + step;
                    break;
                }
            }
            lo = base + 1;
        } else {
            // keys[g..] > x; keys[j] <= kg - (g - j) <= x for j <= g - (kg - x).
            lo = (g as u64 + 1).saturating_sub(kg - x) as usize;
            let (mut base, mut step) = (g, 1);
            while base >= lo + step {
                if self.key(base - step) > x {
                    base -= step;
                    step *= 2;
                } else {
                    lo = base - step + 1;
                    break;
                }
            }
            hi = base;
        }
        if lo == hi {
            return Ok(lo.checked_sub(1));
        }
        Err((lo, hi))
    }

    /// Smallest index whose key is >= `x` (nr_entries if none).
    pub fn upper_bound(&self, x: u64) -> usize {
        let (mut lo, mut hi) = (0usize, self.nr_entries());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) < x {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Index of exactly `x`.
    pub fn find(&self, x: u64) -> Option<usize> {
        self.lower_bound(x).filter(|&i| self.key(i) == x)
    }

    /// The shape rule, one for every reader (FORMAT §3.6): what the kernel
    /// checks on read (one node type, values fit the block, nr <= max,
    /// internal values are block numbers), plus the tools' stricter rules
    /// (max_entries a multiple of 3, leaves of the tree's value size when
    /// `leaf_value_size` is known). Key order is [`Self::verify_key_order`].
    pub fn verify_shape(
        &self,
        leaf_value_size: Option<usize>,
    ) -> std::result::Result<Shape, NodeFault> {
        let flags = self.flags();
        let leaf = match flags & (INTERNAL_NODE | LEAF_NODE) {
            INTERNAL_NODE => false,
            LEAF_NODE => true,
            _ => return Err(NodeFault::BadFlags(flags)),
        };
        let (nr, max, vs) = (self.nr_entries(), self.max_entries(), self.value_size());
        let want = if leaf {
            leaf_value_size
        } else {
            Some(INTERNAL_VALUE_SIZE)
        };
        if let Some(want) = want.filter(|&w| w != vs) {
            return Err(NodeFault::ValueSize {
                leaf,
                found: vs,
                want,
            });
        }
        // Both fields come from disk: compute without overflow.
        let bytes = (8 + vs as u64)
            .checked_mul(max as u64)
            .and_then(|b| b.checked_add(HEADER_SIZE as u64));
        if vs == 0 || bytes.is_none_or(|b| b > BLOCK_SIZE as u64) {
            return Err(NodeFault::TooManyEntries {
                max,
                value_size: vs,
            });
        }
        if max % 3 != 0 {
            return Err(NodeFault::MaxNotMultipleOf3 { max });
        }
        if nr > max {
            return Err(NodeFault::NrOverMax { nr, max });
        }
        Ok(Shape {
            leaf,
            nr,
            max,
            value_size: vs,
        })
    }

    /// Keys strictly increasing (call after [`Self::verify_shape`]).
    pub fn verify_key_order(&self) -> std::result::Result<(), NodeFault> {
        let nr = self.nr_entries().min(max_entries_fit());
        let keys = &self.0[HEADER_SIZE..HEADER_SIZE + 8 * nr];
        let mut prev: Option<u64> = None;
        for (at, k) in keys.chunks_exact(8).enumerate() {
            let k = u64::from_le_bytes(k.try_into().unwrap_or_default());
            if let Some(p) = prev.filter(|&p| p >= k) {
                return Err(NodeFault::KeysOutOfOrder {
                    at,
                    prev: p,
                    next: k,
                });
            }
            prev = Some(k);
        }
        Ok(())
    }

    /// [`Self::verify_shape`] without a known leaf value size, as text.
    pub fn check_shape(&self) -> std::result::Result<(), String> {
        self.verify_shape(None)
            .map(|_| ())
            .map_err(|f| f.to_string())
    }

    /// [`Self::verify_key_order`], as text.
    pub fn check_key_order(&self) -> std::result::Result<(), String> {
        self.verify_key_order().map_err(|f| f.to_string())
    }
}

/// Most keys a block can hold (any value size).
const fn max_entries_fit() -> usize {
    (BLOCK_SIZE - HEADER_SIZE) / 8
}

fn value_size_text(leaf: bool, found: usize, want: usize) -> String {
    if leaf {
        format!("leaf with value_size {found}, expected {want}")
    } else {
        format!("internal node with value_size {found}")
    }
}

/// A node's header, once it passed [`Node::verify_shape`].
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub leaf: bool,
    pub nr: usize,
    pub max: usize,
    pub value_size: usize,
}

impl Shape {
    /// Byte offset of value `i`.
    pub fn value_offset(&self, i: usize) -> usize {
        HEADER_SIZE + 8 * self.max + i * self.value_size
    }
}

/// What the node rule found wrong, in the order it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NodeFault {
    /// Neither or both of internal and leaf.
    #[error("bad node flags {0:#x}")]
    BadFlags(u32),
    #[error("{}", value_size_text(*leaf, *found, *want))]
    ValueSize {
        leaf: bool,
        found: usize,
        want: usize,
    },
    #[error("max_entries {max} with value_size {value_size} overflows the block")]
    TooManyEntries { max: usize, value_size: usize },
    #[error("max_entries {max} is not a multiple of 3")]
    MaxNotMultipleOf3 { max: usize },
    #[error("nr_entries {nr} > max_entries {max}")]
    NrOverMax { nr: usize, max: usize },
    #[error("keys out of order at {at}: {prev} >= {next}")]
    KeysOutOfOrder { at: usize, prev: u64, next: u64 },
}

/// A mutable view of a node.
pub struct NodeMut<'a>(pub &'a mut Block);

impl<'a> NodeMut<'a> {
    pub fn view(&self) -> Node<'_> {
        Node(self.0)
    }

    /// Turns the block into an empty node.
    pub fn init(&mut self, flags: u32, max_entries: u32, value_size: usize) {
        self.0.fill(0);
        put_le32(self.0, FLAGS_OFFSET, flags);
        put_le32(self.0, MAX_ENTRIES_OFFSET, max_entries);
        put_le32(self.0, VALUE_SIZE_OFFSET, value_size as u32);
    }

    pub fn set_nr_entries(&mut self, n: usize) {
        put_le32(self.0, NR_ENTRIES_OFFSET, n as u32);
    }
    pub fn set_key(&mut self, i: usize, k: u64) {
        put_le64(self.0, HEADER_SIZE + 8 * i, k);
    }
    fn value_offset(&self, i: usize) -> usize {
        self.view().value_offset(i)
    }
    pub fn set_value(&mut self, i: usize, v: &[u8]) {
        let off = self.value_offset(i);
        self.0[off..off + v.len()].copy_from_slice(v);
    }
    pub fn set_value_u64(&mut self, i: usize, v: u64) {
        let off = self.value_offset(i);
        put_le64(self.0, off, v);
    }

    /// Inserts (k, v) at `i`, shifting later entries up. Caller ensures room.
    pub fn insert_at(&mut self, i: usize, k: u64, v: &[u8]) {
        let n = self.view();
        let (nr, max, vs) = (n.nr_entries(), n.max_entries(), n.value_size());
        debug_assert!(nr < max && i <= nr && v.len() == vs);
        let kbase = HEADER_SIZE;
        let vbase = HEADER_SIZE + 8 * max;
        self.0
            .copy_within(kbase + 8 * i..kbase + 8 * nr, kbase + 8 * (i + 1));
        self.0
            .copy_within(vbase + vs * i..vbase + vs * nr, vbase + vs * (i + 1));
        self.set_key(i, k);
        self.set_value(i, v);
        self.set_nr_entries(nr + 1);
    }

    /// Deletes entry `i`, shifting later entries down.
    pub fn delete_at(&mut self, i: usize) {
        let n = self.view();
        let (nr, max, vs) = (n.nr_entries(), n.max_entries(), n.value_size());
        debug_assert!(i < nr);
        let kbase = HEADER_SIZE;
        let vbase = HEADER_SIZE + 8 * max;
        self.0
            .copy_within(kbase + 8 * (i + 1)..kbase + 8 * nr, kbase + 8 * i);
        self.0
            .copy_within(vbase + vs * (i + 1)..vbase + vs * nr, vbase + vs * i);
        self.set_nr_entries(nr - 1);
    }
}

/// Entries lifted out of nodes, to be spread over nodes again.
#[derive(Default)]
pub struct Entries {
    pub keys: Vec<u64>,
    pub values: Vec<u8>,
    pub value_size: usize,
}

impl Entries {
    /// Appends every entry of `node`.
    pub fn take_from(&mut self, node: Node<'_>) {
        self.value_size = node.value_size();
        self.keys.extend(node.keys());
        self.values.extend_from_slice(node.values());
    }

    /// Writes entries [from, from + n) into `node` (whose header is kept).
    pub fn put_into(&self, node: &mut NodeMut<'_>, from: usize, n: usize) {
        let vs = self.value_size;
        for j in 0..n {
            node.set_key(j, self.keys[from + j]);
            node.set_value(j, &self.values[(from + j) * vs..(from + j + 1) * vs]);
        }
        node.set_nr_entries(n);
    }
}

/// Validator of B-tree nodes.
pub struct NodeValidator;

pub static NODE_VALIDATOR: NodeValidator = NodeValidator;

impl Validator for NodeValidator {
    fn name(&self) -> &'static str {
        "btree node"
    }

    fn check(&self, loc: u64, data: &Block) -> Result<()> {
        crate::block_manager::check_location_and_checksum(
            self.name(),
            loc,
            data,
            BLOCKNR_OFFSET,
            SALT_BTREE_NODE,
        )?;
        Node(data)
            .check_shape()
            .map_err(|r| Error::corrupt(loc, self.name(), r))
    }

    fn prepare_for_write(&self, loc: u64, data: &mut Block) -> Result<()> {
        let n = Node(data);
        n.check_shape()
            .and_then(|_| n.check_key_order())
            .map_err(|r| Error::corrupt(loc, "btree node (before write)", r))?;
        put_le64(data, BLOCKNR_OFFSET, loc);
        seal(data, SALT_BTREE_NODE);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities() {
        assert_eq!(max_entries(4), 336);
        assert_eq!(max_entries(8), 252);
        assert_eq!(max_entries(12), 201);
        assert_eq!(max_entries(16), 168);
        assert_eq!(max_entries(24), 126);
    }

    #[test]
    fn one_shape_rule() {
        let mut b = [0u8; BLOCK_SIZE];
        let mut n = NodeMut(&mut b);
        n.init(LEAF_NODE, max_entries(8), 8);
        n.insert_at(0, 5, &[0; 8]);
        n.insert_at(1, 9, &[0; 8]);
        let shape = Node(&b).verify_shape(Some(8)).unwrap();
        assert!(shape.leaf && shape.nr == 2 && shape.value_offset(1) == 32 + 8 * 252 + 8);
        assert_eq!(
            Node(&b).verify_shape(Some(16)).unwrap_err(),
            NodeFault::ValueSize {
                leaf: true,
                found: 8,
                want: 16
            }
        );
        let with = |b: &mut Block, off: usize, v: u32| put_le32(b, off, v);
        let mut c = b;
        with(&mut c, FLAGS_OFFSET, LEAF_NODE | 4);
        assert!(
            Node(&c).verify_shape(None).is_ok(),
            "other flag bits are ignored"
        );
        with(&mut c, FLAGS_OFFSET, INTERNAL_NODE | LEAF_NODE);
        assert_eq!(Node(&c).check_shape().unwrap_err(), "bad node flags 0x3");
        let mut c = b;
        with(&mut c, MAX_ENTRIES_OFFSET, 250);
        assert_eq!(
            Node(&c).verify_shape(None).unwrap_err(),
            NodeFault::MaxNotMultipleOf3 { max: 250 }
        );
        with(&mut c, MAX_ENTRIES_OFFSET, 255);
        assert!(Node(&c).check_shape().unwrap_err().contains("overflows"));
        let mut c = b;
        with(&mut c, NR_ENTRIES_OFFSET, 253);
        assert_eq!(
            Node(&c).check_shape().unwrap_err(),
            "nr_entries 253 > max_entries 252"
        );
        let mut c = b;
        put_le64(&mut c, HEADER_SIZE, 9);
        assert_eq!(
            Node(&c).check_key_order().unwrap_err(),
            "keys out of order at 1: 9 >= 9"
        );
        let mut c = b;
        with(&mut c, FLAGS_OFFSET, INTERNAL_NODE);
        assert!(Node(&c).check_shape().is_ok());
        with(&mut c, VALUE_SIZE_OFFSET, 16);
        assert_eq!(
            Node(&c).check_shape().unwrap_err(),
            "internal node with value_size 16"
        );
    }

    #[test]
    fn search() {
        let mut b = [0u8; BLOCK_SIZE];
        let mut n = NodeMut(&mut b);
        n.init(LEAF_NODE, max_entries(8), 8);
        for (i, k) in [10u64, 20, 30].iter().enumerate() {
            n.insert_at(i, *k, &k.to_le_bytes());
        }
        let v = n.view();
        assert_eq!(v.lower_bound(5), None);
        assert_eq!(v.lower_bound(10), Some(0));
        assert_eq!(v.lower_bound(25), Some(1));
        assert_eq!(v.lower_bound(99), Some(2));
        assert_eq!(v.upper_bound(5), 0);
        assert_eq!(v.upper_bound(21), 2);
        assert_eq!(v.upper_bound(31), 3);
        assert_eq!(v.find(20), Some(1));
        assert_eq!(v.find(21), None);
        n.delete_at(0);
        assert_eq!(n.view().keys().collect::<Vec<_>>(), vec![20, 30]);
        assert_eq!(n.view().value_u64(1), 30);
    }

    proptest::proptest! {
        /// The interpolated search answers as bisection does, on dense,
        /// sparse, clustered and extreme keys, for probes in and between them.
        #[test]
        fn interpolated_search_agrees_with_bisection(
            gaps in proptest::collection::vec(
                proptest::prop_oneof![1u64..2, 1u64..4, 1u64..1000, 1u64..(1 << 40)], 1..252),
            start in proptest::prop_oneof![0u64..10, (u64::MAX >> 1)..(u64::MAX >> 1) + 10],
            probes in proptest::collection::vec(proptest::num::u64::ANY, 8),
        ) {
            let mut b = [0u8; BLOCK_SIZE];
            let mut n = NodeMut(&mut b);
            n.init(LEAF_NODE, max_entries(8), 8);
            let mut keys = vec![];
            let mut k = start;
            for g in gaps {
                keys.push(k);
                n.insert_at(keys.len() - 1, k, &[0; 8]);
                k = match k.checked_add(g) { Some(k) => k, None => break };
            }
            let v = n.view();
            let near = keys.iter().flat_map(|&k| [k.wrapping_sub(1), k, k.wrapping_add(1)]);
            let (lo, hi) = (keys[0], keys[keys.len() - 1]);
            // Spans as a parent gives them, and wrong ones.
            let spans = [None, Some((lo, hi.saturating_add(1))), Some((lo / 2, hi)),
                Some((lo, lo.saturating_add(1))), Some((0, u64::MAX)), Some((hi, lo))];
            for x in near.chain(probes).chain([0, u64::MAX]) {
                let want = keys.partition_point(|&k| k <= x).checked_sub(1);
                for span in spans {
                    proptest::prop_assert_eq!(
                        v.lower_bound_within(x, span), want, "x = {}, span {:?}", x, span);
                }
            }
        }
    }
}
