//! An in-memory device, for tests and crash-image construction.

use super::{out_of_range, BlockDevice};
use crate::{Block, BLOCK_SIZE};
use parking_lot::Mutex;
use std::io;

pub struct MemoryDevice {
    bytes: Mutex<Vec<u8>>,
}

impl MemoryDevice {
    pub fn new(nr_blocks: u64) -> Self {
        MemoryDevice {
            bytes: Mutex::new(vec![0; nr_blocks as usize * BLOCK_SIZE]),
        }
    }

    /// A device holding a copy of `image` (whose length is a multiple of 4096).
    pub fn from_image(image: Vec<u8>) -> Self {
        MemoryDevice {
            bytes: Mutex::new(image),
        }
    }

    /// A copy of the whole device.
    pub fn image(&self) -> Vec<u8> {
        self.bytes.lock().clone()
    }

    fn range(&self, first: u64, count: usize) -> io::Result<std::ops::Range<usize>> {
        let nr_blocks = self.nr_blocks();
        match first.checked_add(count as u64) {
            Some(end) if end <= nr_blocks => {
                Ok(first as usize * BLOCK_SIZE..end as usize * BLOCK_SIZE)
            }
            _ => Err(out_of_range(first, count, nr_blocks)),
        }
    }
}

impl BlockDevice for MemoryDevice {
    fn nr_blocks(&self) -> u64 {
        (self.bytes.lock().len() / BLOCK_SIZE) as u64
    }

    fn grow(&self, nr_blocks: u64) -> io::Result<()> {
        let mut bytes = self.bytes.lock();
        let len = nr_blocks as usize * BLOCK_SIZE;
        if len > bytes.len() {
            bytes.resize(len, 0);
        }
        Ok(())
    }

    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        let r = self.range(first, bufs.len())?;
        let bytes = self.bytes.lock();
        for (buf, src) in bufs.iter_mut().zip(bytes[r].chunks_exact(BLOCK_SIZE)) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }

    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()> {
        let r = self.range(first, bufs.len())?;
        let mut bytes = self.bytes.lock();
        for (buf, dst) in bufs.iter().zip(bytes[r].chunks_exact_mut(BLOCK_SIZE)) {
            dst.copy_from_slice(&buf[..]);
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}
