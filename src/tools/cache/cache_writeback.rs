//! `cache_writeback`: copies every dirty cache block from the fast device
//! to its place on the origin device, offline, then clears the dirty bits
//! of the blocks copied in one clean commit.
//!
//! After an unclean shutdown every mapped block counts as dirty (the
//! library says so), so all of them are copied. Blocks are read from the
//! fast device in cache-block order, in runs as long as the buffer, and
//! written to the origin in origin-block order, adjacent blocks in one
//! vectored write. A block that cannot be read or written (or lies past a
//! device's end) stays dirty; the origin is synced before any dirty bit is
//! cleared, so a crash never leaves a clean claim about data that is not
//! on the origin. The commit is a clean-shutdown commit: opening the
//! metadata for writing cleared that flag, and without it the next
//! activation would count every block dirty again.

use crate::tools::cli::{
    exit_status, number, open_shared, GetOpt, HasArg, Opt, HELP, QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use cache::CacheMetadata;
use pdata::io::{check_file_or_block_device, write_all_vectored_at};
use pdata::live::LiveMetadata;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;

const PROG: &str = "cache_writeback";
const USAGE: &str = "Usage: cache_writeback [options]
\t\t--metadata-device <dev>
\t\t--origin-device <dev>
\t\t--fast-device <dev>
\t\t--origin-device-offset <sectors>
\t\t--fast-device-offset <sectors>
\t\t--buffer-size-meg <size>
\t\t--list-failed-blocks
\t\t--no-metadata-update
Options:
  {-h|--help}
  {-V|--version}
  {-q|--quiet}
";

const SECTOR: u64 = 512;
const DEFAULT_BUFFER_MEG: u64 = 128;

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    Opt::long("metadata-device", HasArg::Required, "metadata-device"),
    Opt::long("origin-device", HasArg::Required, "origin-device"),
    Opt::long("fast-device", HasArg::Required, "fast-device"),
    Opt::long(
        "origin-device-offset",
        HasArg::Required,
        "origin-device-offset",
    ),
    Opt::long("fast-device-offset", HasArg::Required, "fast-device-offset"),
    Opt::long("buffer-size-meg", HasArg::Required, "buffer-size-meg"),
    Opt::long("list-failed-blocks", HasArg::No, "list-failed-blocks"),
    Opt::long("no-metadata-update", HasArg::No, "no-metadata-update"),
];

struct Args {
    metadata: PathBuf,
    origin: PathBuf,
    fast: PathBuf,
    /// Byte offsets of the data on the origin and fast devices.
    origin_offset: u64,
    fast_offset: u64,
    buffer_bytes: u64,
    list_failed: bool,
    update: bool,
    quiet: bool,
}

fn parse(args: &[String]) -> Result<Args, ExitCode> {
    let mut g = GetOpt::new(PROG, OPTS, args).with_usage(USAGE);
    let (mut metadata, mut origin, mut fast) = (None, None, None);
    let (mut origin_offset, mut fast_offset) = (0u64, 0u64);
    let mut buffer_meg = DEFAULT_BUFFER_MEG;
    let (mut list_failed, mut update, mut quiet) = (false, true, false);
    while let Some((id, value)) = g.next_opt()? {
        let v = value.unwrap_or_default();
        let sectors = |v: &str| -> Result<u64, String> {
            number::<u64>(id, v)?
                .checked_mul(SECTOR)
                .ok_or_else(|| format!("--{id} is too large"))
        };
        let r: Result<(), String> = match id {
            "metadata-device" => {
                metadata = Some(PathBuf::from(v));
                Ok(())
            }
            "origin-device" => {
                origin = Some(PathBuf::from(v));
                Ok(())
            }
            "fast-device" => {
                fast = Some(PathBuf::from(v));
                Ok(())
            }
            "origin-device-offset" => sectors(&v).map(|n| origin_offset = n),
            "fast-device-offset" => sectors(&v).map(|n| fast_offset = n),
            "buffer-size-meg" => match number::<u64>(id, &v) {
                Ok(n @ 1..=65536) => {
                    buffer_meg = n;
                    Ok(())
                }
                Ok(_) => Err("--buffer-size-meg must be between 1 and 65536".into()),
                Err(e) => Err(e),
            },
            "list-failed-blocks" => {
                list_failed = true;
                Ok(())
            }
            "no-metadata-update" => {
                update = false;
                Ok(())
            }
            _ => {
                quiet = true;
                Ok(())
            }
        };
        r.map_err(|e| g.usage_error(e))?;
    }
    if let Some(extra) = g.operands.iter().find(|a| !a.is_empty()) {
        return Err(g.usage_error(format!("unexpected argument '{extra}'")));
    }
    Ok(Args {
        metadata: g.need(metadata, "No metadata device provided.")?,
        origin: g.need(origin, "No origin device provided.")?,
        fast: g.need(fast, "No fast device provided.")?,
        origin_offset,
        fast_offset,
        buffer_bytes: buffer_meg << 20,
        list_failed,
        update,
        quiet,
    })
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(a) => exit_status(&format!("{PROG}: "), writeback(&a)),
        Err(status) => status,
    }
}

/// A block that could not be copied.
struct Failure {
    cblock: u32,
    oblock: u64,
    why: String,
}

/// The size of a regular file or block device.
fn size_of(f: &mut File) -> std::io::Result<u64> {
    f.seek(SeekFrom::End(0))
}

fn open_data(path: &PathBuf, writable: bool) -> Result<File> {
    check_file_or_block_device(path).with_context(|| format!("cannot open {}", path.display()))?;
    let f = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(f)
}

fn writeback(a: &Args) -> Result<bool> {
    let dev = open_shared(&a.metadata, a.update)?;
    let mut md = CacheMetadata::open(dev, a.update)?;
    if a.update && !md.is_writable() {
        bail!("the metadata has features this tool does not know: it opens read-only (try --no-metadata-update)");
    }
    if md.needs_check() {
        bail!("the metadata needs a check: run cache_check first");
    }
    let dirty: Vec<(u32, u64)> = md
        .mappings()?
        .into_iter()
        .filter(|(_, m)| m.dirty)
        .map(|(c, m)| (c, m.oblock))
        .collect();
    let fast = open_data(&a.fast, false)?;
    let mut origin = open_data(&a.origin, true)?;
    let copier = Copier {
        block: u64::from(md.data_block_size()) * SECTOR,
        origin_size: size_of(&mut origin)?,
        fast,
        origin,
        fast_offset: a.fast_offset,
        origin_offset: a.origin_offset,
    };
    if !a.quiet {
        errln!("Copying cache blocks");
    }
    let mut failed = Vec::new();
    let mut copied = copier.copy_all(&dirty, a.buffer_bytes, &mut failed);
    // Nothing is called clean before it is durable on the origin.
    if let Err(e) = copier.origin.sync_all() {
        let why = format!("syncing the origin device failed: {e}");
        failed.extend(copied.drain(..).map(|(cblock, oblock)| Failure {
            cblock,
            oblock,
            why: why.clone(),
        }));
    }
    failed.sort_by_key(|f| f.cblock);
    if a.update {
        if !a.quiet {
            errln!("Updating metadata");
        }
        for &(c, _) in &copied {
            md.set_dirty(u64::from(c), false)?;
        }
        md.commit(true).context("committing the metadata")?;
    }
    if a.list_failed {
        for f in &failed {
            outln!(
                "cache block {} (origin block {}): {}",
                f.cblock,
                f.oblock,
                f.why
            )?;
        }
    }
    if !a.quiet {
        outln!(
            "{}/{} blocks successfully copied",
            copied.len(),
            dirty.len()
        )?;
        if !failed.is_empty() {
            errln!("{} blocks were not copied and stay dirty", failed.len());
        }
    }
    Ok(failed.is_empty())
}

/// Copies cache blocks from the fast device to the origin device.
struct Copier {
    fast: File,
    origin: File,
    /// Cache block size in bytes.
    block: u64,
    fast_offset: u64,
    origin_offset: u64,
    origin_size: u64,
}

impl Copier {
    /// Byte offset of block `n` on a device whose data starts at `base`,
    /// if the whole block lies inside `size`.
    fn place(&self, base: u64, n: u64, size: u64) -> Option<u64> {
        let at = n.checked_mul(self.block)?.checked_add(base)?;
        (at.checked_add(self.block)? <= size).then_some(at)
    }

    /// Copies `blocks` (cache block, origin block), sorted by cache block;
    /// returns the blocks copied and adds the others to `failed`.
    fn copy_all(
        &self,
        blocks: &[(u32, u64)],
        buffer_bytes: u64,
        failed: &mut Vec<Failure>,
    ) -> Vec<(u32, u64)> {
        let mut todo = Vec::with_capacity(blocks.len());
        for &(c, o) in blocks {
            let fail = |why: &str| Failure {
                cblock: c,
                oblock: o,
                why: why.to_string(),
            };
            // The fast device's end shows as a failed read; a write past
            // the origin's end would grow a regular file instead of failing.
            match (
                self.place(self.fast_offset, u64::from(c), u64::MAX),
                self.place(self.origin_offset, o, self.origin_size),
            ) {
                (None, _) => failed.push(fail("its place on the fast device is out of range")),
                (_, None) => failed.push(fail("it lies past the end of the origin device")),
                (Some(from), Some(to)) => todo.push((c, o, from, to)),
            }
        }
        let per_batch = (buffer_bytes / self.block).clamp(1, todo.len().max(1) as u64) as usize;
        let mut buf = vec![0u8; per_batch * self.block as usize];
        let mut copied = Vec::with_capacity(todo.len());
        for batch in todo.chunks(per_batch) {
            let read = self.read_batch(batch, &mut buf, failed);
            self.write_batch(batch, &read, &buf, failed, &mut copied);
        }
        copied
    }

    /// Reads the batch into `buf` (slot i for block i), adjacent cache
    /// blocks in one read; which slots hold data.
    fn read_batch(
        &self,
        batch: &[(u32, u64, u64, u64)],
        buf: &mut [u8],
        failed: &mut Vec<Failure>,
    ) -> Vec<bool> {
        let bs = self.block as usize;
        let mut ok = vec![true; batch.len()];
        let mut i = 0;
        while i < batch.len() {
            let mut j = i + 1;
            while j < batch.len() && batch[j].0 == batch[j - 1].0 + 1 {
                j += 1;
            }
            let run = &mut buf[i * bs..j * bs];
            if self.fast.read_exact_at(run, batch[i].2).is_err() {
                // Find the blocks that fail, one by one.
                for k in i..j {
                    let slot = &mut buf[k * bs..(k + 1) * bs];
                    if let Err(e) = self.fast.read_exact_at(slot, batch[k].2) {
                        ok[k] = false;
                        failed.push(Failure {
                            cblock: batch[k].0,
                            oblock: batch[k].1,
                            why: format!("reading the fast device failed: {e}"),
                        });
                    }
                }
            }
            i = j;
        }
        ok
    }

    /// Writes the blocks read to the origin, in origin-block order,
    /// adjacent ones in one vectored write.
    fn write_batch(
        &self,
        batch: &[(u32, u64, u64, u64)],
        read: &[bool],
        buf: &[u8],
        failed: &mut Vec<Failure>,
        copied: &mut Vec<(u32, u64)>,
    ) {
        let bs = self.block as usize;
        let mut order: Vec<usize> = (0..batch.len()).filter(|&k| read[k]).collect();
        order.sort_by_key(|&k| batch[k].1);
        let slot = |k: usize| &buf[k * bs..(k + 1) * bs];
        let mut i = 0;
        while i < order.len() {
            let mut j = i + 1;
            while j < order.len() && batch[order[j]].1 == batch[order[j - 1]].1 + 1 {
                j += 1;
            }
            let run: Vec<&[u8]> = order[i..j].iter().map(|&k| slot(k)).collect();
            if write_all_vectored_at(&self.origin, &run, batch[order[i]].3).is_ok() {
                copied.extend(order[i..j].iter().map(|&k| (batch[k].0, batch[k].1)));
            } else {
                for &k in &order[i..j] {
                    let (c, o, _, to) = batch[k];
                    match self.origin.write_all_at(slot(k), to) {
                        Ok(()) => copied.push((c, o)),
                        Err(e) => failed.push(Failure {
                            cblock: c,
                            oblock: o,
                            why: format!("writing the origin device failed: {e}"),
                        }),
                    }
                }
            }
            i = j;
        }
    }
}
