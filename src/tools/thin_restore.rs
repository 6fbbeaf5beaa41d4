//! `thin_restore`: builds thin-pool metadata from the XML of `thin_dump`.

use super::cli::exit_status;
use super::getopt::{GetOpt, HasArg, Opt};
use super::progress::{CountingReader, Progress};
use super::thin_repair::parse_override;
use super::thin_xml::parse_in_background;
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use thin::repair::RepairOptions;
use thin::restore::{Overrides, Restorer};

const USAGE: &str = "Usage: thin_restore [options]
Options:
  {-h|--help}
  {-i|--input} <input xml file>
  {-o|--output} <output device or file>
  {--transaction-id} <natural>
  {--data-block-size} <natural>
  {--nr-data-blocks} <natural>
  {-q|--quiet}
  {-V|--version}
";

const OPTS: &[Opt] = &[
    Opt::both('h', "help", HasArg::No, "help"),
    Opt::both('V', "version", HasArg::No, "version"),
    Opt::both('q', "quiet", HasArg::No, "quiet"),
    Opt::both('i', "input", HasArg::Required, "input"),
    Opt::both('o', "output", HasArg::Required, "output"),
    Opt::long("transaction-id", HasArg::Required, "transaction-id"),
    Opt::long("data-block-size", HasArg::Required, "data-block-size"),
    Opt::long("nr-data-blocks", HasArg::Required, "nr-data-blocks"),
    // 1.x's I/O engine switch: one engine here.
    Opt::long("async-io", HasArg::No, "async-io"),
];

struct Options {
    input: PathBuf,
    output: PathBuf,
    overrides: Overrides,
    quiet: bool,
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let (mut input, mut output, mut quiet) = (None, None, false);
    let mut o = RepairOptions::default();
    let mut g = GetOpt::new("thin_restore", OPTS, args).with_usage(USAGE);
    while let Some((id, value)) = g.next_opt()? {
        let value = value.unwrap_or_default();
        match id {
            "quiet" => quiet = true,
            "input" => input = Some(PathBuf::from(value)),
            "output" => output = Some(PathBuf::from(value)),
            "async-io" => {}
            _ => parse_override(id, &value, &mut o).map_err(|e| g.usage_error(e))?,
        }
    }
    if let Some(extra) = g.operands.first() {
        return Err(g.usage_error(format!(
            "unexpected argument '{extra}': give the input with -i and the output with -o"
        )));
    }
    let Some(input) = input else {
        return Err(g.usage_error("No input file provided."));
    };
    let Some(output) = output else {
        return Err(g.usage_error("No output file provided."));
    };
    Ok(Options {
        input,
        output,
        overrides: Overrides {
            transaction_id: o.transaction_id,
            data_block_size: o.data_block_size,
            nr_data_blocks: o.nr_data_blocks,
        },
        quiet,
    })
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(o) => exit_status("thin_restore: ", restore(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn restore(o: &Options) -> Result<()> {
    let input =
        File::open(&o.input).with_context(|| format!("cannot open {}", o.input.display()))?;
    if !o.output.exists() {
        bail!(
            "{} does not exist.\n\nThe output file should either be a block device,\nor an existing file.  The file needs to be large\nenough to hold the metadata.",
            o.output.display()
        );
    }
    let dev: Arc<dyn BlockDevice> = Arc::new(
        FileDevice::open(&o.output, true)
            .with_context(|| format!("cannot open {}", o.output.display()))?,
    );
    let mut restorer = Restorer::new(dev).with_overrides(o.overrides);
    // Input bytes parsed, out of the file's length.
    let len = input.metadata().map_or(0, |m| m.len());
    let progress = Progress::new("thin_restore", len, o.quiet || len == 0);
    let input = CountingReader {
        inner: input,
        progress: &progress,
    };
    parse_in_background(input, &mut restorer)
}
