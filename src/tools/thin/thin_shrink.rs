//! `thin_shrink -i META_IN -o META_OUT --data DATA --nr-blocks N`: makes an
//! inactive pool fit a data device of N blocks. Mapped data blocks at or
//! above N move to blocks below N that are free in META_IN's data space
//! map (their data copied on DATA, synced), then META_OUT gets the same
//! pool with the new mappings and `nr_data_blocks = N`, built in bulk as
//! thin_restore builds (superblock last). META_IN is only read: until the
//! new metadata is in use, the old pool is intact, whatever stopped the
//! run. A held metadata snapshot is not carried over (warned); a size at
//! or above the current one moves nothing and rewrites the size.
//!
//! An XML input (1.x's mode without `--binary`) gives an XML output: it
//! is read twice (the blocks mapped, then the rewrite), and a block is
//! free when no mapping points at it.

use super::counted::Counted;
use super::xml::{parse_in_background, XmlWriter};
use crate::tools::cli::{
    distinct, exit_status, number, open_data, open_exclusive, open_output, open_restore_output,
    open_text_input, parse_in_out, same_file, HasArg, Opt, Progress, ASYNC_IO, HELP, INPUT, OUTPUT,
    QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use thin::dump::{dump_with_progress, DumpOptions};
use thin::format::superblock::{data_block_size_error, valid_data_block_size};
use thin::restore::Restorer;
use thin::shrink::{copy_data, plan, MappedBlocks, Plan, Remapped};
use thin::ThinMetadata;

const USAGE: &str = "Usage: thin_shrink [options] -i {device|file} -o {device|file} --data {device|file} --nr-blocks <natural>
Options:
  {-h|--help}
  {-i|--input} <input metadata (binary format, or XML)>
  {-o|--output} <output metadata (binary format; XML for XML)>
  {--data} <the pool's data device or file>
  {--nr-blocks} <the new size, in data blocks>
  {--no-copy}
  {--binary}
  {-q|--quiet}
  {-V|--version}
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    INPUT,
    OUTPUT,
    Opt::long("data", HasArg::Required, "data"),
    Opt::long("nr-blocks", HasArg::Required, "nr-blocks"),
    Opt::long("no-copy", HasArg::No, "no-copy"),
    // 1.x's switch from its default XML form to binary metadata. Here the
    // input tells which it is; with the switch, XML is refused.
    Opt::long("binary", HasArg::No, "binary"),
    ASYNC_IO,
];

const SECTOR_BYTES: u64 = 512;
/// Every node is read once or twice (the plan, the rewrite).
const CACHE_BLOCKS: usize = 1024;

struct Args {
    input: PathBuf,
    output: PathBuf,
    data: Option<PathBuf>,
    nr_blocks: u64,
    no_copy: bool,
    binary: bool,
    quiet: bool,
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(a) => exit_status("thin_shrink: ", shrink(&a).map(|()| true)),
        Err(status) => status,
    }
}

fn parse(args: &[String]) -> Result<Args, ExitCode> {
    let (mut data, mut nr_blocks, mut no_copy, mut binary) = (None, None, false, false);
    let io = parse_in_out("thin_shrink", USAGE, OPTS, args, |id, value| {
        match id {
            "data" => data = Some(PathBuf::from(value)),
            "nr-blocks" => {
                let n: u64 = number(id, value)?;
                if n == 0 {
                    return Err("--nr-blocks must be at least 1".into());
                }
                nr_blocks = Some(n);
            }
            "no-copy" => no_copy = true,
            "binary" => binary = true,
            _ => {}
        }
        Ok(())
    })?;
    let usage_error = |msg: &str| {
        err!("{msg}\n{USAGE}");
        ExitCode::from(1)
    };
    let Some(nr_blocks) = nr_blocks else {
        return Err(usage_error("No new size given (--nr-blocks)."));
    };
    if data.is_none() && !no_copy {
        return Err(usage_error("No data device given (--data)."));
    }
    Ok(Args {
        input: io.input,
        output: io.output,
        data,
        nr_blocks,
        no_copy,
        binary,
        quiet: io.quiet,
    })
}

/// Whether `path` is a regular file whose first non-blank byte is `<`
/// and that starts as text (a superblock's checksum may begin with `<`,
/// but its block number is zero bytes).
fn is_xml(path: &Path) -> bool {
    let mut head = [0u8; 256];
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    head[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') && !head[..n].contains(&0)
}

/// The data device, unless `--no-copy`.
fn open_data_unless_no_copy(a: &Args) -> Result<Option<std::fs::File>> {
    Ok(match (&a.data, a.no_copy) {
        (Some(d), false) => Some(open_data(d, true)?.0),
        _ => None,
    })
}

/// Copies what `plan` moves on `data`, if given.
fn copy(a: &Args, data: Option<&std::fs::File>, plan: &Plan, block_sectors: u32) -> Result<()> {
    if let Some(data) = data {
        let block_bytes = u64::from(block_sectors) * SECTOR_BYTES;
        let progress = Progress::new("thin_shrink: copying", 0, a.quiet);
        copy_data(data, plan, block_bytes, &progress)?;
    }
    Ok(())
}

/// XML in, XML out.
fn shrink_xml(a: &Args) -> Result<()> {
    if a.binary {
        bail!(
            "{} is XML, not binary metadata (--binary)",
            a.input.display()
        );
    }
    let mut mapped = MappedBlocks::default();
    parse_in_background(open_text_input(&a.input)?, &mut mapped)?;
    let Some(pool) = mapped.pool() else {
        bail!("no <superblock> in {}", a.input.display());
    };
    if !valid_data_block_size(pool.data_block_size) {
        bail!(data_block_size_error(pool.data_block_size));
    }
    let data = open_data_unless_no_copy(a)?;
    let plan = mapped.plan(a.nr_blocks)?;
    copy(a, data.as_ref(), &plan, pool.data_block_size)?;
    let mut writer = Remapped {
        plan: &plan,
        inner: XmlWriter::new(open_output(Some(&a.output))?),
    };
    parse_in_background(open_text_input(&a.input)?, &mut writer)
}

fn shrink(a: &Args) -> Result<()> {
    distinct(&a.input, &a.output)?;
    if let Some(d) = &a.data {
        if same_file(d, &a.input) || same_file(d, &a.output) {
            bail!(
                "the data device {} is also named as metadata: give the pool's data device",
                d.display()
            );
        }
    }
    if is_xml(&a.input) {
        return shrink_xml(a);
    }
    // Held exclusively: refused while a pool is active, and none can be
    // activated on it while we work.
    let md = ThinMetadata::open_with_cache(open_exclusive(&a.input)?, false, CACHE_BLOCKS)
        .with_context(|| format!("cannot read the metadata on {}", a.input.display()))?;
    if md.needs_check() {
        bail!("the metadata needs a check (its needs_check flag is set): run thin_check first");
    }
    let data = open_data_unless_no_copy(a)?;
    let output = open_restore_output(&a.output)?;
    let plan = plan(&md, a.nr_blocks)?;
    if md.held_root().is_some() && !a.quiet {
        errln!(
            "thin_shrink: warning: the metadata snapshot is not carried over to the new metadata"
        );
    }
    copy(a, data.as_ref(), &plan, md.data_block_size())?;
    // Mappings written, out of the devices' mapped blocks.
    let progress = Progress::new("thin_shrink", 0, a.quiet);
    let mut writer = Remapped {
        plan: &plan,
        inner: Counted {
            inner: Restorer::new(output),
            progress: &progress,
        },
    };
    dump_with_progress(&md, &DumpOptions::default(), &mut writer, &progress)?;
    Ok(())
}
