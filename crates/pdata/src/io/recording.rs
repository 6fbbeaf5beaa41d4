//! A device that logs every write (block, bytes), flush and growth that
//! reaches the device below it, from which any crash image can be built.
//!
//! The crash model: a write is durable once a flush that started after it
//! completed. A power failure keeps every durable write, plus any subset of
//! the writes issued since the last completed flush, each possibly torn
//! (only some of its 512-byte sectors on disk), landed in any order.
//! [`crash_image`] builds such an image from the log.

use super::BlockDevice;
use crate::{Block, BLOCK_SIZE};
use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The unit a disk writes atomically.
pub const SECTOR_SIZE: usize = 512;
/// Sectors in a block: a sector mask is a `u8`, bit i for sector i.
pub const SECTORS_PER_BLOCK: usize = BLOCK_SIZE / SECTOR_SIZE;
/// Every sector of a block.
pub const WHOLE_BLOCK: u8 = 0xff;

/// One I/O that reached the device below, in the order issued.
#[derive(Clone)]
pub enum Event {
    /// Consecutive blocks from `first`, as written.
    Write { first: u64, blocks: Vec<Arc<Block>> },
    /// A completed flush: every earlier write is durable.
    Flush,
    /// The device grew to this many blocks (taken to be durable at once).
    Grow(u64),
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Write { first, blocks } => {
                write!(f, "Write({first}..{})", first + blocks.len() as u64)
            }
            Event::Flush => write!(f, "Flush"),
            Event::Grow(n) => write!(f, "Grow({n})"),
        }
    }
}

/// A device that records what it passes to `inner`. Failed I/O (an error
/// from `inner`) is not recorded; reads are passed on unrecorded.
pub struct RecordingDevice {
    inner: Arc<dyn BlockDevice>,
    log: Mutex<Vec<Event>>,
    /// A clock shared with other devices, and each event's time on it (in
    /// the same order as `log`, kept under its lock).
    clock: Option<(Arc<AtomicU64>, Mutex<Vec<u64>>)>,
}

impl RecordingDevice {
    pub fn new(inner: Arc<dyn BlockDevice>) -> Self {
        RecordingDevice {
            inner,
            log: Mutex::new(Vec::new()),
            clock: None,
        }
    }

    /// A device whose events are also stamped on `clock`, which other
    /// devices share: the order between their events is then known (a
    /// pool's metadata and data devices). The clock's value is the number
    /// of events all of them have logged.
    pub fn with_clock(inner: Arc<dyn BlockDevice>, clock: Arc<AtomicU64>) -> Self {
        RecordingDevice {
            inner,
            log: Mutex::new(Vec::new()),
            clock: Some((clock, Mutex::new(Vec::new()))),
        }
    }

    /// Each event's time on the shared clock (empty without one).
    pub fn ticks(&self) -> Vec<u64> {
        let _log = self.log.lock();
        self.clock
            .as_ref()
            .map_or_else(Vec::new, |(_, ticks)| ticks.lock().clone())
    }

    /// Logs `event`; the caller holds the log's lock (`log`).
    fn push(&self, log: &mut Vec<Event>, event: Event) {
        if let Some((clock, ticks)) = &self.clock {
            ticks.lock().push(clock.fetch_add(1, Ordering::SeqCst));
        }
        log.push(event);
    }

    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// Number of events so far: a position in the log.
    pub fn len(&self) -> usize {
        self.log.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.lock().is_empty()
    }

    /// A copy of the log (the block data is shared, not copied).
    pub fn events(&self) -> Vec<Event> {
        self.log.lock().clone()
    }

    /// Empties the log (and its ticks) and returns what it held.
    pub fn take(&self) -> Vec<Event> {
        let mut log = self.log.lock();
        if let Some((_, ticks)) = &self.clock {
            ticks.lock().clear();
        }
        std::mem::take(&mut *log)
    }
}

impl BlockDevice for RecordingDevice {
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }

    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        self.inner.read_blocks(first, bufs)
    }

    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()> {
        // Hold the log across the write so the log order is the device's order.
        let mut log = self.log.lock();
        self.inner.write_blocks(first, bufs)?;
        self.push(
            &mut log,
            Event::Write {
                first,
                blocks: bufs.iter().map(|b| Arc::new(**b)).collect(),
            },
        );
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.flush()?;
        self.push(&mut log, Event::Flush);
        Ok(())
    }

    fn grow(&self, nr_blocks: u64) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.grow(nr_blocks)?;
        self.push(&mut log, Event::Grow(nr_blocks));
        Ok(())
    }
}

/// Position just past the last flush among `events[..upto]` (0 if none):
/// everything written before it is durable at `upto`.
pub fn durable_prefix(events: &[Event], upto: usize) -> usize {
    events[..upto]
        .iter()
        .rposition(|e| matches!(e, Event::Flush))
        .map_or(0, |i| i + 1)
}

/// The writes in flight at `upto` (issued after the last completed flush),
/// one per block: (event index, block offset within the event, block number).
pub fn in_flight(events: &[Event], upto: usize) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    for (i, e) in events
        .iter()
        .enumerate()
        .take(upto)
        .skip(durable_prefix(events, upto))
    {
        if let Event::Write { first, blocks } = e {
            for j in 0..blocks.len() {
                out.push((i, j, first + j as u64));
            }
        }
    }
    out
}

/// Copies the sectors of `src` selected by `mask` into `dst`.
pub fn apply_sectors(dst: &mut [u8], src: &Block, mask: u8) {
    if mask == WHOLE_BLOCK {
        dst.copy_from_slice(src);
        return;
    }
    for s in 0..SECTORS_PER_BLOCK {
        if mask & (1 << s) != 0 {
            let r = s * SECTOR_SIZE..(s + 1) * SECTOR_SIZE;
            dst[r.clone()].copy_from_slice(&src[r]);
        }
    }
}

fn grow_to(image: &mut Vec<u8>, nr_blocks: u64) {
    let len = nr_blocks as usize * BLOCK_SIZE;
    if image.len() < len {
        image.resize(len, 0);
    }
}

fn put_block(image: &mut Vec<u8>, loc: u64, data: &Block, mask: u8) {
    grow_to(image, loc + 1);
    let off = loc as usize * BLOCK_SIZE;
    apply_sectors(&mut image[off..off + BLOCK_SIZE], data, mask);
}

/// The image with every write of `events[..upto]` landed whole, in order:
/// what the device below holds at `upto`.
pub fn image_at(base: &[u8], events: &[Event], upto: usize) -> Vec<u8> {
    let mut image = base.to_vec();
    for e in &events[..upto] {
        match e {
            Event::Write { first, blocks } => {
                for (j, b) in blocks.iter().enumerate() {
                    put_block(&mut image, first + j as u64, b, WHOLE_BLOCK);
                }
            }
            Event::Grow(n) => grow_to(&mut image, *n),
            Event::Flush => {}
        }
    }
    image
}

/// A crash image at `upto`: `base`, every durable write, then the chosen
/// in-flight writes applied in the order given, each as (event index, block
/// offset, sector mask). A chosen write must be in flight at `upto`.
pub fn crash_image(
    base: &[u8],
    events: &[Event],
    upto: usize,
    chosen: &[(usize, usize, u8)],
) -> Vec<u8> {
    let durable = durable_prefix(events, upto);
    let mut image = image_at(base, events, durable);
    for e in &events[durable..upto] {
        if let Event::Grow(n) = e {
            grow_to(&mut image, *n);
        }
    }
    for &(i, j, mask) in chosen {
        assert!(
            (durable..upto).contains(&i),
            "event {i} is not in flight at {upto}"
        );
        match &events[i] {
            Event::Write { first, blocks } => {
                put_block(&mut image, first + j as u64, &blocks[j], mask)
            }
            other => panic!("event {i} is {other:?}, not a write"),
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemoryDevice;

    fn block(fill: u8) -> Box<Block> {
        Box::new([fill; BLOCK_SIZE])
    }

    fn at(image: &[u8], loc: usize, byte: usize) -> u8 {
        image[loc * BLOCK_SIZE + byte]
    }

    #[test]
    fn devices_on_one_clock_know_their_order() {
        let clock = Arc::new(AtomicU64::new(0));
        let on_clock =
            || RecordingDevice::with_clock(Arc::new(MemoryDevice::new(4)), clock.clone());
        let (a, b) = (on_clock(), on_clock());
        a.write_block(0, &block(1)).unwrap();
        b.write_block(1, &block(2)).unwrap();
        b.flush().unwrap();
        a.flush().unwrap();
        assert_eq!((a.ticks(), b.ticks()), (vec![0, 3], vec![1, 2]));
        assert_eq!(clock.load(Ordering::SeqCst), 4);
        assert_eq!(a.take().len(), 2);
        assert!(a.ticks().is_empty());
        assert!(RecordingDevice::new(Arc::new(MemoryDevice::new(1)))
            .ticks()
            .is_empty());
    }

    #[test]
    fn logs_writes_flushes_and_growth() {
        let mem = Arc::new(MemoryDevice::new(4));
        let rec = RecordingDevice::new(mem.clone());
        rec.write_blocks(1, &[&block(1), &block(2)]).unwrap();
        rec.flush().unwrap();
        rec.grow(8).unwrap();
        assert!(rec.write_block(9, &block(1)).is_err(), "beyond the end");
        let ev = rec.events();
        assert_eq!(format!("{ev:?}"), "[Write(1..3), Flush, Grow(8)]");
        assert_eq!(
            image_at(&vec![0; 4 * BLOCK_SIZE], &ev, ev.len()),
            mem.image()
        );
        assert_eq!(rec.take().len(), 3);
        assert!(rec.is_empty());
    }

    #[test]
    fn crash_images() {
        let mem = Arc::new(MemoryDevice::new(4));
        let base = mem.image();
        let rec = RecordingDevice::new(mem);
        rec.write_block(0, &block(1)).unwrap(); // 0
        rec.flush().unwrap(); // 1
        rec.write_blocks(1, &[&block(2), &block(3)]).unwrap(); // 2
        rec.write_block(1, &block(4)).unwrap(); // 3
        let ev = rec.events();
        assert_eq!(durable_prefix(&ev, 4), 2);
        assert_eq!(in_flight(&ev, 4), vec![(2, 0, 1), (2, 1, 2), (3, 0, 1)]);
        assert_eq!(in_flight(&ev, 2), vec![]);

        let none = crash_image(&base, &ev, 4, &[]);
        assert_eq!(
            (at(&none, 0, 0), at(&none, 1, 0), at(&none, 2, 0)),
            (1, 0, 0)
        );
        // The second write of block 1 landed, the first did not.
        let img = crash_image(&base, &ev, 4, &[(3, 0, WHOLE_BLOCK)]);
        assert_eq!((at(&img, 1, 0), at(&img, 2, 0)), (4, 0));
        // Reordered: the older write to block 1 landed last.
        let img = crash_image(&base, &ev, 4, &[(3, 0, WHOLE_BLOCK), (2, 0, WHOLE_BLOCK)]);
        assert_eq!(at(&img, 1, 0), 2);
        // Torn: only sectors 0 and 7 of block 2.
        let img = crash_image(&base, &ev, 4, &[(2, 1, 0x81)]);
        assert_eq!(at(&img, 2, 0), 3);
        assert_eq!(at(&img, 2, 511), 3);
        assert_eq!(at(&img, 2, 512), 0);
        assert_eq!(at(&img, 2, 7 * 512), 3);
    }

    #[test]
    #[should_panic(expected = "not in flight")]
    fn durable_writes_cannot_be_chosen() {
        let rec = RecordingDevice::new(Arc::new(MemoryDevice::new(2)));
        rec.write_block(0, &block(1)).unwrap();
        rec.flush().unwrap();
        let ev = rec.events();
        crash_image(&vec![0; 2 * BLOCK_SIZE], &ev, 2, &[(0, 0, WHOLE_BLOCK)]);
    }
}
