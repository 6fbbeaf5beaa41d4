//! Copying the data of the blocks a [`Plan`] moves, on the data device:
//! in ascending order, in large batches (sources that follow each other
//! read in one call, targets that follow each other written in one call),
//! one thread reading the next batch while the caller writes the last one.
//! Everything is synced before returning, so the new metadata can be
//! written once this returns.

use super::{Plan, Result, ShrinkError};
use crate::progress::ProgressHook;
use std::io;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes per batch; two batches are in flight.
const BATCH_BYTES: u64 = 16 << 20;

/// A pool's data device (a block device or an image file), in bytes.
pub trait DataDevice: Sync {
    /// Its size in bytes.
    fn size(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
}

impl DataDevice for std::fs::File {
    fn size(&self) -> io::Result<u64> {
        use std::io::Seek;
        // A block device's metadata says 0 bytes; its end says its size.
        let mut f: &std::fs::File = self;
        f.seek(io::SeekFrom::End(0))
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
}

/// `len` bytes from `src` to `dst`; a batch's pieces lie one after
/// another in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    src: u64,
    dst: u64,
    len: u64,
}

/// The byte pieces of `plan`'s moves in order, cut into batches of at most
/// `batch` bytes.
fn batches(plan: &Plan, block_bytes: u64, batch: u64) -> Result<Vec<Vec<Piece>>> {
    let bytes = |b: u64| {
        b.checked_mul(block_bytes).ok_or_else(|| {
            ShrinkError::Thin(crate::ThinError::Invalid(
                "data offsets overflow 64 bits".into(),
            ))
        })
    };
    let mut out = vec![Vec::new()];
    let mut room = batch;
    for m in &plan.moves {
        let (mut src, mut dst, mut left) = (bytes(m.from)?, bytes(m.to)?, bytes(m.len)?);
        while left > 0 {
            if room == 0 {
                out.push(Vec::new());
                room = batch;
            }
            let n = left.min(room);
            if let Some(v) = out.last_mut() {
                v.push(Piece { src, dst, len: n });
            }
            (src, dst, left, room) = (src + n, dst + n, left - n, room - n);
        }
    }
    out.retain(|b| !b.is_empty());
    Ok(out)
}

/// Copies the data of every block `plan` moves (blocks of `block_bytes`)
/// on `dev`, then syncs it. Refuses before writing anything when `dev`
/// does not reach the highest block moved.
pub fn copy_data(
    dev: &dyn DataDevice,
    plan: &Plan,
    block_bytes: u64,
    progress: &dyn ProgressHook,
) -> Result<()> {
    copy_in_batches(dev, plan, block_bytes, BATCH_BYTES, progress)
}

fn copy_in_batches(
    dev: &dyn DataDevice,
    plan: &Plan,
    block_bytes: u64,
    batch_bytes: u64,
    progress: &dyn ProgressHook,
) -> Result<()> {
    let Some(last) = plan.moves.iter().map(|m| m.from + m.len).max() else {
        return Ok(());
    };
    let needed = last.saturating_mul(block_bytes);
    let size = dev.size().map_err(|source| ShrinkError::DataIo {
        op: "sizing",
        offset: 0,
        source,
    })?;
    if size < needed {
        return Err(ShrinkError::DataTooSmall { size, needed });
    }
    let batches = batches(plan, block_bytes, batch_bytes)?;
    progress.set_total(plan.blocks_moved().saturating_mul(block_bytes));
    let buf_len = batches
        .iter()
        .map(|b| b.iter().map(|p| p.len).sum::<u64>())
        .max()
        .unwrap_or(0) as usize;
    let (full_tx, full_rx) = sync_channel::<Result<(Vec<u8>, usize)>>(1);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = free_tx.send(vec![0u8; buf_len]);
    }
    // The channels end with the functions that take them, so either side
    // stopping at an error lets the other one end too.
    let batches = &batches;
    std::thread::scope(|s| {
        s.spawn(move || read_batches(dev, batches, free_rx, full_tx));
        write_batches(dev, batches, full_rx, free_tx, progress)
    })?;
    dev.sync().map_err(|source| ShrinkError::DataIo {
        op: "syncing",
        offset: 0,
        source,
    })
}

/// The writing side: writes each batch as it arrives and hands its buffer
/// back.
fn write_batches(
    dev: &dyn DataDevice,
    batches: &[Vec<Piece>],
    full: Receiver<Result<(Vec<u8>, usize)>>,
    free: SyncSender<Vec<u8>>,
    progress: &dyn ProgressHook,
) -> Result<()> {
    for (i, batch) in batches.iter().enumerate() {
        let (buf, n) = full.recv().map_err(|_| ShrinkError::DataIo {
            op: "reading",
            offset: 0,
            source: io::Error::other("the reading thread stopped"),
        })??;
        debug_assert_eq!(n, i);
        write_batch(dev, batch, &buf)?;
        progress.add(batch.iter().map(|p| p.len).sum());
        // The reader may have stopped at an error: it is received next.
        let _ = free.send(buf);
    }
    Ok(())
}

/// The reading thread: fills a free buffer with each batch in turn and
/// sends it with its index; stops at the first error (sent) or when the
/// writer is gone.
fn read_batches(
    dev: &dyn DataDevice,
    batches: &[Vec<Piece>],
    free: Receiver<Vec<u8>>,
    full: SyncSender<Result<(Vec<u8>, usize)>>,
) {
    for (i, batch) in batches.iter().enumerate() {
        let Ok(mut buf) = free.recv() else {
            return;
        };
        let r = read_batch(dev, batch, &mut buf).map(|()| (buf, i));
        let failed = r.is_err();
        if full.send(r).is_err() || failed {
            return;
        }
    }
}

/// Calls `io` once for each run of pieces whose `key` ranges (source or
/// target) follow each other: with the run's range in the buffer and its
/// offset on the device. An error is `op`'s at that offset.
fn for_each_joined(
    batch: &[Piece],
    key: fn(&Piece) -> u64,
    op: &'static str,
    mut io: impl FnMut(std::ops::Range<usize>, u64) -> io::Result<()>,
) -> Result<()> {
    let (mut i, mut at) = (0, 0usize);
    while i < batch.len() {
        let mut j = i + 1;
        while j < batch.len() && key(&batch[j]) == key(&batch[j - 1]) + batch[j - 1].len {
            j += 1;
        }
        let len: u64 = batch[i..j].iter().map(|p| p.len).sum();
        let (end, offset) = (at + len as usize, key(&batch[i]));
        io(at..end, offset).map_err(|source| ShrinkError::DataIo { op, offset, source })?;
        (i, at) = (j, end);
    }
    Ok(())
}

fn read_batch(dev: &dyn DataDevice, batch: &[Piece], buf: &mut [u8]) -> Result<()> {
    for_each_joined(
        batch,
        |p| p.src,
        "reading",
        |r, at| dev.read_exact_at(&mut buf[r], at),
    )
}

fn write_batch(dev: &dyn DataDevice, batch: &[Piece], buf: &[u8]) -> Result<()> {
    for_each_joined(
        batch,
        |p| p.dst,
        "writing",
        |r, at| dev.write_all_at(&buf[r], at),
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::shrink::Move;
    use std::sync::Mutex;

    /// A data device in memory that can fail reads or writes at an offset.
    pub struct MemData {
        pub bytes: Mutex<Vec<u8>>,
        pub fail_read_at: Option<u64>,
        pub fail_write_at: Option<u64>,
        pub synced: Mutex<bool>,
    }

    impl MemData {
        pub fn new(bytes: Vec<u8>) -> Self {
            MemData {
                bytes: Mutex::new(bytes),
                fail_read_at: None,
                fail_write_at: None,
                synced: Mutex::new(false),
            }
        }
    }

    impl DataDevice for MemData {
        fn size(&self) -> io::Result<u64> {
            Ok(self.bytes.lock().unwrap().len() as u64)
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let o = offset as usize;
            if self
                .fail_read_at
                .is_some_and(|f| (offset..offset + buf.len() as u64).contains(&f))
            {
                return Err(io::Error::other("injected read error"));
            }
            buf.copy_from_slice(&self.bytes.lock().unwrap()[o..o + buf.len()]);
            Ok(())
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            let o = offset as usize;
            if self
                .fail_write_at
                .is_some_and(|f| (offset..offset + buf.len() as u64).contains(&f))
            {
                return Err(io::Error::other("injected write error"));
            }
            self.bytes.lock().unwrap()[o..o + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn sync(&self) -> io::Result<()> {
            *self.synced.lock().unwrap() = true;
            Ok(())
        }
    }

    fn plan(moves: &[(u64, u64, u64)]) -> Plan {
        Plan {
            old_nr_blocks: 64,
            new_nr_blocks: 16,
            moves: moves
                .iter()
                .map(|&(from, to, len)| Move { from, to, len })
                .collect(),
        }
    }

    fn pattern(blocks: u64, bs: u64) -> Vec<u8> {
        (0..blocks * bs)
            .map(|i| (i / bs * 7 + i % 251) as u8)
            .collect()
    }

    #[test]
    fn copies_every_moved_block_in_small_batches() {
        let bs = 1024;
        let p = plan(&[(20, 1, 3), (23, 5, 2), (40, 7, 1), (50, 10, 4)]);
        for batch in [bs / 3, bs, 5 * bs, 1 << 20] {
            let before = pattern(64, bs);
            let dev = MemData::new(before.clone());
            copy_in_batches(&dev, &p, bs, batch, &NoProgress).unwrap();
            let after = dev.bytes.lock().unwrap().clone();
            let block = |v: &[u8], b: u64| v[(b * bs) as usize..((b + 1) * bs) as usize].to_vec();
            for m in &p.moves {
                for k in 0..m.len {
                    assert_eq!(block(&after, m.to + k), block(&before, m.from + k));
                }
            }
            // Nothing else changed.
            let targets: Vec<u64> = p.moves.iter().flat_map(|m| m.to..m.to + m.len).collect();
            for b in (0..64).filter(|b| !targets.contains(b)) {
                assert_eq!(block(&after, b), block(&before, b), "block {b}");
            }
            assert!(*dev.synced.lock().unwrap());
        }
    }

    #[test]
    fn a_short_device_is_refused_before_any_write() {
        let bs = 512;
        let dev = MemData::new(pattern(30, bs));
        let before = dev.bytes.lock().unwrap().clone();
        let e = copy_data(&dev, &plan(&[(20, 1, 3), (40, 7, 1)]), bs, &NoProgress).unwrap_err();
        assert!(
            matches!(
                e,
                ShrinkError::DataTooSmall {
                    size: 15360,
                    needed: 20992
                }
            ),
            "{e}"
        );
        assert_eq!(*dev.bytes.lock().unwrap(), before);
    }

    #[test]
    fn io_errors_stop_the_copy() {
        let bs = 512;
        let p = plan(&[(20, 1, 3), (40, 7, 1)]);
        for (read, write, op) in [
            (Some(40 * bs), None, "reading"),
            (None, Some(2 * bs), "writing"),
        ] {
            let mut dev = MemData::new(pattern(64, bs));
            (dev.fail_read_at, dev.fail_write_at) = (read, write);
            let e = copy_in_batches(&dev, &p, bs, bs, &NoProgress).unwrap_err();
            assert!(
                matches!(e, ShrinkError::DataIo { op: o, .. } if o == op),
                "{e}"
            );
            assert!(!*dev.synced.lock().unwrap());
        }
    }
}
