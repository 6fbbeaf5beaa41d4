//! Digest: the kernel's background worker folds the oldest archived
//! writeset into the era array, in small steps (look the writeset up,
//! transcribe 100 bits at a time, remove it from the tree), each of which
//! may be committed. Redoing a writeset's transcription is harmless, so
//! a digest cut short (abort, crash) just starts again.

use super::{EraMetadata, ERA_VALUE_SIZE};
use crate::error::{EraError, Result};
use crate::format::writeset::{WritesetDisk, WritesetValue, WRITESET_DISK_SIZE};
use pdata::bitset::{BITS_PER_WORD, WORD_SIZE};
use pdata::block_manager::le64;
use pdata::live::LiveMetadata;
use pdata::{array, btree};

/// Bits transcribed per step (the kernel's INSERTS_PER_STEP).
pub const BITS_PER_STEP: u64 = 100;

/// The next step of a digest.
#[derive(Debug, Clone, Copy)]
pub(super) enum Digest {
    Transcribe {
        era: u32,
        ws: WritesetDisk,
        nr_bits: u64,
        next_bit: u64,
    },
    Remove {
        era: u32,
    },
}

impl EraMetadata {
    /// One step of the digest. Returns false when there was nothing left to
    /// digest (the writeset tree is empty).
    pub fn digest_step(&mut self) -> Result<bool> {
        self.require_writable()?;
        self.mutate(|md| md.digest_step_inner().map(|(progress, _)| progress))
    }

    /// Folds up to `n` whole writesets, oldest first (finishing one already
    /// under way). Returns how many were folded.
    pub fn digest(&mut self, n: u64) -> Result<u64> {
        self.require_writable()?;
        self.mutate(|md| {
            let mut done = 0;
            while done < n {
                let (progress, removed) = md.digest_step_inner()?;
                if !progress {
                    break;
                }
                done += u64::from(removed);
            }
            Ok(done)
        })
    }

    /// (progress made, a writeset was removed).
    fn digest_step_inner(&mut self) -> Result<(bool, bool)> {
        match self.digest.take() {
            None => {
                let Some((key, v)) = btree::find_lowest(&self.tm, self.sb.writeset_tree_root)?
                else {
                    return Ok((false, false));
                };
                if v.len() != WRITESET_DISK_SIZE {
                    return Err(EraError::Invalid(format!(
                        "writeset tree values of {} bytes, not {WRITESET_DISK_SIZE}",
                        v.len()
                    )));
                }
                let ws = WritesetDisk::unpack(&v);
                let era = u32::try_from(key).map_err(|_| {
                    EraError::Invalid(format!("writeset tree key {key} is not an era"))
                })?;
                self.digest = Some(Digest::Transcribe {
                    era,
                    ws,
                    nr_bits: u64::from(ws.nr_bits.min(self.sb.nr_blocks)),
                    next_bit: 0,
                });
                Ok((true, false))
            }
            Some(Digest::Transcribe {
                era,
                ws,
                nr_bits,
                next_bit,
            }) => {
                let end = (next_bit + BITS_PER_STEP).min(nr_bits);
                self.transcribe(era, ws.root, next_bit, end)?;
                self.digest = Some(if end == nr_bits {
                    Digest::Remove { era }
                } else {
                    Digest::Transcribe {
                        era,
                        ws,
                        nr_bits,
                        next_bit: end,
                    }
                });
                Ok((true, false))
            }
            Some(Digest::Remove { era }) => {
                self.sb.writeset_tree_root = btree::remove(
                    &mut self.tm,
                    self.sb.writeset_tree_root,
                    &[u64::from(era)],
                    &mut WritesetValue,
                )?;
                Ok((true, true))
            }
        }
    }

    /// era_array[b] = era for every bit b in [begin, end) set in the bitset.
    fn transcribe(&mut self, era: u32, ws_root: u64, begin: u64, end: u64) -> Result<()> {
        let value = era.to_le_bytes();
        let mut word = (u64::MAX, 0u64);
        for b in begin..end {
            let i = b / BITS_PER_WORD;
            if word.0 != i {
                let mut w = [0u8; WORD_SIZE];
                array::get(&self.tm, ws_root, WORD_SIZE, i, &mut w)?;
                word = (i, le64(&w, 0));
            }
            if word.1 >> (b % BITS_PER_WORD) & 1 == 1 {
                self.sb.era_array_root = array::set(
                    &mut self.tm,
                    self.sb.era_array_root,
                    ERA_VALUE_SIZE,
                    b,
                    &value,
                )?;
            }
        }
        Ok(())
    }
}
