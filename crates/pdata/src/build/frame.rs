//! [`MetadataBuild`]: start, room checks, finish (see the module above).

use crate::block_manager::Validator;
use crate::io::{BatchWriter, BlockDevice, DEFAULT_BATCH_BLOCKS};
use crate::space_map::builder::MetadataSmLayout;
use crate::space_map::format::{nr_bitmaps, SmRoot, MAX_METADATA_BLOCKS};
use crate::{Block, Error, BLOCK_SIZE};
use std::sync::Arc;

/// Where every client (thin, cache, era) keeps its superblock.
pub const SUPERBLOCK_LOCATION: u64 = 0;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Pdata(#[from] Error),
    /// The device has `available` blocks; `needed_blocks` would hold it all.
    #[error("the output is too small for this metadata: {needed_blocks} blocks needed, {available} available")]
    TooSmall { needed_blocks: u64, available: u64 },
    /// More than the metadata space map can describe.
    #[error("the output is too small for this metadata: {needed_blocks} blocks needed, more than a metadata device can hold ({MAX_METADATA_BLOCKS} blocks)")]
    TooLarge { needed_blocks: u64 },
}

/// A metadata device being built, from `start` to `finish`.
pub struct MetadataBuild {
    w: BatchWriter,
    msm: MetadataSmLayout,
}

impl MetadataBuild {
    /// Zeroes block 0 and reserves the metadata space map of a device of
    /// `dev`'s size (at most [`MAX_METADATA_BLOCKS`]: the kernel uses no
    /// more).
    pub fn start(dev: Arc<dyn BlockDevice>) -> Result<Self, Error> {
        let nr_blocks = dev.nr_blocks().min(MAX_METADATA_BLOCKS);
        if nr_blocks > SUPERBLOCK_LOCATION {
            dev.write_block(SUPERBLOCK_LOCATION, &[0u8; BLOCK_SIZE])
                .map_err(|source| Error::Io {
                    op: "writing",
                    block: SUPERBLOCK_LOCATION,
                    source,
                })?;
        }
        let mut w = BatchWriter::new(
            dev,
            SUPERBLOCK_LOCATION + 1,
            nr_blocks,
            DEFAULT_BATCH_BLOCKS,
        );
        let msm = MetadataSmLayout::reserve(&mut w, nr_blocks)?;
        Ok(MetadataBuild { w, msm })
    }

    /// The writer the client's structures go through.
    pub fn writer(&mut self) -> &mut BatchWriter {
        &mut self.w
    }

    /// Metadata blocks the device offers (its size, at most the limit).
    pub fn nr_blocks(&self) -> u64 {
        self.msm.nr_blocks
    }

    /// Fails with the size needed unless what was handed out so far and
    /// `more` blocks fit: lets a client count a large structure instead
    /// of writing it when it cannot fit anyway.
    pub fn ensure_room(&self, more: u64) -> Result<(), BuildError> {
        let end = self.w.next_location() + more;
        if self.w.overflowed() || end > self.w.limit() {
            return Err(too_small(end, self.w.limit()));
        }
        Ok(())
    }

    /// Writes the last batch and the metadata space map, flushes, then
    /// writes the superblock that `superblock` packs for the map's root
    /// (sealed by `validator`) and flushes again.
    pub fn finish(
        mut self,
        validator: &dyn Validator,
        superblock: impl FnOnce(SmRoot) -> Box<Block>,
    ) -> Result<(), BuildError> {
        self.ensure_room(0)?;
        self.w.flush_batch()?;
        let used = self.w.next_location();
        let metadata_sm_root = self.msm.write(&self.w, used)?;
        let dev = self.w.device().clone();
        dev.flush().map_err(Error::Flush)?;

        let mut block = superblock(metadata_sm_root);
        validator.prepare_for_write(SUPERBLOCK_LOCATION, &mut block)?;
        dev.write_block(SUPERBLOCK_LOCATION, &block)
            .map_err(|source| Error::Io {
                op: "writing",
                block: SUPERBLOCK_LOCATION,
                source,
            })?;
        dev.flush().map_err(Error::Flush)?;
        Ok(())
    }
}

/// The error for a device of `available` blocks on which the layout
/// needed `end` (its metadata space map sized for `available`).
fn too_small(end: u64, available: u64) -> BuildError {
    // A device of n blocks has nr_bitmaps(n) bitmaps: find the smallest
    // n that holds everything else plus its own bitmaps.
    let base = end - nr_bitmaps(available) as u64;
    let mut n = base + 1;
    while base + nr_bitmaps(n) as u64 > n {
        n = base + nr_bitmaps(n) as u64;
    }
    if n > MAX_METADATA_BLOCKS {
        BuildError::TooLarge { needed_blocks: n }
    } else {
        BuildError::TooSmall {
            needed_blocks: n,
            available,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_manager::BlockManager;
    use crate::btree::node::NODE_VALIDATOR;
    use crate::btree::TreeBuilder;
    use crate::checksum::{seal, verify, SALT_BTREE_NODE};
    use crate::io::MemoryDevice;
    use crate::space_map::format::{unpack_metadata_index, INDEX_VALIDATOR};

    /// A stand-in superblock: block number at 8, sealed.
    struct Sb;
    impl Validator for Sb {
        fn name(&self) -> &'static str {
            "test superblock"
        }
        fn check(&self, _: u64, b: &Block) -> crate::Result<()> {
            assert!(verify(b, SALT_BTREE_NODE));
            Ok(())
        }
        fn prepare_for_write(&self, loc: u64, b: &mut Block) -> crate::Result<()> {
            crate::block_manager::put_le64(b, 8, loc);
            seal(b, SALT_BTREE_NODE);
            Ok(())
        }
    }

    fn build(dev: Arc<dyn BlockDevice>, entries: u64) -> Result<SmRoot, BuildError> {
        let mut b = MetadataBuild::start(dev)?;
        let mut t = TreeBuilder::new(8);
        for k in 0..entries {
            t.push_u64(b.writer(), k, k)?;
        }
        let root = t.finish(b.writer())?;
        let mut got = None;
        b.finish(&Sb, |sm| {
            got = Some(sm);
            let mut blk = crate::block_manager::new_block_buffer();
            crate::block_manager::put_le64(&mut blk[..], 16, root);
            blk
        })?;
        Ok(got.unwrap())
    }

    #[test]
    fn superblock_last_and_the_space_map_of_what_was_written() {
        let mem = Arc::new(MemoryDevice::new(64));
        mem.write_block(0, &[7u8; BLOCK_SIZE]).unwrap();
        let sm = build(mem.clone(), 1000).unwrap();
        // Index, overflow root, one bitmap, then the tree's 5 nodes
        // (four leaves and their parent).
        assert_eq!(
            (sm.nr_blocks, sm.bitmap_root, sm.ref_count_root),
            (64, 1, 2)
        );
        assert_eq!(sm.nr_allocated, 9);
        let bm = BlockManager::new(mem, 16, false);
        let sb = bm.read_lock(0, &Sb).unwrap();
        let root = crate::block_manager::le64(&sb[..], 16);
        assert_eq!(root, 8);
        assert!(bm.read_lock(root, &NODE_VALIDATOR).is_ok());
        let index = bm.read_lock(1, &INDEX_VALIDATOR).unwrap();
        assert_eq!(unpack_metadata_index(&index, 1)[0].nr_free, 16320 - 9);
    }

    #[test]
    fn a_small_device_gets_the_size_needed() {
        let mem = Arc::new(MemoryDevice::new(5));
        match build(mem.clone(), 1000) {
            Err(BuildError::TooSmall {
                needed_blocks: 9,
                available: 5,
            }) => {}
            r => panic!("{r:?}"),
        }
        // Nothing but the zeroed block 0 and what fits.
        let mut b = [1u8; BLOCK_SIZE];
        mem.read_block(0, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        assert!(matches!(
            too_small(MAX_METADATA_BLOCKS, 10),
            BuildError::TooLarge { .. }
        ));
    }
}
