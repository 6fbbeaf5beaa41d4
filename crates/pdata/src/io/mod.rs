//! Block I/O: devices addressed in 4096-byte metadata blocks.
//!
//! Everything above this layer sees a device only through [`BlockDevice`], so
//! fault-injecting and recording devices can wrap any of them.

mod batch;
mod batch_read;
mod file;
mod flakey;
mod memory;
mod open;
mod recording;

pub use batch::{BatchWriter, DEFAULT_BATCH_BLOCKS};
pub use batch_read::{read_sorted, will_need_sorted};
pub use file::{write_all_vectored_at, FileDevice};
pub use flakey::{
    Fault, FlakeyDevice, Injection, InjectionHook, IoCounts, IoKind, IoKinds, Rule, Trigger,
};
pub use memory::MemoryDevice;
pub use open::{check_file_or_block_device, same_file};
pub use recording::{
    apply_sectors, crash_image, durable_prefix, image_at, in_flight, Event, RecordingDevice,
    SECTORS_PER_BLOCK, SECTOR_SIZE, WHOLE_BLOCK,
};

use crate::Block;
use std::io;

/// A device of 4096-byte blocks. Methods take `&self`: implementations use
/// positioned I/O, so one device can serve several readers at once.
pub trait BlockDevice: Send + Sync {
    /// Number of whole blocks on the device.
    fn nr_blocks(&self) -> u64;

    /// Reads `bufs.len()` consecutive blocks starting at `first`.
    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()>;

    /// Writes `bufs.len()` consecutive blocks starting at `first`.
    /// Success means the device accepted the data, not that it is durable.
    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()>;

    /// Makes every write that completed before the call durable.
    fn flush(&self) -> io::Result<()>;

    /// Grows the device to `nr_blocks` where that is possible (regular
    /// files, memory); devices of fixed size refuse.
    fn grow(&self, nr_blocks: u64) -> io::Result<()> {
        let _ = nr_blocks;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this device cannot be grown",
        ))
    }

    /// A hint that blocks `first..first + count`, just written, may start
    /// going to stable storage now, so that the next `flush` waits less.
    /// Durability still comes only from `flush`.
    fn start_writeback(&self, first: u64, count: u64) {
        let _ = (first, count);
    }

    /// A hint that blocks `first..first + count` will be read soon, so that
    /// their reads can be in flight together rather than one after another.
    fn will_need(&self, first: u64, count: u64) {
        let _ = (first, count);
    }

    /// The first block at or after `from` that may hold anything but zeros
    /// (`nr_blocks` when none is left): a sparse file's holes are skipped.
    /// Only a hint; by default every block may.
    fn next_data(&self, from: u64) -> u64 {
        from
    }

    /// Reads `buf.len() / BLOCK_SIZE` blocks from `first` only if that
    /// needs no wait for the device (they are in the page cache): Ok(false)
    /// when it would wait, and `buf` is then unspecified. Lets a server
    /// answer cached reads on the spot and hand the others to a worker.
    /// By default every read would wait.
    fn read_cached(&self, first: u64, buf: &mut [u8]) -> io::Result<bool> {
        let _ = (first, buf);
        Ok(false)
    }

    fn read_block(&self, loc: u64, buf: &mut Block) -> io::Result<()> {
        self.read_blocks(loc, &mut [buf])
    }

    fn write_block(&self, loc: u64, buf: &Block) -> io::Result<()> {
        self.write_blocks(loc, &[buf])
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for std::sync::Arc<T> {
    fn nr_blocks(&self) -> u64 {
        (**self).nr_blocks()
    }
    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        (**self).read_blocks(first, bufs)
    }
    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()> {
        (**self).write_blocks(first, bufs)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn grow(&self, nr_blocks: u64) -> io::Result<()> {
        (**self).grow(nr_blocks)
    }
    fn start_writeback(&self, first: u64, count: u64) {
        (**self).start_writeback(first, count)
    }
    fn will_need(&self, first: u64, count: u64) {
        (**self).will_need(first, count)
    }
    fn next_data(&self, from: u64) -> u64 {
        (**self).next_data(from)
    }
    fn read_cached(&self, first: u64, buf: &mut [u8]) -> io::Result<bool> {
        (**self).read_cached(first, buf)
    }
}

pub(crate) fn out_of_range(first: u64, count: usize, nr_blocks: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "blocks {}..{} beyond the end of the device ({} blocks)",
            first,
            first + count as u64,
            nr_blocks
        ),
    )
}
