//! Validation of one B-tree node on its own (no context): what the kernel
//! checks on read, plus the tools' stricter shape rules (FORMAT §3.6).

use pdata::block_manager::le64;
use pdata::btree::node::{
    Node, BLOCKNR_OFFSET, HEADER_SIZE, INTERNAL_NODE, INTERNAL_VALUE_SIZE, LEAF_NODE,
};
use pdata::checksum::{verify, SALT_BTREE_NODE};
use pdata::{Block, BLOCK_SIZE};

/// The header of a node that passed.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub leaf: bool,
    pub nr: usize,
    pub max: usize,
    pub value_size: usize,
}

impl Head {
    /// Byte offset of value `i`.
    pub fn value_offset(&self, i: usize) -> usize {
        HEADER_SIZE + 8 * self.max + i * self.value_size
    }
}

/// Checks node `b` read from `loc`, whose leaves hold values of
/// `leaf_value_size` bytes.
pub fn verify_node(loc: u64, b: &Block, leaf_value_size: usize) -> Result<Head, String> {
    let found = le64(b, BLOCKNR_OFFSET);
    if found != loc {
        return Err(format!("node {loc} claims to be block {found}"));
    }
    if !verify(b, SALT_BTREE_NODE) {
        return Err(format!("node {loc} has a bad checksum"));
    }
    let n = Node(b);
    let leaf = match n.flags() & (INTERNAL_NODE | LEAF_NODE) {
        INTERNAL_NODE => false,
        LEAF_NODE => true,
        0 => return Err(format!("node {loc} is neither internal nor leaf")),
        _ => return Err(format!("node {loc} is both internal and leaf")),
    };
    let (nr, max, vs) = (n.nr_entries(), n.max_entries(), n.value_size());
    let want = if leaf {
        leaf_value_size
    } else {
        INTERNAL_VALUE_SIZE
    };
    if vs != want {
        let what = if leaf { "leaf" } else { "internal node" };
        return Err(format!("{what} {loc} has value size {vs}, expected {want}"));
    }
    if (HEADER_SIZE as u64) + (8 + vs as u64) * (max as u64) > BLOCK_SIZE as u64 {
        return Err(format!(
            "node {loc} has max_entries {max}, too many for its block"
        ));
    }
    if max % 3 != 0 {
        return Err(format!(
            "node {loc} has max_entries {max}, not a multiple of 3"
        ));
    }
    if nr > max {
        return Err(format!(
            "node {loc} has nr_entries {nr} > max_entries {max}"
        ));
    }
    let keys = &b[HEADER_SIZE..HEADER_SIZE + 8 * nr];
    let mut prev: Option<u64> = None;
    for (i, k) in keys.chunks_exact(8).enumerate() {
        let k = u64::from_le_bytes(k.try_into().unwrap_or_default());
        if prev.is_some_and(|p| p >= k) {
            return Err(format!(
                "node {loc} has keys out of order at entry {i}: {} then {k}",
                prev.unwrap_or_default()
            ));
        }
        prev = Some(k);
    }
    Ok(Head {
        leaf,
        nr,
        max,
        value_size: vs,
    })
}

/// Key `i` of a node.
#[inline]
pub fn key(b: &Block, i: usize) -> u64 {
    le64(b, HEADER_SIZE + 8 * i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdata::btree::node::{max_entries, NodeMut};
    use pdata::checksum::seal;

    fn leaf(keys: &[u64]) -> Box<Block> {
        let mut b = Box::new([0u8; BLOCK_SIZE]);
        let mut n = NodeMut(&mut b);
        n.init(LEAF_NODE, max_entries(8), 8);
        for (i, &k) in keys.iter().enumerate() {
            n.insert_at(i, k, &k.to_le_bytes());
        }
        pdata::block_manager::put_le64(&mut b[..], BLOCKNR_OFFSET, 7);
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
        pdata::block_manager::put_le64(&mut bad[..], HEADER_SIZE + 8, 9);
        seal(&mut bad[..], SALT_BTREE_NODE);
        assert!(verify_node(7, &bad, 8)
            .unwrap_err()
            .contains("out of order"));
        bad[100] ^= 1;
        assert!(verify_node(7, &bad, 8).unwrap_err().contains("checksum"));
    }
}
