//! Copy-on-write B-trees in the kernel's node format.
//!
//! A tree is named by its root block number. Every change shadows the path
//! from the root down (copy-on-write through the transaction manager) and
//! returns the new root. Multi-level trees map key tuples: the leaves of an
//! upper level hold the roots of the next level's trees.
//!
//! Reference counts follow values through a [`ValueType`]: when a shared
//! leaf is shadowed its values are duplicated (`inc`); when a value is
//! removed or overwritten by a different one it is released (`dec`).

pub mod builder;
pub mod node;

mod delete;
mod insert;
mod lookup;
mod remove;
mod spine;
mod value;
mod walk;

pub use builder::TreeBuilder;
pub use delete::delete_tree;
pub use insert::insert;
pub use lookup::{find_highest, find_lowest, lookup, lookup_ge, lookup_le, lookup_next};
pub use remove::{remove, remove_range};
pub use value::{BlockRefs, NoRefs, ValueType};
pub use walk::{walk, walk_nodes, walk_range};

use crate::tm_ops::TransactionOps;
use crate::Result;
use node::{max_entries, NodeMut, LEAF_NODE, NODE_VALIDATOR};

/// A descent longer than any valid tree: the nodes form a cycle.
fn cycle(loc: u64) -> crate::Error {
    crate::Error::corrupt(loc, "btree node", "tree too deep (a cycle?)")
}

/// Creates an empty tree (one empty leaf) for values of `value_size` bytes.
pub fn empty_tree(tm: &mut (impl TransactionOps + ?Sized), value_size: usize) -> Result<u64> {
    let mut w = tm.new_block(&NODE_VALIDATOR)?;
    NodeMut(&mut w).init(LEAF_NODE, max_entries(value_size), value_size);
    Ok(w.loc())
}
