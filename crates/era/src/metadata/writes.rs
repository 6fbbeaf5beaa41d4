//! Marking blocks written, rollover (checkpoint), resize.

use super::{check_nr_blocks, EraMetadata, ERA_VALUE_SIZE};
use crate::error::{EraError, Result};
use crate::format::writeset::{WritesetDisk, WritesetValue, NO_WRITESET};
use pdata::bitset::{self, BITS_PER_WORD, WORD_SIZE};
use pdata::block_manager::le64;
use pdata::live::LiveMetadata;
use pdata::{array, btree};

impl EraMetadata {
    /// Marks `block` written in the current era.
    pub fn write(&mut self, block: u64) -> Result<()> {
        self.write_range(block, block + 1)
    }

    /// Marks the blocks `[begin, end)` written in the current era (the bits
    /// in the current writeset).
    pub fn write_range(&mut self, begin: u64, end: u64) -> Result<()> {
        self.require_writable()?;
        let ws = self.current_writeset().ok_or(EraError::NoWriteset)?;
        let limit = u64::from(self.sb.nr_blocks.min(ws.nr_bits));
        if begin >= end {
            return Ok(());
        }
        if end > limit {
            return Err(EraError::BlockOutOfRange {
                block: end - 1,
                nr_blocks: self.sb.nr_blocks,
            });
        }
        self.mutate(|md| {
            // A word at a time: one lookup and at most one store per word.
            let mut root = ws.root;
            let mut b = begin;
            while b < end {
                let i = b / BITS_PER_WORD;
                let hi = ((i + 1) * BITS_PER_WORD).min(end);
                let (lo_bit, hi_bit) = (b % BITS_PER_WORD, hi - i * BITS_PER_WORD);
                let mask = if hi_bit - lo_bit == BITS_PER_WORD {
                    !0
                } else {
                    ((1u64 << (hi_bit - lo_bit)) - 1) << lo_bit
                };
                let mut w = [0u8; WORD_SIZE];
                array::get(&md.tm, root, WORD_SIZE, i, &mut w)?;
                let old = le64(&w, 0);
                if old | mask != old {
                    root = array::set(&mut md.tm, root, WORD_SIZE, i, &(old | mask).to_le_bytes())?;
                }
                b = hi;
            }
            md.sb.current_writeset.root = root;
            Ok(())
        })
    }

    /// Whether `block` is marked in the current writeset.
    pub fn written_in_current_era(&self, block: u64) -> Result<bool> {
        self.tm.check_alive()?;
        let ws = self.current_writeset().ok_or(EraError::NoWriteset)?;
        if block >= u64::from(ws.nr_bits) {
            return Err(EraError::BlockOutOfRange {
                block,
                nr_blocks: self.sb.nr_blocks,
            });
        }
        Ok(bitset::test(&self.tm, ws.root, block)?)
    }

    /// The kernel's era rollover: the current writeset (if any) is archived
    /// in the writeset tree under the current era, an empty one of
    /// `nr_blocks` bits replaces it, and the era advances.
    pub fn rollover(&mut self) -> Result<()> {
        self.require_writable()?;
        let next = self
            .sb
            .current_era
            .checked_add(1)
            .ok_or(EraError::EraOverflow)?;
        self.mutate(|md| {
            let ws = md.sb.current_writeset;
            if ws.root != NO_WRITESET {
                let key = u64::from(md.sb.current_era);
                let (root, _) = btree::insert(
                    &mut md.tm,
                    md.sb.writeset_tree_root,
                    &[key],
                    &ws.to_bytes(),
                    &mut WritesetValue,
                )?;
                md.sb.writeset_tree_root = root;
                md.sb.current_writeset.root = NO_WRITESET;
            }
            let nr_bits = md.sb.nr_blocks;
            let root = bitset::new(&mut md.tm, u64::from(nr_bits), false)?;
            md.sb.current_writeset = WritesetDisk { nr_bits, root };
            md.sb.current_era = next;
            Ok(())
        })
    }

    /// The `checkpoint` message: a rollover, as in the kernel.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.rollover()
    }

    /// Resumes the target with `nr_blocks` origin blocks, as the kernel's
    /// preresume: the era array is resized (new entries era 0, "never
    /// written"), then a rollover archives the current writeset (with its
    /// old size) and starts one of the new size. Archived writesets keep
    /// their size; digests and queries ignore their bits past the end.
    pub fn resize(&mut self, nr_blocks: u32) -> Result<()> {
        self.require_writable()?;
        check_nr_blocks(u64::from(nr_blocks))?;
        let old = self.sb.nr_blocks;
        if nr_blocks != old {
            self.mutate(|md| -> Result<()> {
                md.sb.era_array_root = array::resize(
                    &mut md.tm,
                    md.sb.era_array_root,
                    ERA_VALUE_SIZE,
                    u64::from(old),
                    u64::from(nr_blocks),
                    &[0; ERA_VALUE_SIZE],
                )?;
                md.sb.nr_blocks = nr_blocks;
                // The digest in progress may point past the new end: start over.
                md.digest = None;
                Ok(())
            })?;
        }
        self.rollover()
    }
}
