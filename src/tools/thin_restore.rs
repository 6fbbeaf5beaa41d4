//! `thin_restore`: builds thin-pool metadata from the XML of `thin_dump`.

use super::cli::Cli;
use super::thin_xml::parse_in_background;
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
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

struct Options {
    input: PathBuf,
    output: PathBuf,
    overrides: Overrides,
}

fn natural<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| anyhow::anyhow!("{opt}: '{v}' is not a natural number"))
}

fn parse_args(args: &[String]) -> Result<Option<Options>> {
    let (mut input, mut output) = (None, None);
    let mut overrides = Overrides::default();
    let mut i = 0;
    while i < args.len() {
        // `--opt=value` as well as `--opt value`.
        let (opt, inline) = match args[i].split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (args[i].as_str(), None),
        };
        let mut value = || -> Result<String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i)
                .cloned()
                .with_context(|| format!("{opt} needs a value"))
        };
        match opt {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-q" | "--quiet" => {}
            "-i" | "--input" => input = Some(PathBuf::from(value()?)),
            "-o" | "--output" => output = Some(PathBuf::from(value()?)),
            "--transaction-id" => {
                overrides.transaction_id = Some(natural(opt, &value()?)?);
            }
            "--data-block-size" => {
                overrides.data_block_size = Some(natural(opt, &value()?)?);
            }
            "--nr-data-blocks" => overrides.nr_data_blocks = Some(natural(opt, &value()?)?),
            s => bail!("unrecognised option '{s}'"),
        }
        i += 1;
    }
    Ok(Some(Options {
        input: input.context("No input file provided.")?,
        output: output.context("No output file provided.")?,
        overrides,
    }))
}

pub fn run(args: &[String]) -> ExitCode {
    let cli = Cli {
        usage: USAGE,
        prefix: "thin_restore: ",
        usage_status: 1,
    };
    cli.run(args, parse_args, |o| restore(o).map(|()| true))
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
    parse_in_background(input, &mut restorer)
}
