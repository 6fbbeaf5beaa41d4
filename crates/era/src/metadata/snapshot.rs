//! The metadata snapshot: a copy of the superblock, at its own block, that
//! holds a reference on the writeset tree and the era array it names, so
//! userland can read a stable state while the target runs. One at a time.

use super::EraMetadata;
use crate::error::{EraError, Result};
use crate::format::superblock::{Superblock, SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR};
use crate::format::writeset::WritesetValue;
use pdata::block_manager::BlockRead;
use pdata::live::LiveMetadata;
use pdata::{array, btree};

impl EraMetadata {
    /// The kernel's take: rollover and commit, then a copy of the committed
    /// superblock (block 0 is counted once more, then shadowed) plus one
    /// reference each on its writeset tree and era array. The snapshot is
    /// durable at the next commit. Returns its block.
    pub fn take_metadata_snap(&mut self) -> Result<u64> {
        self.require_writable()?;
        if self.sb.metadata_snap != 0 {
            return Err(EraError::SnapshotExists);
        }
        self.rollover()?;
        self.commit()?;
        self.mutate(|md| {
            md.tm.inc(SUPERBLOCK_LOCATION)?;
            let (copy, _) = md.tm.shadow(SUPERBLOCK_LOCATION, &SUPERBLOCK_VALIDATOR)?;
            let loc = copy.loc();
            drop(copy);
            // The commit's cached block 0 must not stay under a shadow's name.
            md.tm.bm().forget(SUPERBLOCK_LOCATION);
            md.tm.inc(md.sb.writeset_tree_root)?;
            md.tm.inc(md.sb.era_array_root)?;
            md.sb.metadata_snap = loc;
            Ok(loc)
        })
    }

    /// The kernel's drop: the snapshot's references on its writeset tree and
    /// era array are released, then the copy itself.
    pub fn drop_metadata_snap(&mut self) -> Result<()> {
        self.require_writable()?;
        let loc = self.metadata_snap().ok_or(EraError::NoSnapshot)?;
        let snap = self.read_snapshot(loc)?;
        self.mutate(|md| {
            md.sb.metadata_snap = 0;
            btree::delete_tree(&mut md.tm, snap.writeset_tree_root, 1, &mut WritesetValue)?;
            array::delete(&mut md.tm, snap.era_array_root)?;
            md.tm.dec(loc)?;
            Ok(())
        })
    }

    /// The snapshot's superblock copy at `loc`.
    pub(super) fn read_snapshot(&self, loc: u64) -> Result<Superblock> {
        let b = self.tm.read_lock(loc, &SUPERBLOCK_VALIDATOR)?;
        Ok(Superblock::unpack(&b))
    }
}
