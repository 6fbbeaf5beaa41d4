//! `thin_dump`: thin-pool metadata as XML (the established tools' format,
//! element for element) or as human-readable text.

use super::cli::Cli;
use super::progress::Progress;
use super::thin_repair::parse_override;
use super::thin_xml::{Counted, HumanWriter, XmlWriter};
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use thin::dump::DumpOptions;
use thin::repair::{recover, RepairOptions};
use thin::ThinMetadata;

const USAGE: &str = "Usage: thin_dump [options] {device|file}
Options:
  {-h|--help}
  {-f|--format} {xml|human_readable}
  {-r|--repair}
  {--transaction-id} <natural> (with --repair)
  {--data-block-size} <natural> (with --repair)
  {--nr-data-blocks} <natural> (with --repair)
  {-m|--metadata-snap} [block#]
  {-o <xml file>}
  {--dev-id} <dev-id>
  {--skip-mappings}
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
    output: Option<PathBuf>,
    dev_ids: Vec<u64>,
    skip_mappings: bool,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options {
        format: Format::Xml,
        repair: None,
        metadata_snap: false,
        output: None,
        dev_ids: Vec::new(),
        skip_mappings: false,
        input: PathBuf::new(),
    };
    let mut input = None;
    let mut overrides = RepairOptions::default();
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
            "-f" | "--format" => {
                o.format = match value()?.as_str() {
                    "xml" => Format::Xml,
                    "human_readable" => Format::Human,
                    f => bail!("unknown format '{f}'"),
                }
            }
            "-r" | "--repair" => {
                o.repair.get_or_insert_with(RepairOptions::default);
            }
            "-m" | "--metadata-snap" => {
                o.metadata_snap = true;
                // An optional block number may follow; the held root is used.
                if args.get(i + 1).is_some_and(|n| n.parse::<u64>().is_ok()) {
                    i += 1;
                }
            }
            "-o" | "--output" => o.output = Some(PathBuf::from(value()?)),
            "--dev-id" => o
                .dev_ids
                .push(value()?.parse().context("--dev-id needs a number")?),
            "--skip-mappings" => o.skip_mappings = true,
            s if parse_override(s, &mut value, &mut overrides)? => {}
            s if s.starts_with('-') => bail!("unrecognised option '{s}'"),
            s => {
                if input.replace(PathBuf::from(s)).is_some() {
                    bail!("only one input is allowed");
                }
            }
        }
        i += 1;
    }
    o.input = input.context("No input file provided.")?;
    if let Some(r) = &mut o.repair {
        if o.metadata_snap || o.skip_mappings || !o.dev_ids.is_empty() {
            bail!("--repair dumps the whole pool: it takes no -m, --dev-id or --skip-mappings");
        }
        *r = overrides;
    } else if overrides != RepairOptions::default() {
        bail!("--transaction-id, --data-block-size and --nr-data-blocks go with --repair");
    }
    Ok(Some(o))
}

pub fn run(args: &[String]) -> ExitCode {
    let cli = Cli {
        usage: USAGE,
        prefix: "",
        usage_status: 1,
    };
    cli.run(args, parse, |o| dump(o).map(|()| true))
}

fn dump(o: &Options) -> Result<()> {
    let dev: Arc<dyn BlockDevice> = Arc::new(
        FileDevice::open(&o.input, false)
            .with_context(|| format!("cannot open {}", o.input.display()))?,
    );
    let out: Box<dyn Write> = match &o.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    if let Some(r) = &o.repair {
        let report = match o.format {
            Format::Xml => recover(dev, r, &mut XmlWriter::new(out))?,
            Format::Human => recover(
                dev,
                r,
                &mut HumanWriter::new(std::io::BufWriter::with_capacity(1 << 20, out)),
            )?,
        };
        for w in &report.warnings {
            eprintln!("thin_dump: {w}");
        }
        return Ok(());
    }
    let md = ThinMetadata::open_with_cache(dev, false, CACHE_BLOCKS)?;
    // XmlWriter buffers by itself; the text form goes through a BufWriter.
    let opts = DumpOptions {
        metadata_snap: o.metadata_snap,
        dev_ids: o.dev_ids.clone(),
        skip_mappings: o.skip_mappings,
    };
    // The bar shares the terminal with the text only when writing to a file.
    let quiet = o.output.is_none();
    let total = if quiet {
        0
    } else {
        thin::dump::total_mapped(&md, &opts)?
    };
    let progress = Progress::new("thin_dump", total, quiet);
    match o.format {
        Format::Xml => {
            let inner = XmlWriter::new(out);
            thin::dump::dump(
                &md,
                &opts,
                &mut Counted {
                    inner,
                    progress: &progress,
                },
            )?
        }
        Format::Human => {
            let inner = HumanWriter::new(std::io::BufWriter::with_capacity(1 << 20, out));
            thin::dump::dump(
                &md,
                &opts,
                &mut Counted {
                    inner,
                    progress: &progress,
                },
            )?
        }
    }
    Ok(())
}
