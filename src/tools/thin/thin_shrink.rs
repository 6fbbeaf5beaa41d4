//! `thin_shrink -i META_IN -o META_OUT --data DATA --nr-blocks N`: makes an
//! inactive pool fit a data device of N blocks. Mapped data blocks at or
//! above N move to blocks below N that are free in META_IN's data space
//! map (their data copied on DATA, synced), then META_OUT gets the same
//! pool with the new mappings and `nr_data_blocks = N`, built in bulk as
//! thin_restore builds (superblock last). META_IN is only read: until the
//! new metadata is in use, the old pool is intact, whatever stopped the
//! run. A held metadata snapshot is not carried over (warned); a size at
//! or above the current one moves nothing and rewrites the size.

use super::counted::Counted;
use crate::tools::cli::{
    distinct, exit_status, number, open_data, open_exclusive, open_restore_output, parse_in_out,
    same_file, HasArg, Opt, Progress, ASYNC_IO, HELP, INPUT, OUTPUT, QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use thin::dump::{dump_with_progress, DumpOptions};
use thin::restore::Restorer;
use thin::shrink::{copy_data, plan, Remapped};
use thin::ThinMetadata;

const USAGE: &str = "Usage: thin_shrink [options] -i {device|file} -o {device|file} --data {device|file} --nr-blocks <natural>
Options:
  {-h|--help}
  {-i|--input} <input metadata (binary format)>
  {-o|--output} <output metadata (binary format)>
  {--data} <the pool's data device or file>
  {--nr-blocks} <the new size, in data blocks>
  {--no-copy}
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
    // 1.x's switch from its XML mode to binary metadata, which is all
    // this tool reads.
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
    quiet: bool,
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(a) => exit_status("thin_shrink: ", shrink(&a).map(|()| true)),
        Err(status) => status,
    }
}

fn parse(args: &[String]) -> Result<Args, ExitCode> {
    let (mut data, mut nr_blocks, mut no_copy) = (None, None, false);
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
            _ => {}
        }
        Ok(())
    })?;
    let usage_error = |msg: &str| {
        eprint!("{msg}\n{USAGE}");
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
        quiet: io.quiet,
    })
}

/// 1.x reads XML without `--binary`: say so rather than call it damaged.
fn refuse_xml(path: &Path) -> Result<()> {
    let mut head = [0u8; 1];
    let is_xml = std::fs::metadata(path).is_ok_and(|m| m.is_file())
        && std::fs::File::open(path).is_ok_and(|mut f| f.read_exact(&mut head).is_ok())
        && head[0] == b'<';
    if is_xml {
        bail!(
            "{} is XML: thin_shrink works on binary metadata (build it with thin_restore first)",
            path.display()
        );
    }
    Ok(())
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
    refuse_xml(&a.input)?;
    // Held exclusively: refused while a pool is active, and none can be
    // activated on it while we work.
    let md = ThinMetadata::open_with_cache(open_exclusive(&a.input)?, false, CACHE_BLOCKS)
        .with_context(|| format!("cannot read the metadata on {}", a.input.display()))?;
    if md.needs_check() {
        bail!("the metadata needs a check (its needs_check flag is set): run thin_check first");
    }
    let data = match (&a.data, a.no_copy) {
        (Some(d), false) => Some(open_data(d, true)?.0),
        _ => None,
    };
    let output = open_restore_output(&a.output)?;
    let plan = plan(&md, a.nr_blocks)?;
    if md.held_root().is_some() && !a.quiet {
        eprintln!(
            "thin_shrink: warning: the metadata snapshot is not carried over to the new metadata"
        );
    }
    if let Some(data) = &data {
        let block_bytes = u64::from(md.data_block_size()) * SECTOR_BYTES;
        let progress = Progress::new("thin_shrink: copying", 0, a.quiet);
        copy_data(data, &plan, block_bytes, &progress)?;
    }
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
