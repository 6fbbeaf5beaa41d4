//! `thin_dump`: thin-pool metadata as XML (the established tools' format,
//! element for element) or as human-readable text.

use super::counted::Counted;
use super::in_out::{parse_override, DATA_BLOCK_SIZE, NR_DATA_BLOCKS, TRANSACTION_ID};
use super::xml::{HumanWriter, XmlWriter};
use crate::tools::cli::{
    distinct, exit_status, number, open_output, open_reader, GetOpt, HasArg, Opt, Progress,
    ASYNC_IO, HELP, QUIET, VERSION,
};
use anyhow::{bail, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use thin::dump::DumpOptions;
use thin::ir::Visitor;
use thin::repair::{recover_with_progress, RepairOptions};
use thin::restore::Overrides;
use thin::ThinMetadata;

const USAGE: &str = "Usage: thin_dump [options] {device|file}
Options:
  {-h|--help}
  {-f|--format} {xml|human_readable}
  {-r|--repair}
  {--transaction-id} <natural>
  {--data-block-size} <natural>
  {--nr-data-blocks} <natural>
  {-m|--metadata-snap} [block#]
  {-o|--output} <xml file>
  {--dev-id} <dev-id>
  {--skip-mappings}
  {-q|--quiet}
  {-V|--version}
";

/// A walk holds one path and one prefetched batch of leaves: 4 MiB is ample.
const CACHE_BLOCKS: usize = 1024;

#[derive(PartialEq)]
enum Format {
    Xml,
    Human,
}

struct Options {
    format: Format,
    /// Recover what reads of damaged metadata (with these overrides).
    repair: Option<RepairOptions>,
    metadata_snap: bool,
    /// The snapshot's block, when given: it must be the one held.
    snap_block: Option<u64>,
    output: Option<PathBuf>,
    dev_ids: Vec<u64>,
    skip_mappings: bool,
    /// Without --repair: superblock values printed instead of those read.
    overrides: Overrides,
    /// No progress bar, no warnings.
    quiet: bool,
    input: PathBuf,
}

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    Opt::both('f', "format", HasArg::Required, "format"),
    Opt::both('r', "repair", HasArg::No, "repair"),
    Opt::both('m', "metadata-snap", HasArg::Optional, "metadata-snap"),
    // 1.x's spelling.
    Opt::long("metadata-snapshot", HasArg::Optional, "metadata-snap"),
    Opt::both('o', "output", HasArg::Required, "output"),
    Opt::long("dev-id", HasArg::Required, "dev-id"),
    Opt::long("skip-mappings", HasArg::No, "skip-mappings"),
    TRANSACTION_ID,
    DATA_BLOCK_SIZE,
    NR_DATA_BLOCKS,
    ASYNC_IO,
];

fn is_number(s: &str) -> bool {
    s.parse::<u64>().is_ok()
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut o = Options {
        format: Format::Xml,
        repair: None,
        metadata_snap: false,
        snap_block: None,
        output: None,
        dev_ids: Vec::new(),
        skip_mappings: false,
        quiet: false,
        input: PathBuf::new(),
        overrides: Overrides::default(),
    };
    let mut overrides = RepairOptions::default();
    let mut g = GetOpt::new("thin_dump", OPTS, args).with_usage(USAGE);
    while let Some((id, value)) = g.next_opt()? {
        let value = value.unwrap_or_default();
        match id {
            "format" => {
                o.format = match value.as_str() {
                    "xml" => Format::Xml,
                    "human_readable" => Format::Human,
                    f => return Err(g.usage_error(format!("unknown format '{f}'"))),
                }
            }
            "repair" => {
                o.repair.get_or_insert_with(RepairOptions::default);
            }
            "metadata-snap" => {
                o.metadata_snap = true;
                // `-m5`, `--metadata-snap=5`, 1.x's `-m=5`, or a number in
                // the next word.
                let block = match value.strip_prefix('=').unwrap_or(&value) {
                    "" => g.take_next_if(is_number),
                    b => Some(b.to_string()),
                };
                if let Some(b) = block {
                    o.snap_block = Some(b.parse().map_err(|_| {
                        g.usage_error(format!("couldn't parse <metadata-snap> '{b}'"))
                    })?);
                }
            }
            "output" => o.output = Some(PathBuf::from(value)),
            "dev-id" => o
                .dev_ids
                .push(number(id, &value).map_err(|e| g.usage_error(e))?),
            "skip-mappings" => o.skip_mappings = true,
            "quiet" => o.quiet = true,
            "async-io" => {}
            _ => parse_override(id, &value, &mut overrides).map_err(|e| g.usage_error(e))?,
        }
    }
    o.input = g.single_input()?;
    if let Some(r) = &mut o.repair {
        if o.metadata_snap || o.skip_mappings || !o.dev_ids.is_empty() {
            return Err(g.usage_error(
                "--repair dumps the whole pool: it takes no -m, --dev-id or --skip-mappings",
            ));
        }
        *r = overrides;
    } else {
        // 1.x: printed instead of the values read.
        o.overrides = Overrides {
            transaction_id: overrides.transaction_id,
            data_block_size: overrides.data_block_size,
            nr_data_blocks: overrides.nr_data_blocks,
        };
    }
    Ok(o)
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(o) => exit_status("", dump(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn dump(o: &Options) -> Result<()> {
    if let Some(p) = &o.output {
        distinct(&o.input, p)?;
    }
    let dev = open_reader("thin_dump", &o.input, o.metadata_snap)?;
    let out = open_output(o.output.as_deref())?;
    // The bar shares the terminal with the text only when writing to a file.
    let quiet = o.quiet || o.output.is_none();
    if let Some(r) = &o.repair {
        let progress = Progress::new("thin_dump", 0, quiet);
        let report = write_as(&o.format, out, &progress, |out| {
            Ok(recover_with_progress(dev, r, out, &progress)?)
        })?;
        drop(progress);
        if !o.quiet {
            for w in &report.warnings {
                errln!("thin_dump: {w}");
            }
        }
        return Ok(());
    }
    let md = ThinMetadata::open_with_cache(dev, false, CACHE_BLOCKS)?;
    let held = md.superblock().held_root;
    if let Some(b) = o.snap_block.filter(|&b| b != held) {
        bail!("metadata snapshot {b} is not the one the superblock holds ({held})");
    }
    let opts = DumpOptions {
        metadata_snap: o.metadata_snap,
        dev_ids: o.dev_ids.clone(),
        skip_mappings: o.skip_mappings,
        overrides: o.overrides,
    };
    let progress = Progress::new("thin_dump", 0, quiet);
    write_as(&o.format, out, &progress, |out| {
        Ok(thin::dump::dump_with_progress(&md, &opts, out, &progress)?)
    })
}

/// Runs `f` with the writer of `format` over `out`, counting the mappings
/// it writes into `progress`. XmlWriter buffers by itself; the text form
/// goes through a BufWriter.
fn write_as<T>(
    format: &Format,
    out: Box<dyn Write>,
    progress: &Progress,
    f: impl FnOnce(&mut dyn Visitor) -> Result<T>,
) -> Result<T> {
    match format {
        Format::Xml => f(&mut Counted {
            inner: XmlWriter::new(out),
            progress,
        }),
        Format::Human => f(&mut Counted {
            inner: HumanWriter::new(std::io::BufWriter::with_capacity(1 << 20, out)),
            progress,
        }),
    }
}
