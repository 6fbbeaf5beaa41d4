//! `thin_repair -i IN -o OUT`: recovers what can be read of damaged
//! thin-pool metadata and writes it, consistent, to another device or file.

use super::cli::{exit_status, number};
use super::getopt::{GetOpt, HasArg, Opt};
use super::progress::Progress;
use super::thin_xml::Counted;
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use thin::repair::{recover_with_progress, RepairOptions};
use thin::restore::Restorer;

const USAGE: &str = "Usage: thin_repair [options] -i {device|file} -o {device|file}
Options:
  {-h|--help}
  {-i|--input} <input metadata (binary format)>
  {-o|--output} <output metadata (binary format)>
  {-q|--quiet}
  {--transaction-id} <natural>
  {--data-block-size} <natural>
  {--nr-data-blocks} <natural>
  {-V|--version}
";

struct Options {
    input: PathBuf,
    output: PathBuf,
    quiet: bool,
    repair: RepairOptions,
}

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

/// The superblock overrides `thin_repair`, `thin_restore` and
/// `thin_dump --repair` share, by option id; other ids are left alone.
pub fn parse_override(id: &str, value: &str, o: &mut RepairOptions) -> Result<(), String> {
    match id {
        "transaction-id" => o.transaction_id = Some(number(id, value)?),
        "data-block-size" => o.data_block_size = Some(number(id, value)?),
        "nr-data-blocks" => o.nr_data_blocks = Some(number(id, value)?),
        _ => {}
    }
    Ok(())
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let (mut input, mut output, mut quiet) = (None, None, false);
    let mut repair = RepairOptions::default();
    let mut g = GetOpt::new("thin_repair", OPTS, args).with_usage(USAGE);
    while let Some((id, value)) = g.next_opt()? {
        let value = value.unwrap_or_default();
        match id {
            "quiet" => quiet = true,
            "input" => input = Some(PathBuf::from(value)),
            "output" => output = Some(PathBuf::from(value)),
            "async-io" => {}
            _ => parse_override(id, &value, &mut repair).map_err(|e| g.usage_error(e))?,
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
        quiet,
        repair,
    })
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(o) => exit_status("thin_repair: ", repair(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn repair(o: &Options) -> Result<()> {
    if same_file(&o.input, &o.output) {
        bail!("the input and the output are the same file: repair writes to another one");
    }
    let input: Arc<dyn BlockDevice> = Arc::new(
        FileDevice::open(&o.input, false)
            .with_context(|| format!("cannot open {}", o.input.display()))?,
    );
    let out_dev = FileDevice::open(&o.output, true)
        .with_context(|| format!("cannot open {}", o.output.display()))?;
    let out_blocks = out_dev.nr_blocks();
    let output: Arc<dyn BlockDevice> = Arc::new(out_dev);
    // Mappings written, out of those recovered.
    let progress = Progress::new("thin_repair", 0, o.quiet);
    let mut restorer = Counted {
        inner: Restorer::new(output),
        progress: &progress,
    };
    let recovered = recover_with_progress(input, &o.repair, &mut restorer, &progress);
    drop(progress);
    let report = recovered.map_err(|e| {
        if matches!(e, thin::ThinError::Pdata(pdata::Error::NoSpace(_))) {
            anyhow::anyhow!(
                "the output ({out_blocks} blocks of 4 KiB) is too small for the recovered metadata: give it more space"
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if !o.quiet {
        for w in &report.warnings {
            eprintln!("thin_repair: {w}");
        }
    }
    Ok(())
}
