//! Reading damaged metadata: validated node reads through a read-only block
//! cache, and the metadata space map's counts where they can be read.

use pdata::block_manager::{BlockManager, BlockRead, ReadRef, Validator};
use pdata::btree::node::{Node, NODE_VALIDATOR};
use pdata::io::BlockDevice;
use pdata::space_map::format::SmRoot;
use pdata::transaction_manager::TransactionManager;
use std::sync::Arc;

/// Blocks the reader keeps cached (4 MiB): enough for the upper levels of
/// every tree; leaves are read again from the device when evicted.
const CACHE_BLOCKS: usize = 1024;

pub(crate) struct Reader {
    source: Source,
    nr_blocks: u64,
}

enum Source {
    /// The metadata space map could be opened.
    WithSpaceMap(Box<TransactionManager>),
    Plain(BlockManager),
}

impl Reader {
    /// A reader over `dev`; with `sm_root`, the metadata space map it names
    /// is opened too. Gives the reason when that fails.
    pub fn new(dev: Arc<dyn BlockDevice>, sm_root: Option<&SmRoot>) -> (Self, Option<String>) {
        let nr_blocks = dev.nr_blocks();
        let bm = BlockManager::new(dev.clone(), CACHE_BLOCKS, false);
        let (source, failure) = match sm_root {
            None => (Source::Plain(bm), None),
            Some(root) => match TransactionManager::open(bm, root) {
                Ok(tm) => (Source::WithSpaceMap(Box::new(tm)), None),
                Err(e) => (
                    Source::Plain(BlockManager::new(dev, CACHE_BLOCKS, false)),
                    Some(e.to_string()),
                ),
            },
        };
        (Reader { source, nr_blocks }, failure)
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// The metadata space map's count of `b`, when it can be read.
    pub fn sm_count(&self, b: u64) -> Option<u32> {
        match &self.source {
            Source::WithSpaceMap(tm) => tm.ref_count(b).ok(),
            Source::Plain(_) => None,
        }
    }

    /// A B-tree node that validates (checksum, location, shape), with keys
    /// strictly increasing and leaves holding values of `leaf_value_size`.
    pub fn node(&self, loc: u64, leaf_value_size: usize) -> Option<ReadRef> {
        let b = self.read_lock(loc, &NODE_VALIDATOR).ok()?;
        let n = Node(&b);
        if n.check_key_order().is_err() || (n.is_leaf() && n.value_size() != leaf_value_size) {
            return None;
        }
        Some(b)
    }
}

impl BlockRead for Reader {
    fn read_lock(&self, loc: u64, v: &'static dyn Validator) -> pdata::Result<ReadRef> {
        match &self.source {
            Source::WithSpaceMap(tm) => tm.read_lock(loc, v),
            Source::Plain(bm) => bm.read_lock(loc, v),
        }
    }
}
