//! `thin_metadata_unpack -i PACK -o META [-f]`: writes the blocks of a
//! metadata pack (ours or the established 1.x tool's) back to a file, of
//! the size the pack records, or to a block device at least that large
//! (whose blocks the pack does not hold are left as they are, as the
//! upstream tool leaves them).

use crate::tools::cli::{
    distinct, exit_status, open_device, parse_in_out, refuse_overwrite, CountingReader, Opt,
    Progress, FORCE, HELP, INPUT, OUTPUT, QUIET, VERSION,
};
use anyhow::{Context, Result};
use pdata::io::FileDevice;
use std::io::BufReader;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "Usage: thin_metadata_unpack [options] -i {file} -o {device|file}
Unpacks a compressed file of metadata blocks (thin_metadata_pack's).
Options:
  {-f|--force}     overwrite an output that is not empty
  {-h|--help}
  {-i|--input} <input pack file>
  {-o|--output} <output metadata (binary format): device or file>
  {-q|--quiet}     no progress bar
  {-V|--version}
";

const OPTS: &[Opt] = &[HELP, VERSION, QUIET, FORCE, INPUT, OUTPUT];

pub fn run(args: &[String]) -> ExitCode {
    match parse_in_out("thin_metadata_unpack", USAGE, OPTS, args, |_, _| Ok(())) {
        Ok(o) => exit_status(
            "thin_metadata_unpack: ",
            unpack(&o.input, &o.output, o.force, o.quiet).map(|()| true),
        ),
        Err(status) => status,
    }
}

fn unpack(input: &Path, output: &Path, force: bool, quiet: bool) -> Result<()> {
    distinct(input, output)?;
    let what = || format!("cannot read {}", input.display());
    pdata::io::check_file_or_block_device(input).with_context(what)?;
    let file = std::fs::File::open(input).with_context(what)?;
    let len = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let mut reader = BufReader::with_capacity(1 << 20, file);
    // The header is checked before the output is touched.
    let nr_blocks = pdata::pack::read_header(&mut reader).with_context(what)?;
    refuse_overwrite(output, force)?;
    let is_device = std::fs::metadata(output).is_ok_and(|m| m.file_type().is_block_device());
    let dev = if is_device {
        // At least nr_blocks large: unpack checks.
        open_device(output, true)?
    } else {
        FileDevice::create(output, nr_blocks)
            .with_context(|| format!("cannot create {}", output.display()))?
    };
    let progress = Progress::new("thin_metadata_unpack", len.unwrap_or(0), quiet);
    let mut counted = CountingReader {
        inner: reader,
        progress: &progress,
    };
    let done = pdata::pack::unpack(&mut counted, len, nr_blocks, &dev, &progress);
    drop(progress);
    if done.is_err() && !is_device {
        // Half the blocks are no metadata: leave nothing that looks like it.
        let _ = std::fs::remove_file(output);
    }
    done.with_context(|| format!("unpacking {}", input.display()))?;
    Ok(())
}
