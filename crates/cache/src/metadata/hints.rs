//! Policy hints and discard bits.
//!
//! Hints live in core once touched and are written as the kernel writes
//! them: the whole hint array deleted and rebuilt, at the next commit.

use super::CacheMetadata;
use crate::error::{CacheError, Result};
use crate::format::superblock::{Policy, HINT_SIZE};
use pdata::block_manager::le32;
use pdata::live::LiveMetadata;
use pdata::{array, bitset};

const HINT_BYTES: usize = HINT_SIZE as usize;

impl CacheMetadata {
    /// The superblock names a hint array of a size the kernel reads.
    pub(super) fn has_hint_array(&self) -> bool {
        self.sb.hint_root != 0 && self.sb.policy_hint_size != 0
    }

    /// The stored hints if they can be trusted and cover `len` blocks (the
    /// kernel stops using hints whose array is too short).
    fn disk_hints(&self, len: u32) -> Result<Option<Vec<u32>>> {
        if !self.trusted || !self.has_hint_array() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(len as usize);
        array::walk(&self.tm, self.sb.hint_root, HINT_BYTES, |_, v| {
            out.push(le32(v, 0));
            Ok(())
        })?;
        if out.len() < len as usize {
            return Ok(None);
        }
        out.truncate(len as usize);
        Ok(Some(out))
    }

    /// Every block's hint, or None when there are none to trust: no hint
    /// array, or the last shutdown was not clean (as the kernel decides).
    /// The caller compares `policy()` with its own policy.
    pub fn hints(&self) -> Result<Option<Vec<u32>>> {
        self.tm.check_alive()?;
        match &self.hints {
            Some(h) => Ok(Some(h.clone())),
            None => self.disk_hints(self.sb.cache_blocks),
        }
    }

    /// The hints as the kernel loads them for `policy`: only when the
    /// stored policy has the same name, major version and hint size.
    pub fn hints_for(&self, policy: &Policy) -> Result<Option<Vec<u32>>> {
        let stored = self.sb.policy();
        if stored.name != policy.name
            || stored.version[0] != policy.version[0]
            || stored.hint_size != policy.hint_size
        {
            return Ok(None);
        }
        self.hints()
    }

    /// The hint of one block (None as for `hints`).
    pub fn hint(&self, cblock: u64) -> Result<Option<u32>> {
        self.tm.check_alive()?;
        let c = self.check_cblock(cblock)? as usize;
        if let Some(h) = &self.hints {
            return Ok(Some(h[c]));
        }
        Ok(self.disk_hints(self.sb.cache_blocks)?.map(|h| h[c]))
    }

    /// The in-core hint table: the trusted stored hints, or zeros.
    fn hint_table(&mut self) -> Result<&mut Vec<u32>> {
        if self.hints.is_none() {
            let n = self.sb.cache_blocks;
            let h = self.disk_hints(n)?.unwrap_or_else(|| vec![0; n as usize]);
            self.hints = Some(h);
        }
        Ok(self.hints.get_or_insert_with(Vec::new))
    }

    /// Sets one block's hint (written with all the others at the next commit).
    pub fn set_hint(&mut self, cblock: u64, value: u32) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        if self.sb.policy_hint_size == 0 {
            return Err(CacheError::NoHints);
        }
        let c = self.check_cblock(cblock)? as usize;
        self.hint_table()?[c] = value;
        self.hints_dirty = true;
        Ok(())
    }

    /// Takes the policy and all its hints (one per cache block), as the
    /// kernel's `dm_cache_write_hints`. A policy without hints changes only
    /// the policy's name and version.
    pub fn save_hints(&mut self, policy: &Policy, hints: &[u32]) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        policy.check().map_err(CacheError::Invalid)?;
        let name = policy.name_bytes().map_err(CacheError::Invalid)?;
        if policy.name.is_empty() {
            return Err(CacheError::Invalid("the policy has no name".into()));
        }
        self.sb.policy_name = name;
        self.sb.policy_version = policy.version;
        if policy.hint_size == 0 {
            return Ok(());
        }
        if hints.len() != self.sb.cache_blocks as usize {
            return Err(CacheError::Invalid(format!(
                "{} hints for {} cache blocks",
                hints.len(),
                self.sb.cache_blocks
            )));
        }
        self.sb.policy_hint_size = policy.hint_size;
        self.hints = Some(hints.to_vec());
        self.hints_dirty = true;
        Ok(())
    }

    /// Keeps the hints in step with a resize: the array is rebuilt at the
    /// next commit with the new length (new blocks hint 0).
    pub(super) fn resize_hints(&mut self, old: u32, new: u32) -> Result<()> {
        if self.hints.is_none() {
            if !self.has_hint_array() {
                return Ok(());
            }
            let h = self
                .disk_hints(old)?
                .unwrap_or_else(|| vec![0; old as usize]);
            self.hints = Some(h);
        }
        if let Some(h) = self.hints.as_mut() {
            h.resize(new as usize, 0);
        }
        self.hints_dirty = true;
        Ok(())
    }

    /// Deletes the hint array and builds it again from the in-core hints.
    pub(super) fn write_hints(&mut self) -> Result<()> {
        let Some(h) = self.hints.take() else {
            return Ok(());
        };
        let r = self.rebuild_hint_array(&h);
        self.hints = Some(h);
        r?;
        self.hints_dirty = false;
        Ok(())
    }

    fn rebuild_hint_array(&mut self, h: &[u32]) -> Result<()> {
        if self.sb.hint_root != 0 {
            array::delete(&mut self.tm, self.sb.hint_root)?;
            self.sb.hint_root = 0;
        }
        self.sb.hint_root = array::new_with(&mut self.tm, HINT_BYTES, h.len() as u64, |i, v| {
            v.copy_from_slice(&h[i as usize].to_le_bytes())
        })?;
        Ok(())
    }

    /// Discard block size in sectors, and number of discard blocks.
    pub fn discard_geometry(&self) -> (u64, u64) {
        (self.sb.discard_block_size, self.sb.discard_nr_blocks)
    }

    /// Resizes the discard bitset to `nr_blocks` blocks of `block_sectors`
    /// sectors each (new blocks not discarded; old bits kept, as the kernel).
    pub fn discard_size(&mut self, block_sectors: u64, nr_blocks: u64) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let old = self.sb.discard_nr_blocks;
        self.mutate(|md| {
            md.sb.discard_root =
                bitset::resize(&mut md.tm, md.sb.discard_root, old, nr_blocks, false)?;
            md.sb.discard_block_size = block_sectors;
            md.sb.discard_nr_blocks = nr_blocks;
            md.discard_touched.retain(|&b| b < nr_blocks);
            Ok(())
        })
    }

    fn check_dblock(&self, block: u64) -> Result<()> {
        if block >= self.sb.discard_nr_blocks {
            return Err(CacheError::DiscardOutOfRange {
                block,
                nr_blocks: self.sb.discard_nr_blocks,
            });
        }
        Ok(())
    }

    /// Marks a discard block discarded or not.
    pub fn set_discard(&mut self, block: u64, discarded: bool) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        self.check_dblock(block)?;
        self.mutate(|md| {
            md.sb.discard_root = bitset::set(&mut md.tm, md.sb.discard_root, block, discarded)?;
            md.discard_touched.insert(block);
            Ok(())
        })
    }

    /// Whether a discard block is discarded (never, after an unclean
    /// shutdown, unless this session said so).
    pub fn discarded(&self, block: u64) -> Result<bool> {
        self.tm.check_alive()?;
        self.check_dblock(block)?;
        if !self.trusted && !self.discard_touched.contains(&block) {
            return Ok(false);
        }
        Ok(bitset::test(&self.tm, self.sb.discard_root, block)?)
    }

    /// Every discard block's state, as the kernel would load them.
    pub fn discards(&self) -> Result<Vec<bool>> {
        self.tm.check_alive()?;
        let mut out = Vec::with_capacity(self.sb.discard_nr_blocks as usize);
        bitset::walk(
            &self.tm,
            self.sb.discard_root,
            self.sb.discard_nr_blocks,
            |b, v| {
                out.push(v && (self.trusted || self.discard_touched.contains(&b)));
                Ok(())
            },
        )?;
        Ok(out)
    }
}
