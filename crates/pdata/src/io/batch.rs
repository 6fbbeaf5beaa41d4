//! Sequential writing of new blocks in large batches, for builders of whole
//! structures (bulk B-trees, space maps): locations are handed out in
//! increasing order and each full batch goes to the device in one vectored
//! write.
//!
//! Past the end of the device (`limit`) nothing is written: locations are
//! still handed out, with a scratch block to fill, so that a caller can
//! finish its pass and report how many blocks it would have needed.

use super::BlockDevice;
use crate::{Block, Error, Result, BLOCK_SIZE};
use std::sync::Arc;

/// Default batch: 1 MiB.
pub const DEFAULT_BATCH_BLOCKS: usize = 256;

pub struct BatchWriter {
    dev: Arc<dyn BlockDevice>,
    /// Location of the next block handed out.
    next: u64,
    /// Blocks at or past this location are not written.
    limit: u64,
    /// Location of `batch[0]`; `batch[..pending]` are `batch_first..next`.
    batch_first: u64,
    pending: usize,
    batch: Vec<Block>,
    /// Handed out past `limit`.
    scratch: Box<Block>,
}

impl BatchWriter {
    /// Hands out locations from `first`; writes only below `limit`.
    pub fn new(dev: Arc<dyn BlockDevice>, first: u64, limit: u64, batch_blocks: usize) -> Self {
        let batch_blocks = batch_blocks.max(1);
        BatchWriter {
            dev,
            next: first,
            limit,
            batch_first: first,
            pending: 0,
            batch: vec![[0u8; BLOCK_SIZE]; batch_blocks],
            scratch: Box::new([0u8; BLOCK_SIZE]),
        }
    }

    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// The next location to be handed out: every block below it is in use.
    pub fn next_location(&self) -> u64 {
        self.next
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// True once a location at or past `limit` was handed out.
    pub fn overflowed(&self) -> bool {
        self.next > self.limit
    }

    /// A new zeroed block at the next location; the caller fills it
    /// completely (checksum included) before the next call.
    #[inline]
    pub fn alloc(&mut self) -> Result<(u64, &mut Block)> {
        if self.pending == self.batch.len() {
            self.flush_batch()?;
        }
        let loc = self.next;
        self.next += 1;
        let block = if loc < self.limit {
            self.pending += 1;
            &mut self.batch[self.pending - 1]
        } else {
            &mut *self.scratch
        };
        block.fill(0);
        Ok((loc, block))
    }

    /// Skips `n` locations, to be written later with [`Self::write_at`];
    /// returns the first.
    pub fn reserve(&mut self, n: u64) -> Result<u64> {
        self.flush_batch()?;
        let first = self.next;
        self.next += n;
        self.batch_first = self.next;
        Ok(first)
    }

    /// Writes consecutive blocks at `loc` (reserved earlier), except those
    /// at or past `limit`.
    pub fn write_at(&self, loc: u64, blocks: &[Block]) -> Result<()> {
        let n = (self.limit.saturating_sub(loc) as usize).min(blocks.len());
        if n == 0 {
            return Ok(());
        }
        let bufs: Vec<&Block> = blocks[..n].iter().collect();
        self.dev
            .write_blocks(loc, &bufs)
            .map_err(|source| Error::Io {
                op: "writing",
                block: loc,
                source,
            })
    }

    /// Writes the blocks handed out so far.
    pub fn flush_batch(&mut self) -> Result<()> {
        if self.pending > 0 {
            let first = self.batch_first;
            let bufs: Vec<&Block> = self.batch[..self.pending].iter().collect();
            self.dev
                .write_blocks(first, &bufs)
                .map_err(|source| Error::Io {
                    op: "writing",
                    block: first,
                    source,
                })?;
            self.dev.start_writeback(first, self.pending as u64);
        }
        self.pending = 0;
        self.batch_first = self.next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemoryDevice;

    #[test]
    fn sequential_batches_and_reservations() {
        let dev = Arc::new(MemoryDevice::new(10));
        let mut w = BatchWriter::new(dev.clone(), 1, 8, 3);
        let r = w.reserve(2).unwrap();
        assert_eq!(r, 1);
        for i in 0..6u8 {
            let (loc, b) = w.alloc().unwrap();
            assert_eq!(loc, 3 + i as u64);
            b[0] = i + 1;
        }
        w.flush_batch().unwrap();
        w.write_at(r, &[[9u8; BLOCK_SIZE], [8u8; BLOCK_SIZE]])
            .unwrap();
        assert!(w.overflowed());
        assert_eq!(w.next_location(), 9);
        let mut b = [0u8; BLOCK_SIZE];
        let firsts: Vec<u8> = (0..10)
            .map(|i| {
                dev.read_block(i, &mut b).unwrap();
                b[0]
            })
            .collect();
        // Block 8 is past the limit: never written.
        assert_eq!(firsts, vec![0, 9, 8, 1, 2, 3, 4, 5, 0, 0]);
    }
}
