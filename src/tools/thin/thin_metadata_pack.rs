//! `thin_metadata_pack -i META -o PACK [-f]`: writes a compressed archive of
//! every metadata block of a device or file (thin's, or cache's or era's),
//! in the established 1.x pack format, for bug reports and transport.

use crate::tools::cli::{
    distinct, exit_status, open_exclusive, parse_in_out, refuse_overwrite, Opt, Progress, FORCE,
    HELP, INPUT, OUTPUT, QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "Usage: thin_metadata_pack [options] -i {device|file} -o {file}
Produces a compressed file of the metadata blocks of a device or file.
Options:
  {-f|--force}     overwrite an output file that is not empty
  {-h|--help}
  {-i|--input} <input metadata (binary format): device or file>
  {-o|--output} <output pack file>
  {-q|--quiet}     no progress bar
  {-V|--version}
";

const OPTS: &[Opt] = &[HELP, VERSION, QUIET, FORCE, INPUT, OUTPUT];

pub fn run(args: &[String]) -> ExitCode {
    match parse_in_out("thin_metadata_pack", USAGE, OPTS, args, |_, _| Ok(())) {
        Ok(o) => exit_status(
            "thin_metadata_pack: ",
            pack(&o.input, &o.output, o.force, o.quiet).map(|()| true),
        ),
        Err(status) => status,
    }
}

fn pack(input: &Path, output: &Path, force: bool, quiet: bool) -> Result<()> {
    distinct(input, output)?;
    // Exclusive, as the established tool: a live pool's metadata changes
    // under the reader, so its device is refused (busy).
    let dev = open_exclusive(input)?;
    refuse_overwrite(output, force)?;
    if std::fs::metadata(output).is_ok_and(|m| !m.is_file()) {
        bail!(
            "cannot write {}: a pack is written to a regular file",
            output.display()
        );
    }
    let mut file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let progress = Progress::new("thin_metadata_pack", dev.nr_blocks(), quiet);
    let done = pdata::pack::pack(&*dev, &mut file, &progress);
    drop(progress);
    if done.is_err() {
        // A partial pack is of no use to anyone.
        let _ = std::fs::remove_file(output);
    }
    done.with_context(|| format!("packing {}", input.display()))?;
    Ok(())
}
