//! thin_migrate's copying: the plan's extents from the source to the
//! destination. File to file, runs are copied inside the kernel
//! (copy_file_range: no trip through user memory, a reflink where the file
//! system can). Otherwise, or with PDT_NO_COPY_RANGE set in the
//! environment, reading and writing overlap: this thread reads extents
//! into one of two buffers, adjacent sources in one read, while a writer
//! thread writes the other, adjacent destinations in one write. Unmapped
//! blocks are zeroed unless the destination is known to be zeros.

use crate::tools::cli::{copy_range, interrupted, no_copy_range, punch_hole, zero_out, Progress};
use anyhow::{bail, Context, Result};
use pdata::io::write_all_vectored_at;
use std::cell::Cell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use thin::migrate::{Extent, Plan};

/// Zeros written where a range cannot be zeroed otherwise.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// An open destination.
pub(super) struct Out {
    pub file: File,
    /// The volume's size in bytes: what is copied or zeroed stops there.
    pub size: u64,
    /// Already all zeros (a truncated file): unmapped blocks are skipped.
    pub zeroed: bool,
    pub block_device: bool,
}

/// Destination bytes `len` long from `dst`, to read from `src`.
struct Seg {
    src: u64,
    dst: u64,
    len: u64,
}

/// What one buffer carries to the writer: its segments' bytes, one after
/// the other, and ranges to zero.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    used: usize,
    segs: Vec<Seg>,
    zeros: Vec<(u64, u64)>,
}

/// Bytes copied inside the kernel between checks for an interrupt.
const IN_KERNEL_CHUNK: u64 = 64 << 20;

/// Zero ranges a batch carries at most (they take no buffer).
const MAX_ZEROS: usize = 4096;

pub(super) struct Copier<'a> {
    pub src: &'a File,
    pub src_size: u64,
    /// Reading the live volume itself (thin block b at b * block), not
    /// the data device (data block d at d * block).
    pub src_is_volume: bool,
    /// A live volume with an external origin: its unmapped blocks are the
    /// origin's, so they are copied from the volume too, not zeroed.
    pub unmapped_from_volume: bool,
    pub block: u64,
    pub size: u64,
    pub progress: &'a Progress,
    /// Copying inside the kernel (copy_file_range) while it works; the
    /// first refusal switches to the buffers for good.
    pub in_kernel: Cell<bool>,
}

impl Copier<'_> {
    /// In-kernel copies, unless PDT_NO_COPY_RANGE is set (the tests use it
    /// to take the buffers file to file).
    pub fn in_kernel_allowed() -> Cell<bool> {
        Cell::new(std::env::var_os("PDT_NO_COPY_RANGE").is_none())
    }

    /// Copies and zeroes what `plan` says, with two buffers of `buf_bytes`.
    pub fn run<R: pdata::block_manager::BlockRead>(
        &self,
        mut plan: Plan<R>,
        out: &Out,
        buf_bytes: u64,
    ) -> Result<()> {
        let (to_writer, batches) = sync_channel::<Batch>(1);
        let (recycle, free) = channel::<Vec<u8>>();
        std::thread::scope(|s| {
            let writer = s.spawn(move || write_batches(out, batches, recycle));
            let read = self.read_all(&mut plan, to_writer, free, buf_bytes as usize, out);
            let wrote = writer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            // A writer's failure stops the reader too: it is the cause.
            wrote.and(read)
        })
    }

    fn read_all<R: pdata::block_manager::BlockRead>(
        &self,
        plan: &mut Plan<R>,
        to_writer: SyncSender<Batch>,
        free: Receiver<Vec<u8>>,
        cap: usize,
        out: &Out,
    ) -> Result<()> {
        let mut buffers = Buffers { free, made: 0, cap };
        let mut batch = Batch::default();
        let mut done = 0u64;
        while let Some(e) = plan.next_extent()? {
            if interrupted() {
                bail!("interrupted");
            }
            match e {
                Extent::Zero { begin, len } if self.unmapped_from_volume => {
                    let (dst, n) = self.clip(begin, len);
                    let what = || format!("thin blocks {begin}..{}", begin.saturating_add(len));
                    self.copy(
                        &mut batch,
                        &mut buffers,
                        &to_writer,
                        out,
                        (dst, dst, n),
                        what,
                    )?;
                }
                Extent::Zero { begin, len } => {
                    let (dst, n) = self.clip(begin, len);
                    if n > 0 && !out.zeroed {
                        match batch.zeros.last_mut() {
                            Some((at, l)) if *at + *l == dst => *l += n,
                            _ => batch.zeros.push((dst, n)),
                        }
                        if batch.zeros.len() >= MAX_ZEROS {
                            self.send(&mut batch, &to_writer)?;
                        }
                    }
                }
                Extent::Copy { begin, data, len } => {
                    let (dst, n) = self.clip(begin, len);
                    let src = if self.src_is_volume {
                        dst
                    } else {
                        data.saturating_mul(self.block)
                    };
                    let what = || {
                        format!(
                            "data blocks {data}..{} (thin blocks from {begin})",
                            data.saturating_add(len)
                        )
                    };
                    self.copy(
                        &mut batch,
                        &mut buffers,
                        &to_writer,
                        out,
                        (src, dst, n),
                        what,
                    )?;
                }
            }
            let reached = e.end().saturating_mul(self.block).min(self.size);
            self.progress.add(reached.saturating_sub(done));
            done = done.max(reached);
        }
        self.send(&mut batch, &to_writer)
    }

    /// Copies `n` bytes of the source at `src` to `dst`: inside the kernel
    /// when it can, else through the buffers. `what` names them in errors.
    fn copy(
        &self,
        batch: &mut Batch,
        buffers: &mut Buffers,
        to_writer: &SyncSender<Batch>,
        out: &Out,
        (src, dst, n): (u64, u64, u64),
        what: impl Fn() -> String,
    ) -> Result<()> {
        if src.saturating_add(n) > self.src_size {
            bail!(
                "{} lie past the end of the {} ({} bytes)",
                what(),
                if self.src_is_volume {
                    "source volume"
                } else {
                    "data device"
                },
                self.src_size
            );
        }
        if self.copy_in_kernel(&out.file, src, dst, n)? {
            return Ok(());
        }
        self.add(batch, buffers, to_writer, src, dst, n)
    }

    /// Copies a range file to file inside the kernel; false when that
    /// cannot work here (nothing was copied: the buffers do it).
    fn copy_in_kernel(&self, dst: &File, src: u64, to: u64, n: u64) -> Result<bool> {
        let mut done = 0;
        while self.in_kernel.get() && done < n {
            if interrupted() {
                bail!("interrupted");
            }
            let k = (n - done).min(IN_KERNEL_CHUNK);
            match copy_range(self.src, src + done, dst, to + done, k) {
                Ok(()) => done += k,
                Err(e) if done == 0 && no_copy_range(&e) => self.in_kernel.set(false),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "copying {k} bytes from byte {} of the source to byte {} failed",
                            src + done,
                            to + done
                        )
                    })
                }
            }
        }
        Ok(done == n && n > 0)
    }

    /// Destination offset and length of `len` blocks from thin block
    /// `begin`, cut at the volume's end.
    fn clip(&self, begin: u64, len: u64) -> (u64, u64) {
        let dst = begin.saturating_mul(self.block).min(self.size);
        (dst, len.saturating_mul(self.block).min(self.size - dst))
    }

    /// Adds `n` bytes from `src` to go to `dst`, sending full buffers.
    fn add(
        &self,
        batch: &mut Batch,
        buffers: &mut Buffers,
        to_writer: &SyncSender<Batch>,
        mut src: u64,
        mut dst: u64,
        mut n: u64,
    ) -> Result<()> {
        while n > 0 {
            if batch.buf.is_empty() {
                batch.buf = buffers.take()?;
            }
            let room = (batch.buf.len() - batch.used) as u64;
            if room == 0 {
                self.send(batch, to_writer)?;
                continue;
            }
            let k = n.min(room);
            match batch.segs.last_mut() {
                Some(s) if s.src + s.len == src && s.dst + s.len == dst => s.len += k,
                _ => batch.segs.push(Seg { src, dst, len: k }),
            }
            batch.used += k as usize;
            (src, dst, n) = (src + k, dst + k, n - k);
        }
        Ok(())
    }

    /// Reads the batch's segments (adjacent sources in one read) and hands
    /// it to the writer.
    fn send(&self, batch: &mut Batch, to_writer: &SyncSender<Batch>) -> Result<()> {
        if interrupted() {
            bail!("interrupted");
        }
        let b = std::mem::take(batch);
        if b.segs.is_empty() && b.zeros.is_empty() {
            *batch = Batch {
                buf: b.buf,
                ..Batch::default()
            };
            return Ok(());
        }
        let mut b = b;
        for (start, len, off) in runs(&b.segs, |s| s.src) {
            self.src
                .read_exact_at(&mut b.buf[off..off + len as usize], start)
                .with_context(|| {
                    format!("reading {len} bytes at byte {start} of the source failed")
                })?;
        }
        to_writer
            .send(b)
            .map_err(|_| anyhow::anyhow!("the writer stopped"))
    }
}

/// Runs of segments adjacent by `key` (source or destination offset): the
/// run's first offset, its length, and where its bytes start in the buffer
/// (segments fill it in order).
fn runs(segs: &[Seg], key: fn(&Seg) -> u64) -> impl Iterator<Item = (u64, u64, usize)> + '_ {
    let (mut i, mut off) = (0, 0usize);
    std::iter::from_fn(move || {
        let first = segs.get(i)?;
        let (start, mut len) = (key(first), first.len);
        i += 1;
        while let Some(s) = segs.get(i).filter(|s| key(s) == start + len) {
            len += s.len;
            i += 1;
        }
        let at = off;
        off += len as usize;
        Some((start, len, at))
    })
}

/// The two copy buffers: made on first use, then taken back from the writer.
struct Buffers {
    free: Receiver<Vec<u8>>,
    made: usize,
    cap: usize,
}

impl Buffers {
    fn take(&mut self) -> Result<Vec<u8>> {
        if self.made < 2 {
            self.made += 1;
            return Ok(vec![0; self.cap]);
        }
        self.free
            .recv()
            .map_err(|_| anyhow::anyhow!("the writer stopped"))
    }
}

/// The writer thread: each batch's segments (adjacent destinations in one
/// write), then its zero ranges; the buffer goes back to the reader.
fn write_batches(out: &Out, batches: Receiver<Batch>, recycle: Sender<Vec<u8>>) -> Result<()> {
    for b in batches {
        for (start, len, off) in runs(&b.segs, |s| s.dst) {
            out.file
                .write_all_at(&b.buf[off..off + len as usize], start)
                .with_context(|| {
                    format!("writing {len} bytes at byte {start} of the destination failed")
                })?;
        }
        for &(at, len) in &b.zeros {
            zero(out, at, len).with_context(|| {
                format!("zeroing {len} bytes at byte {at} of the destination failed")
            })?;
        }
        if !b.buf.is_empty() {
            // The reader may be done and gone: then the buffer is not needed.
            let _ = recycle.send(b.buf);
        }
    }
    Ok(())
}

/// Zeros a range of the destination: BLKZEROOUT on a block device, a hole
/// in a file, and written zeros where the device or file system cannot.
fn zero(out: &Out, at: u64, len: u64) -> std::io::Result<()> {
    let quick = if out.block_device {
        zero_out(&out.file, at, len)
    } else {
        punch_hole(&out.file, at, len)
    };
    if quick.is_ok() {
        return Ok(());
    }
    let (mut at, end) = (at, at + len);
    while at < end {
        let n = (end - at).min(256 * ZEROS.len() as u64);
        let mut bufs: Vec<&[u8]> = Vec::with_capacity(256);
        let mut left = n as usize;
        while left > 0 {
            let k = left.min(ZEROS.len());
            bufs.push(&ZEROS[..k]);
            left -= k;
        }
        write_all_vectored_at(&out.file, &bufs, at)?;
        at += n;
    }
    Ok(())
}
