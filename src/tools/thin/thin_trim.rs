//! `thin_trim`: discards the data blocks the pool does not use (count zero
//! in the data space map), offline. On a block device each free run is a
//! BLKDISCARD; on a regular file (an image) it becomes a hole, punched
//! with the file size kept.
//!
//! Every mapping tree is walked first (every node validated): if the space
//! map calls a mapped block free, nothing is discarded. The mapped blocks
//! are counted window by window within the data budget, so memory stays
//! flat however large the pool. Block devices are
//! opened exclusively, so a pool still active makes it fail (EBUSY).

use crate::tools::cli::{
    data_budget, discard, exit_status, open_data, open_exclusive, punch_hole, GetOpt, HasArg, Opt,
    DATA_DEV, HELP, METADATA_DEV, QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use pdata::live::LiveMetadata;
use pdata::space_map::counts::WINDOW_BUDGET;
use std::io::{Seek, SeekFrom};
use std::ops::{ControlFlow, Range};
use std::path::PathBuf;
use std::process::ExitCode;
use thin::query::device_roots;
use thin::query::free_space::{first_mapped_free, free_ranges_until};
use thin::ThinMetadata;

const USAGE: &str =
    "Usage: thin_trim [options] --metadata-dev {device|file} --data-dev {device|file}
Options:
  {-h|--help}
  {-q|--quiet}
  {-V|--version}
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    METADATA_DEV,
    DATA_DEV,
    Opt::long("pool-inactive", HasArg::No, "pool-inactive"),
];

const SECTOR_BYTES: u64 = 512;
/// Every node and bitmap is read once.
const CACHE_BLOCKS: usize = 1024;

struct Options {
    metadata: PathBuf,
    data: PathBuf,
    quiet: bool,
}

pub fn run(args: &[String]) -> ExitCode {
    let mut metadata = None;
    let mut data = None;
    let mut quiet = false;
    let mut g = GetOpt::new("thin_trim", OPTS, args).with_usage(USAGE);
    loop {
        match g.next_opt() {
            Err(status) => return status,
            Ok(None) => break,
            Ok(Some(("quiet", _))) => quiet = true,
            Ok(Some(("metadata", v))) => metadata = v.map(PathBuf::from),
            Ok(Some(("data", v))) => data = v.map(PathBuf::from),
            Ok(Some(_)) => errln!(
                "--pool-inactive no longer required since we ensure the metadata device is opened exclusively."
            ),
        }
    }
    let (Some(metadata), Some(data)) = (metadata, data) else {
        err!("{USAGE}");
        return ExitCode::from(1);
    };
    let o = Options {
        metadata,
        data,
        quiet,
    };
    exit_status("", trim(&o).map(|()| true))
}

fn trim(o: &Options) -> Result<()> {
    // Held exclusively while trimming: refused when the pool is active,
    // and keeps it from being activated.
    let dev = open_exclusive(&o.metadata)?;
    let md = ThinMetadata::open_with_cache(dev, false, CACHE_BLOCKS)?;
    let sb = md.superblock().clone();
    let block_bytes = u64::from(sb.data_block_size) * SECTOR_BYTES;
    let nr_blocks = sb.data_sm_root.nr_blocks;
    let pool_bytes = nr_blocks
        .checked_mul(block_bytes)
        .context("the pool's size overflows 64 bits")?;

    let (mut data, is_block) = open_data(&o.data, true)?;
    let size = data.seek(SeekFrom::End(0))?;
    if size < pool_bytes {
        bail!(
            "data device {} holds {size} bytes, less than the pool's {pool_bytes} ({nr_blocks} blocks of {block_bytes} bytes)",
            o.data.display()
        );
    }
    if md.nr_free_data_blocks() == 0 {
        if !o.quiet {
            outln!("All data blocks allocated, nothing to discard")?;
        }
        return Ok(());
    }
    let discard_run = |r: Range<u64>| -> Result<()> {
        let (offset, len) = (r.start * block_bytes, (r.end - r.start) * block_bytes);
        let done = if is_block {
            discard(&data, offset, len)
        } else {
            punch_hole(&data, offset, len)
        };
        done.with_context(|| format!("discarding data blocks {}..{} failed", r.start, r.end))
    };
    let budget = data_budget().unwrap_or(WINDOW_BUDGET);
    match checked_free_ranges(&md, budget)? {
        Some(free) => free.into_iter().try_for_each(discard_run)?,
        // Too many runs to keep: read them again from the space map.
        None => {
            let mut failed = None;
            let tm = md.transaction_manager();
            free_ranges_until(tm, &sb.data_sm_root, nr_blocks, &mut |r| {
                Ok(match discard_run(r) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                })
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The data space map's free runs, once every mapping (of the live pool and
/// of a held metadata snapshot) is known to point outside them: a space map
/// that called a mapped block free would have its data discarded. The data
/// blocks are counted window by window within `budget` bytes, and the runs
/// kept within an eighth of it: None when there are more (all checked).
fn checked_free_ranges(md: &ThinMetadata, budget: usize) -> Result<Option<Vec<Range<u64>>>> {
    let tm = md.transaction_manager();
    let sb = md.superblock();
    let mut roots: Vec<u64> = device_roots(tm, sb.data_mapping_root)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    if let Some(snap) = md.metadata_snap()? {
        roots.extend(
            device_roots(tm, snap.data_mapping_root)?
                .into_iter()
                .map(|(_, r)| r),
        );
    }
    let max_kept = budget / 8 / std::mem::size_of::<Range<u64>>();
    let mut free = Some(Vec::new());
    let nr_metadata_blocks = tm.bm().nr_blocks();
    let mapped = first_mapped_free(
        tm,
        &sb.data_sm_root,
        &roots,
        nr_metadata_blocks,
        budget,
        &mut |r| {
            if free.as_ref().is_some_and(|f| f.len() >= max_kept) {
                free = None;
            }
            if let Some(f) = &mut free {
                f.push(r);
            }
            Ok(())
        },
    )?;
    if let Some(b) = mapped {
        bail!("data block {b} is mapped but free in the data space map: the metadata is damaged (run thin_check); nothing was discarded");
    }
    Ok(free)
}
