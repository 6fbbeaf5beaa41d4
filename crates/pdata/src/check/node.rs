//! One B-tree node on its own, as the checkers see it: where it claims to
//! be, its checksum, then the node rule of [`Node::verify_shape`] (the
//! kernel's checks plus the tools' stricter ones) and the key order, each
//! problem told with the node's block.

use crate::block_manager::le64;
use crate::btree::node::{
    Node, NodeFault, Shape, BLOCKNR_OFFSET, HEADER_SIZE, INTERNAL_NODE, LEAF_NODE,
};
use crate::checksum::{verify, SALT_BTREE_NODE};
use crate::Block;

/// Checks node `b` read from `loc`, whose leaves hold values of
/// `leaf_value_size` bytes.
pub fn verify_node(loc: u64, b: &Block, leaf_value_size: usize) -> Result<Shape, String> {
    let found = le64(b, BLOCKNR_OFFSET);
    if found != loc {
        return Err(format!("node {loc} claims to be block {found}"));
    }
    if !verify(b, SALT_BTREE_NODE) {
        return Err(format!("node {loc} has a bad checksum"));
    }
    let n = Node(b);
    n.verify_shape(Some(leaf_value_size))
        .and_then(|s| n.verify_key_order().map(|()| s))
        .map_err(|f| describe(loc, f))
}

/// The checkers' text for a fault of node `loc`.
fn describe(loc: u64, f: NodeFault) -> String {
    match f {
        NodeFault::BadFlags(f) if f & (INTERNAL_NODE | LEAF_NODE) == 0 => {
            format!("node {loc} is neither internal nor leaf")
        }
        NodeFault::BadFlags(_) => format!("node {loc} is both internal and leaf"),
        NodeFault::ValueSize { leaf, found, want } => {
            let what = if leaf { "leaf" } else { "internal node" };
            format!("{what} {loc} has value size {found}, expected {want}")
        }
        NodeFault::TooManyEntries { max, .. } => {
            format!("node {loc} has max_entries {max}, too many for its block")
        }
        NodeFault::MaxNotMultipleOf3 { max } => {
            format!("node {loc} has max_entries {max}, not a multiple of 3")
        }
        NodeFault::NrOverMax { nr, max } => {
            format!("node {loc} has nr_entries {nr} > max_entries {max}")
        }
        NodeFault::KeysOutOfOrder { at, prev, next } => {
            format!("node {loc} has keys out of order at entry {at}: {prev} then {next}")
        }
    }
}

/// Key `i` of a node.
#[inline]
pub fn key(b: &Block, i: usize) -> u64 {
    le64(b, HEADER_SIZE + 8 * i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_manager::put_le64;
    use crate::btree::node::{max_entries, NodeMut, FLAGS_OFFSET};
    use crate::checksum::seal;
    use crate::BLOCK_SIZE;

    fn leaf(keys: &[u64]) -> Box<Block> {
        let mut b = Box::new([0u8; BLOCK_SIZE]);
        let mut n = NodeMut(&mut b);
        n.init(LEAF_NODE, max_entries(8), 8);
        for (i, &k) in keys.iter().enumerate() {
            n.insert_at(i, k, &k.to_le_bytes());
        }
        put_le64(&mut b[..], BLOCKNR_OFFSET, 7);
        seal(&mut b[..], SALT_BTREE_NODE);
        b
    }

    #[test]
    fn accepts_and_rejects() {
        let b = leaf(&[1, 2, 5]);
        let h = verify_node(7, &b, 8).unwrap();
        assert!(h.leaf && h.nr == 3 && h.max == 252);
        assert!(verify_node(8, &b, 8).unwrap_err().contains("claims"));
        assert!(verify_node(7, &b, 24).unwrap_err().contains("value size"));
        let mut bad = leaf(&[1, 2, 5]);
        put_le64(&mut bad[..], HEADER_SIZE + 8, 9);
        seal(&mut bad[..], SALT_BTREE_NODE);
        assert!(verify_node(7, &bad, 8)
            .unwrap_err()
            .contains("out of order at entry 2: 9 then 5"));
        bad[100] ^= 1;
        assert!(verify_node(7, &bad, 8).unwrap_err().contains("checksum"));
    }

    #[test]
    fn flags_extra_bits_are_ignored_both_types_are_not() {
        let mut b = leaf(&[1]);
        b[FLAGS_OFFSET] |= 4;
        seal(&mut b[..], SALT_BTREE_NODE);
        assert!(verify_node(7, &b, 8).is_ok());
        b[FLAGS_OFFSET] = 3;
        seal(&mut b[..], SALT_BTREE_NODE);
        assert!(verify_node(7, &b, 8).unwrap_err().contains("both"));
        b[FLAGS_OFFSET] = 0;
        seal(&mut b[..], SALT_BTREE_NODE);
        assert!(verify_node(7, &b, 8).unwrap_err().contains("neither"));
    }
}
