//! `thin_restore`: builds thin-pool metadata from the XML of `thin_dump`.

use super::thin_xml::tags;
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use thin::{DeviceDetails, ThinMetadata};

const USAGE: &str = "Usage: thin_restore [options]
Options:
  {-h|--help}
  {-i|--input} <input xml file>
  {-o|--output} <output device or file>
  {-q|--quiet}
  {-V|--version}
";

pub fn run(args: &[String]) -> ExitCode {
    let mut input = None;
    let mut output = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-q" | "--quiet" => {}
            "-i" | "--input" => {
                i += 1;
                input = args.get(i).map(PathBuf::from);
            }
            "-o" | "--output" => {
                i += 1;
                output = args.get(i).map(PathBuf::from);
            }
            s => {
                eprintln!("unrecognised option '{s}'\n{USAGE}");
                return ExitCode::from(1);
            }
        }
        i += 1;
    }
    let (Some(input), Some(output)) = (input, output) else {
        eprintln!(
            "No input file provided, or no output file provided.
{USAGE}"
        );
        return ExitCode::from(1);
    };
    match restore(&input, &output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thin_restore: {e:#}");
            if format!("{e:#}").contains("no free space in the metadata") {
                eprintln!(
                    "thin_restore: the output is too small for this metadata; give it more space"
                );
            }
            ExitCode::from(1)
        }
    }
}

fn restore(input: &Path, output: &Path) -> Result<()> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let tags = tags(&text)?;
    let dev: Arc<dyn BlockDevice> = Arc::new(
        FileDevice::open(output, true)
            .with_context(|| format!("cannot open {}", output.display()))?,
    );
    let mut md: Option<ThinMetadata> = None;
    let mut sb_fields = None;
    let mut current: Option<u64> = None;
    for t in &tags {
        match (t.name.as_str(), t.closing) {
            ("superblock", false) => {
                if md.is_some() {
                    bail!("line {}: a second <superblock>", t.line);
                }
                let dbs = u32::try_from(t.get("data_block_size")?)
                    .context("data_block_size too large")?;
                let m = ThinMetadata::format(dev.clone(), dbs, t.get("nr_data_blocks")?, true)
                    .context("cannot format the output")?;
                md = Some(m);
                sb_fields = Some((
                    u32::try_from(t.get_or("time", 0)?).context("time too large")?,
                    t.get_or("transaction", 0)?,
                    u32::try_from(t.get_or("flags", 0)?).context("flags too large")?,
                ));
            }
            ("superblock", true) => {}
            ("device", false) => {
                let m = md.as_mut().context("<device> outside <superblock>")?;
                let id = t.get("dev_id")?;
                let details = DeviceDetails {
                    mapped_blocks: t.get_or("mapped_blocks", 0)?,
                    transaction_id: t.get_or("transaction", 0)?,
                    creation_time: u32::try_from(t.get_or("creation_time", 0)?)?,
                    snapshotted_time: u32::try_from(t.get_or("snap_time", 0)?)?,
                };
                m.restore_device(id, details)
                    .with_context(|| format!("line {}: device {id}", t.line))?;
                current = Some(id);
            }
            ("device", true) => current = None,
            ("single_mapping", false) | ("range_mapping", false) => {
                let m = md.as_mut().context("mapping outside <superblock>")?;
                let dev = current
                    .with_context(|| format!("line {}: mapping outside <device>", t.line))?;
                let (origin, data, len) = if t.name == "single_mapping" {
                    (t.get("origin_block")?, t.get("data_block")?, 1)
                } else {
                    (
                        t.get("origin_begin")?,
                        t.get("data_begin")?,
                        t.get("length")?,
                    )
                };
                let time = u32::try_from(t.get_or("time", 0)?)?;
                for k in 0..len {
                    m.restore_mapping(dev, origin + k, data + k, time)
                        .with_context(|| format!("line {}", t.line))?;
                }
            }
            ("def", _) | ("ref", _) => {
                bail!(
                    "line {}: <{}> (shared sub-sequences) is not supported yet",
                    t.line,
                    t.name
                )
            }
            (other, _) => bail!("line {}: unexpected <{other}>", t.line),
        }
    }
    let mut md = md.context("no <superblock> in the input")?;
    let (time, trans, flags) = sb_fields.unwrap_or_default();
    md.restore_superblock(time, trans, flags);
    md.commit()
        .context("cannot write the metadata (is the output large enough?)")?;
    Ok(())
}
