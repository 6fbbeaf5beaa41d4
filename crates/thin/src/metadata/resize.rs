//! Growing the data and metadata devices, and the metadata snapshot.

use super::ThinMetadata;
use crate::error::{Result, ThinError};
use crate::format::block_time::MAX_DATA_BLOCK;
use crate::format::device_details::DEVICE_DETAILS_SIZE;
use crate::format::superblock::{Superblock, SUPERBLOCK_VALIDATOR};
use crate::value_types::DataRefs;
use pdata::block_manager::BlockRead;
use pdata::btree::{self, NoRefs};
use pdata::live::LiveMetadata;
use pdata::space_map::format::{SmRoot, MAX_METADATA_BLOCKS};

impl ThinMetadata {
    pub fn resize_data(&mut self, nr_blocks: u64) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        if nr_blocks < self.data_sm.nr_blocks() {
            return Err(ThinError::Invalid(format!(
                "cannot shrink the data device from {} to {} blocks",
                self.data_sm.nr_blocks(),
                nr_blocks
            )));
        }
        if nr_blocks > MAX_DATA_BLOCK + 1 {
            return Err(ThinError::Invalid(format!(
                "{nr_blocks} data blocks: block numbers must fit in 40 bits"
            )));
        }
        // Every new bitmap is a metadata block, plus index-tree nodes.
        let new_bitmaps = pdata::space_map::format::nr_bitmaps(nr_blocks)
            - pdata::space_map::format::nr_bitmaps(self.data_sm.nr_blocks());
        let needed = new_bitmaps as u64 + new_bitmaps as u64 / 50 + 64;
        if needed > self.tm.nr_free_metadata_blocks() {
            return Err(ThinError::Invalid(format!(
                "{nr_blocks} data blocks need about {needed} more metadata blocks; {} are free",
                self.tm.nr_free_metadata_blocks()
            )));
        }
        self.mutate(|md| Ok(md.data_sm.extend(&mut md.tm, nr_blocks)?))
    }

    pub fn resize_metadata(&mut self, nr_blocks: u64) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let current = self.tm.nr_metadata_blocks();
        if nr_blocks < current {
            return Err(ThinError::Invalid(format!(
                "cannot shrink the metadata device from {current} to {nr_blocks} blocks"
            )));
        }
        if nr_blocks > MAX_METADATA_BLOCKS {
            return Err(ThinError::Invalid(format!(
                "a metadata device holds at most {MAX_METADATA_BLOCKS} blocks"
            )));
        }
        self.mutate(|md| Ok(md.tm.extend_metadata(nr_blocks)?))
    }

    /// Commits, then keeps a copy of the superblock whose trees stay
    /// readable (`thin_dump -m`) until released.
    pub fn reserve_metadata_snap(&mut self) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        if self.sb.held_root != 0 {
            return Err(ThinError::SnapshotHeld);
        }
        self.commit()?;
        self.mutate(|md| {
            let mut snap = md.sb.clone();
            snap.data_sm_root = SmRoot::default();
            snap.metadata_sm_root = SmRoot::default();
            snap.held_root = 0;
            let mut w = md.tm.new_block(&SUPERBLOCK_VALIDATOR)?;
            w.copy_from_slice(&snap.pack()[..]);
            let loc = w.loc();
            drop(w);
            md.tm.inc(snap.data_mapping_root)?;
            md.tm.inc(snap.device_details_root)?;
            md.sb.held_root = loc;
            Ok(())
        })
    }

    pub fn release_metadata_snap(&mut self) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let held = self.sb.held_root;
        if held == 0 {
            return Err(ThinError::NoSnapshot);
        }
        self.mutate(|md| {
            let snap = {
                let b = md.tm.read_lock(held, &SUPERBLOCK_VALIDATOR)?;
                Superblock::unpack(&b)
            };
            btree::delete_tree(
                &mut md.tm,
                snap.data_mapping_root,
                2,
                &mut DataRefs(&mut md.data_sm),
            )?;
            btree::delete_tree(
                &mut md.tm,
                snap.device_details_root,
                1,
                &mut NoRefs(DEVICE_DETAILS_SIZE),
            )?;
            md.tm.dec(held)?;
            md.sb.held_root = 0;
            Ok(())
        })
    }

    /// The metadata snapshot's superblock, if one is held.
    pub fn metadata_snap(&self) -> Result<Option<Superblock>> {
        if self.sb.held_root == 0 {
            return Ok(None);
        }
        let b = self
            .tm
            .read_lock(self.sb.held_root, &SUPERBLOCK_VALIDATOR)?;
        Ok(Some(Superblock::unpack(&b)))
    }
}
