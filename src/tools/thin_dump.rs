//! `thin_dump`: thin-pool metadata as XML (the established tools' format,
//! element for element) or as human-readable text.

use super::cli::Cli;
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use thin::ThinMetadata;

const USAGE: &str = "Usage: thin_dump [options] {device|file}
Options:
  {-h|--help}
  {-f|--format} {xml|human_readable}
  {-r|--repair}
  {-m|--metadata-snap} [block#]
  {-o <xml file>}
  {--dev-id} <dev-id>
  {--skip-mappings}
  {-V|--version}
";

#[derive(PartialEq)]
enum Format {
    Xml,
    Human,
}

struct Options {
    format: Format,
    metadata_snap: bool,
    output: Option<PathBuf>,
    dev_ids: Vec<u64>,
    skip_mappings: bool,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options {
        format: Format::Xml,
        metadata_snap: false,
        output: None,
        dev_ids: Vec::new(),
        skip_mappings: false,
        input: PathBuf::new(),
    };
    let mut input = None;
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
            "-r" | "--repair" => {}
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

/// Consecutive mappings (thin +1, data +1, same time) make one run.
struct Run {
    origin: u64,
    data: u64,
    len: u64,
    time: u32,
}

fn write_run(out: &mut dyn Write, r: &Run, fmt: &Format) -> std::io::Result<()> {
    match (fmt, r.len) {
        (Format::Xml, 1) => writeln!(
            out,
            "    <single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"{}\"/>",
            r.origin, r.data, r.time
        ),
        (Format::Xml, _) => writeln!(
            out,
            "    <range_mapping origin_begin=\"{}\" data_begin=\"{}\" length=\"{}\" time=\"{}\"/>",
            r.origin, r.data, r.len, r.time
        ),
        (Format::Human, 1) => writeln!(out, "    {} -> {}, {}", r.origin, r.data, r.time),
        (Format::Human, _) => writeln!(
            out,
            "    ({}..{}) -> ({}..{}), {}",
            r.origin,
            r.origin + r.len - 1,
            r.data,
            r.data + r.len - 1,
            r.time
        ),
    }
}

fn dump(o: &Options) -> Result<()> {
    let dev: Arc<dyn BlockDevice> = Arc::new(
        FileDevice::open(&o.input, false)
            .with_context(|| format!("cannot open {}", o.input.display()))?,
    );
    let md = ThinMetadata::open(dev, false)?;
    let live = md.superblock().clone();
    let sb = if o.metadata_snap {
        md.metadata_snap()?
            .context("no metadata snapshot is held")?
    } else {
        live.clone()
    };
    let devices = md.devices_at(sb.data_mapping_root, sb.device_details_root)?;
    let mut out: Box<dyn Write> = match &o.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut out);
    // The data size is the live pool's: a snapshot's space-map roots are zero.
    let nr_data_blocks = live.data_sm_root.nr_blocks;
    match o.format {
        Format::Xml => writeln!(
            out,
            "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\" flags=\"{}\" version=\"{}\" data_block_size=\"{}\" nr_data_blocks=\"{}\">",
            sb.time, sb.transaction_id, sb.flags, sb.version, sb.data_block_size, nr_data_blocks
        )?,
        Format::Human => writeln!(
            out,
            "begin superblock: \"\", {}, {}, {}, {}, {}, {}",
            sb.time, sb.transaction_id, sb.flags, sb.version, sb.data_block_size, nr_data_blocks
        )?,
    }
    for (id, d, root) in devices {
        if !o.dev_ids.is_empty() && !o.dev_ids.contains(&id) {
            continue;
        }
        match o.format {
            Format::Xml => writeln!(
                out,
                "  <device dev_id=\"{}\" mapped_blocks=\"{}\" transaction=\"{}\" creation_time=\"{}\" snap_time=\"{}\">",
                id, d.mapped_blocks, d.transaction_id, d.creation_time, d.snapshotted_time
            )?,
            Format::Human => writeln!(
                out,
                "device: {}\nmapped_blocks: {}\ntransaction: {}\ncreation time: {}\nsnap time: {}",
                id, d.mapped_blocks, d.transaction_id, d.creation_time, d.snapshotted_time
            )?,
        }
        if !o.skip_mappings {
            let mut run: Option<Run> = None;
            let mut io_err = None;
            md.walk_subtree(root, &mut |v, b, t| {
                match &mut run {
                    Some(r) if v == r.origin + r.len && b == r.data + r.len && t == r.time => {
                        r.len += 1
                    }
                    _ => {
                        if let Some(r) = run.replace(Run {
                            origin: v,
                            data: b,
                            len: 1,
                            time: t,
                        }) {
                            if let Err(e) = write_run(&mut out, &r, &o.format) {
                                io_err = Some(e);
                            }
                        }
                    }
                }
                Ok(())
            })?;
            if let Some(e) = io_err {
                return Err(e.into());
            }
            if let Some(r) = run {
                write_run(&mut out, &r, &o.format)?;
            }
        }
        match o.format {
            Format::Xml => writeln!(out, "  </device>")?,
            Format::Human => writeln!(out)?,
        }
    }
    match o.format {
        Format::Xml => writeln!(out, "</superblock>")?,
        Format::Human => writeln!(out, "end superblock")?,
    }
    out.flush()?;
    Ok(())
}
