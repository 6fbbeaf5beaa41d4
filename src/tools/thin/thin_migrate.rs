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
//! The copying itself is [`super::migrate_copy`].

use super::live_pool::{self, HeldSnapshot};
use super::migrate_copy::{Copier, Out};
use crate::tools::cli::{
    catch_interrupts, exit_status, number, open_data, open_reader, same_file, size_of, GetOpt,
    HasArg, Opt, Progress, DATA_DEV, HELP, METADATA_DEV, QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use pdata::io::check_file_or_block_device;
use pdata::live::LiveMetadata;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;
use thin::migrate::{device_root, mapped_end, Plan};
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

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    METADATA_DEV,
    DATA_DEV,
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
            "metadata" => set(&mut metadata, path),
            "data" => set(&mut data, path),
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

    // The data device exclusively (an active pool's is refused); a live
    // volume as it is (it may be mounted, frozen for the copy).
    let mut src = if live {
        std::fs::File::open(&data).with_context(|| format!("cannot open {}", data.display()))?
    } else {
        open_data(&data, false)?.0
    };
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
        in_kernel: Copier::in_kernel_allowed(),
    };
    copier.run(plan, &out, (o.buffer_bytes / 2).max(block.min(1 << 20)))?;
    out.file
        .sync_all()
        .with_context(|| format!("syncing {} failed", dest_path.display()))?;
    Ok(())
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
