//! Crash images built from a recorded log, as devices the workloads open.
//!
//! A recorded run starts from an all-zero device. Its log is flattened into
//! one write per block; a crash image is the durable writes (a map from
//! block to contents) plus a chosen sequence of the writes still in doubt,
//! each whole or torn to some of its sectors, applied in the chosen order.

use pdata::io::{apply_sectors, BlockDevice, Event, WHOLE_BLOCK};
use pdata::{Block, BLOCK_SIZE};
use rustc_hash::{FxHashMap, FxHashSet};
use std::io;
use std::sync::Arc;

/// One block of a recorded write.
#[derive(Clone)]
pub struct BlockWrite {
    /// Index of the write's event in the log.
    pub pos: usize,
    pub block: u64,
    pub data: Arc<Block>,
}

/// A recorded run, flattened.
pub struct Log {
    pub events: Vec<Event>,
    pub writes: Vec<BlockWrite>,
    /// Size of the device when recording began.
    pub base_blocks: u64,
}

pub type BlockMap = FxHashMap<u64, Arc<Block>>;

impl Log {
    pub fn new(events: Vec<Event>, base_blocks: u64) -> Log {
        let mut writes = Vec::new();
        for (pos, e) in events.iter().enumerate() {
            if let Event::Write { first, blocks } = e {
                for (j, b) in blocks.iter().enumerate() {
                    writes.push(BlockWrite {
                        pos,
                        block: first + j as u64,
                        data: b.clone(),
                    });
                }
            }
        }
        Log {
            events,
            writes,
            base_blocks,
        }
    }

    /// Index in `writes` of the first write whose event is at `pos` or later.
    pub fn write_index(&self, pos: usize) -> usize {
        self.writes.partition_point(|w| w.pos < pos)
    }

    /// Position just past the last flush before `pos` (0 if none).
    pub fn durable_prefix(&self, pos: usize) -> usize {
        pdata::io::durable_prefix(&self.events, pos)
    }

    /// Size of the device after the events before `pos`.
    pub fn nr_blocks_at(&self, pos: usize) -> u64 {
        self.events[..pos]
            .iter()
            .filter_map(|e| match e {
                Event::Grow(n) => Some(*n),
                _ => None,
            })
            .fold(self.base_blocks, u64::max)
    }

    /// Positions of the flushes, in order.
    pub fn flushes(&self) -> Vec<usize> {
        self.events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::Flush))
            .map(|(i, _)| i)
            .collect()
    }

    /// Applies writes `range` (indices in `writes`) to `map`, skipping `skip`.
    pub fn apply(
        &self,
        map: &mut BlockMap,
        range: std::ops::Range<usize>,
        skip: &FxHashSet<usize>,
    ) {
        for i in range {
            if !skip.contains(&i) {
                let w = &self.writes[i];
                map.insert(w.block, w.data.clone());
            }
        }
    }
}

/// A read-only device: `top` over `durable` over zeros.
pub struct ImageDevice {
    durable: Arc<BlockMap>,
    top: BlockMap,
    nr_blocks: u64,
}

impl ImageDevice {
    /// `durable`, then each chosen write (index in `log.writes`, sector
    /// mask) applied in order.
    pub fn build(
        log: &Log,
        durable: &Arc<BlockMap>,
        nr_blocks: u64,
        chosen: impl IntoIterator<Item = (usize, u8)>,
    ) -> ImageDevice {
        let mut top = BlockMap::default();
        for (i, mask) in chosen {
            let w = &log.writes[i];
            if mask == WHOLE_BLOCK {
                top.insert(w.block, w.data.clone());
                continue;
            }
            let mut cur: Block = match top.get(&w.block).or_else(|| durable.get(&w.block)) {
                Some(b) => **b,
                None => [0; BLOCK_SIZE],
            };
            apply_sectors(&mut cur, &w.data, mask);
            top.insert(w.block, Arc::new(cur));
        }
        ImageDevice {
            durable: durable.clone(),
            top,
            nr_blocks,
        }
    }
}

impl BlockDevice for ImageDevice {
    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        if first + bufs.len() as u64 > self.nr_blocks {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("read of block {first} beyond the end of a crash image"),
            ));
        }
        for (j, buf) in bufs.iter_mut().enumerate() {
            let loc = first + j as u64;
            match self.top.get(&loc).or_else(|| self.durable.get(&loc)) {
                Some(b) => buf.copy_from_slice(&b[..]),
                None => buf.fill(0),
            }
        }
        Ok(())
    }

    fn write_blocks(&self, _first: u64, _bufs: &[&Block]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "crash images are read-only",
        ))
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdata::io::{MemoryDevice, RecordingDevice};

    #[test]
    fn images_from_a_log() {
        let rec = RecordingDevice::new(Arc::new(MemoryDevice::new(4)));
        rec.write_blocks(0, &[&[1; BLOCK_SIZE], &[2; BLOCK_SIZE]])
            .unwrap();
        rec.flush().unwrap();
        rec.grow(6).unwrap();
        rec.write_block(5, &[3; BLOCK_SIZE]).unwrap();
        let log = Log::new(rec.events(), 4);
        assert_eq!(log.writes.len(), 3);
        assert_eq!(log.write_index(2), 2);
        assert_eq!(log.durable_prefix(4), 2);
        assert_eq!(log.nr_blocks_at(4), 6);
        assert_eq!(log.flushes(), vec![1]);
        let mut map = BlockMap::default();
        log.apply(&mut map, 0..2, &FxHashSet::default());
        let durable = Arc::new(map);
        let dev = ImageDevice::build(&log, &durable, 6, [(2, 0x02)]);
        let mut b = [0u8; BLOCK_SIZE];
        dev.read_block(1, &mut b).unwrap();
        assert_eq!(b[0], 2);
        dev.read_block(5, &mut b).unwrap();
        assert_eq!((b[0], b[512], b[1024]), (0, 3, 0));
        assert!(dev.write_block(0, &b).is_err());
        assert!(dev.read_block(6, &mut b).is_err());
    }
}
