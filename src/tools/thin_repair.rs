//! `thin_repair -i IN -o OUT`: recovers what can be read of damaged
//! thin-pool metadata and writes it, consistent, to another device or file.

use super::cli::Cli;
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use thin::repair::{recover, RepairOptions};
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

/// The overrides `thin_repair` and `thin_dump --repair` share; true when
/// `arg` was one (its value taken from `value`).
pub fn parse_override(
    arg: &str,
    value: &mut dyn FnMut() -> Result<String>,
    o: &mut RepairOptions,
) -> Result<bool> {
    fn number<T: std::str::FromStr>(arg: &str, s: String) -> Result<T> {
        s.parse()
            .ok()
            .with_context(|| format!("{arg} needs a number, not '{s}'"))
    }
    match arg {
        "--transaction-id" => o.transaction_id = Some(number(arg, value()?)?),
        "--data-block-size" => o.data_block_size = Some(number(arg, value()?)?),
        "--nr-data-blocks" => o.nr_data_blocks = Some(number(arg, value()?)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let (mut input, mut output, mut quiet) = (None, None, false);
    let mut repair = RepairOptions::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let mut value = || -> Result<String> {
            i += 1;
            args.get(i)
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-q" | "--quiet" => quiet = true,
            // 1.x's I/O engine switch: one engine here.
            "--async-io" => {}
            "-i" | "--input" => input = Some(PathBuf::from(value()?)),
            "-o" | "--output" => output = Some(PathBuf::from(value()?)),
            s if parse_override(s, &mut value, &mut repair)? => {}
            s => bail!("unrecognised option '{s}'"),
        }
        i += 1;
    }
    let input = input.context("No input file provided.")?;
    let output = output.context("No output file provided.")?;
    Ok(Some(Options {
        input,
        output,
        quiet,
        repair,
    }))
}

pub fn run(args: &[String]) -> ExitCode {
    let cli = Cli {
        usage: USAGE,
        prefix: "thin_repair: ",
        usage_status: 1,
    };
    cli.run(args, parse, |o| repair(o).map(|()| true))
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
    let mut restorer = Restorer::new(output);
    let report = recover(input, &o.repair, &mut restorer).map_err(|e| {
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
