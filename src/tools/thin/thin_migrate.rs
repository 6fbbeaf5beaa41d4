//! `thin_migrate`: copies a thin volume's content out of its pool, to a
//! block device or a file.
//!
//! Offline (`--metadata-dev M --data-dev D --dev-id N`, no device-mapper
//! at all): the mappings are read from the committed metadata and the
//! mapped blocks from the data device (data block b at b * block size).
//! Live (`--source-dev THIN`, the upstream form): the volume's pool and id
//! come from device-mapper, a metadata snapshot is held while the mappings
//! are read from it, and the mapped blocks are read from the thin volume
//! itself.
//!
//! Unmapped blocks are zeros in the destination: a fresh file (`--dest-file`
//! without `--delta-id` is truncated) is known to be zeros, so they are
//! holes; anything else gets them zeroed (a hole punched in a file,
//! BLKZEROOUT on a block device, written zeros where neither works).
//! A live volume with an external origin reads the origin where it maps
//! nothing: those blocks are copied from the volume too. (Offline, where
//! no table names the origin, unmapped blocks are zeros.)
//! `--delta-id BASE` copies only what differs from device BASE
//! (`thin::migrate`), so a destination holding BASE's content becomes a
//! copy of N.
//!
//! The volume's size is not in the metadata. It is `--size` when given;
//! else the live volume's size; else a destination device's size; else (a
//! file) the end of the last mapped block, or the file's length if longer
//! with `--delta-id`. A destination smaller than the mapped blocks is
//! refused before anything is copied.
//!
//! File to file, mapped runs are copied inside the kernel (copy_file_range:
//! no trip through user memory, a reflink where the file system can).
//! Otherwise, or with PDT_NO_COPY_RANGE set in the environment, reading
//! and writing overlap: this thread reads the plan's extents into one of
//! two buffers, adjacent data in one read, while a writer thread writes
//! the other, adjacent destination ranges in one write.

use super::live_pool::{self, HeldSnapshot};
use crate::tools::cli::{
    catch_interrupts, copy_range, exit_status, interrupted, no_copy_range, number, open_data,
    open_reader, punch_hole, same_file, size_of, zero_out, GetOpt, HasArg, Opt, Progress, HELP,
    QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use pdata::io::{check_file_or_block_device, write_all_vectored_at};
use pdata::live::LiveMetadata;
use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use thin::migrate::{device_root, mapped_end, Extent, Plan};
use thin::ThinMetadata;

const PROG: &str = "thin_migrate";
const USAGE: &str = "Usage: thin_migrate [options]
  (--metadata-dev <dev> --data-dev <dev> --dev-id <id> | --source-dev <thin dev>)
  (--dest-dev <dev> | --dest-file <file>)
Options:
  {--delta-id <id>}          copy only what differs from device <id>, whose
                             content the destination holds
  {--size <sectors>}         the volume's size
  {--buffer-size-meg <MB>}   the copy buffers' size (default 64)
  {-h|--help}
  {-q|--quiet}
  {-V|--version}
";

const SECTOR: u64 = 512;
const DEFAULT_BUFFER_MEG: u64 = 64;
/// A walk or two side by side: a small cache holds their paths.
const CACHE_BLOCKS: usize = 1024;
/// Zeros written where a range cannot be zeroed otherwise.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    Opt::long("metadata-dev", HasArg::Required, "metadata-dev"),
    Opt::long("data-dev", HasArg::Required, "data-dev"),
    Opt::long("dev-id", HasArg::Required, "dev-id"),
    Opt::long("delta-id", HasArg::Required, "delta-id"),
    Opt::long("source-dev", HasArg::Required, "source-dev"),
    Opt::long("dest-dev", HasArg::Required, "dest-dev"),
    Opt::long("dest-file", HasArg::Required, "dest-file"),
    Opt::long("size", HasArg::Required, "size"),
    Opt::long("buffer-size-meg", HasArg::Required, "buffer-size-meg"),
];

enum Source {
    Offline {
        metadata: PathBuf,
        data: PathBuf,
        dev_id: u64,
    },
    Live(PathBuf),
}

#[derive(Clone)]
enum Dest {
    Device(PathBuf),
    File(PathBuf),
}

struct Options {
    source: Source,
    dest: Dest,
    delta_id: Option<u64>,
    /// Bytes.
    size: Option<u64>,
    buffer_bytes: u64,
    quiet: bool,
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut g = GetOpt::new(PROG, OPTS, args).with_usage(USAGE);
    let (mut metadata, mut data, mut dev_id, mut delta_id) = (None, None, None, None);
    let (mut source, mut dest, mut size) = (None, None, None);
    let (mut buffer_meg, mut quiet) = (DEFAULT_BUFFER_MEG, false);
    while let Some((id, value)) = g.next_opt()? {
        let v = value.unwrap_or_default();
        let path = Some(PathBuf::from(&v));
        let r: Result<(), String> = match id {
            "metadata-dev" => set(&mut metadata, path),
            "data-dev" => set(&mut data, path),
            "source-dev" => set(&mut source, path),
            "dest-dev" | "dest-file" if dest.is_some() => {
                Err("give one destination: --dest-dev or --dest-file".into())
            }
            "dest-dev" => set(&mut dest, path.map(Dest::Device)),
            "dest-file" => set(&mut dest, path.map(Dest::File)),
            "dev-id" => number(id, &v).and_then(|n| set(&mut dev_id, Some(n))),
            "delta-id" => number(id, &v).and_then(|n| set(&mut delta_id, Some(n))),
            "size" => match number::<u64>(id, &v).map(|n| n.checked_mul(SECTOR)) {
                Ok(Some(b)) if b > 0 => set(&mut size, Some(b)),
                Ok(_) => Err("--size must be a number of sectors above 0".into()),
                Err(e) => Err(e),
            },
            "buffer-size-meg" => match number::<u64>(id, &v) {
                Ok(n @ 1..=65536) => set(&mut buffer_meg, n),
                Ok(_) => Err("--buffer-size-meg must be between 1 and 65536".into()),
                Err(e) => Err(e),
            },
            _ => set(&mut quiet, true),
        };
        r.map_err(|e| g.usage_error(e))?;
    }
    if let Some(extra) = g.operands.first() {
        return Err(g.usage_error(format!("unexpected argument '{extra}'")));
    }
    let source =
        match (source, metadata, data, dev_id) {
            (Some(s), None, None, None) => Source::Live(s),
            (Some(_), ..) => return Err(g.usage_error(
                "--source-dev (a live volume) goes without --metadata-dev, --data-dev and --dev-id",
            )),
            (None, m, d, id) => Source::Offline {
                metadata: g.need(
                    m,
                    "No source: give --source-dev, or --metadata-dev, --data-dev and --dev-id.",
                )?,
                data: g.need(d, "No data device provided (--data-dev).")?,
                dev_id: g.need(id, "No thin device id provided (--dev-id).")?,
            },
        };
    Ok(Options {
        source,
        dest: g.need(dest, "No destination: give --dest-dev or --dest-file.")?,
        delta_id,
        size,
        buffer_bytes: buffer_meg << 20,
        quiet,
    })
}

/// An option's value taken (the last one given wins).
fn set<T>(slot: &mut T, value: T) -> Result<(), String> {
    *slot = value;
    Ok(())
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(o) => exit_status(&format!("{PROG}: "), migrate(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn migrate(o: &Options) -> Result<()> {
    // Live: the snapshot is held until this function returns, however.
    let (metadata, data, dev_id, held, external_origin) = match &o.source {
        Source::Offline {
            metadata,
            data,
            dev_id,
        } => (metadata.clone(), data.clone(), *dev_id, None, false),
        Source::Live(thin) => {
            // An interrupted copy still releases the snapshot.
            catch_interrupts();
            let live = live_pool::find(thin)?;
            let ext = live.external_origin;
            if ext && o.delta_id.is_some() {
                // Blocks neither device maps read from origins the
                // metadata does not name: what differs there is unknown.
                bail!(
                    "--delta-id cannot be used on a volume with an external origin: copy it whole"
                );
            }
            let held = HeldSnapshot::reserve(&live.pool)?;
            (live.metadata, thin.clone(), live.dev_id, Some(held), ext)
        }
    };
    let live = held.is_some();
    let dest_path = match &o.dest {
        Dest::Device(p) | Dest::File(p) => p,
    };
    for (what, p) in [("metadata", &metadata), ("source", &data)] {
        if same_file(p, dest_path) {
            bail!(
                "the destination {} is the {what} device: write to another file or device",
                dest_path.display()
            );
        }
    }

    let md =
        ThinMetadata::open_with_cache(open_reader(PROG, &metadata, live)?, false, CACHE_BLOCKS)?;
    let sb = if live {
        md.metadata_snap()?
            .context("the pool holds no metadata snapshot after reserving one")?
    } else {
        md.superblock().clone()
    };
    let tm = md.transaction_manager();
    let block = u64::from(sb.data_block_size) * SECTOR;
    if block == 0 {
        bail!("the superblock's data block size is 0: the metadata is damaged");
    }
    let root = device_root(tm, sb.data_mapping_root, dev_id)?;
    let base_root = o
        .delta_id
        .map(|b| device_root(tm, sb.data_mapping_root, b))
        .transpose()?;
    // Where the last mapped block ends: the least size the volume has.
    let need = mapped_end(tm, root)?
        .checked_mul(block)
        .context("the volume's size overflows 64 bits")?;

    let mut src = open_data(&data, false)?;
    let src_size = size_of(&mut src)?;
    let live_size = live.then_some(src_size);
    let out = open_dest(&o.dest, o.size.or(live_size), need, o.delta_id.is_some())?;
    if need > out.size {
        let limit = match (o.size, &o.dest) {
            (Some(_), _) => "--size gives",
            (None, _) if live => "the live volume holds",
            (None, Dest::Device(_)) => "the destination holds",
            (None, Dest::File(_)) => "the file holds",
        };
        bail!(
            "the destination is too small: thin device {dev_id} maps blocks up to byte {need}, {limit} {} bytes",
            out.size
        );
    }
    let end = out.size.div_ceil(block);
    let plan = match base_root {
        Some(base) => Plan::delta(tm, dev_id, root, base, end),
        None => Plan::full(tm, dev_id, root, end),
    };
    let progress = Progress::new("Copying", out.size, o.quiet);
    let copier = Copier {
        src: &src,
        src_size,
        src_is_volume: live,
        unmapped_from_volume: external_origin,
        block,
        size: out.size,
        progress: &progress,
        in_kernel: Cell::new(std::env::var_os("PDT_NO_COPY_RANGE").is_none()),
    };
    copier.run(plan, &out, (o.buffer_bytes / 2).max(block.min(1 << 20)))?;
    out.file
        .sync_all()
        .with_context(|| format!("syncing {} failed", dest_path.display()))?;
    Ok(())
}

/// An open destination.
struct Out {
    file: File,
    /// The volume's size in bytes: what is copied or zeroed stops there.
    size: u64,
    /// Already all zeros (a truncated file): unmapped blocks are skipped.
    zeroed: bool,
    block_device: bool,
}

/// Opens the destination, and settles the volume's size: `size` when
/// known, else the device's, else (a file) the mapped blocks' `need`.
fn open_dest(dest: &Dest, size: Option<u64>, need: u64, delta: bool) -> Result<Out> {
    match dest {
        Dest::Device(p) => {
            check_file_or_block_device(p)
                .with_context(|| format!("cannot open {}", p.display()))?;
            let block_device = std::fs::metadata(p)?.file_type().is_block_device();
            let mut opts = OpenOptions::new();
            opts.read(true).write(true);
            if block_device {
                // Refuses a device in use (mounted, or a pool's).
                opts.custom_flags(libc::O_EXCL);
            }
            let mut file = opts
                .open(p)
                .with_context(|| format!("cannot open {} exclusively", p.display()))?;
            let have = size_of(&mut file)?;
            let size = size.unwrap_or(have);
            if size > have {
                bail!(
                    "the destination is too small: {} holds {have} bytes, the volume has {size}",
                    p.display()
                );
            }
            Ok(Out {
                file,
                size,
                zeroed: false,
                block_device,
            })
        }
        Dest::File(p) => {
            if let Ok(m) = std::fs::metadata(p) {
                if !m.file_type().is_file() {
                    bail!(
                        "--dest-file {} is not a regular file (--dest-dev takes devices)",
                        p.display()
                    );
                }
            } else if delta {
                bail!(
                    "--delta-id needs a destination holding the base device's content, and {} does not exist",
                    p.display()
                );
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(!delta)
                .truncate(!delta)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?;
            let have = file.metadata()?.len();
            let size = size.unwrap_or(if delta { have.max(need) } else { need });
            // A new file is all holes: nothing to zero. An old one keeps
            // its content, as far as the volume goes.
            file.set_len(size)
                .with_context(|| format!("cannot size {} to {size} bytes", p.display()))?;
            Ok(Out {
                file,
                size,
                zeroed: !delta,
                block_device: false,
            })
        }
    }
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

struct Copier<'a> {
    src: &'a File,
    src_size: u64,
    /// Reading the live volume itself (thin block b at b * block), not
    /// the data device (data block d at d * block).
    src_is_volume: bool,
    /// A live volume with an external origin: its unmapped blocks are the
    /// origin's, so they are copied from the volume too, not zeroed.
    unmapped_from_volume: bool,
    block: u64,
    size: u64,
    progress: &'a Progress,
    /// Copying inside the kernel (copy_file_range) while it works; the
    /// first refusal switches to the buffers for good.
    in_kernel: Cell<bool>,
}

impl Copier<'_> {
    /// Copies and zeroes what `plan` says, with two buffers of `buf_bytes`.
    fn run<R: pdata::block_manager::BlockRead>(
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
