//! `cache_repair -i IN -o OUT`: recovers what can be read of damaged
//! dm-cache metadata and writes it, consistent and of the same version, to
//! another device or file (see `cache::dump` for what recovery keeps).

use crate::tools::cli::{
    exit_status, open_device, open_shared, parse_in_out, same_file, Opt, ASYNC_IO, HELP, INPUT,
    OUTPUT, QUIET, VERSION,
};
use anyhow::{bail, Result};
use cache::restore::{RestoreOptions, Restorer};
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "Usage: cache_repair [options] -i {device|file} -o {device|file}
Options:
  {-h|--help}
  {-i|--input} <input metadata (binary format)>
  {-o|--output} <output metadata (binary format)>
  {-q|--quiet}
  {-V|--version}
";

const OPTS: &[Opt] = &[HELP, VERSION, QUIET, INPUT, OUTPUT, ASYNC_IO];

pub fn run(args: &[String]) -> ExitCode {
    match parse_in_out("cache_repair", USAGE, OPTS, args, |_, _| Ok(())) {
        Ok(io) => exit_status("cache_repair: ", repair(&io).map(|()| true)),
        Err(status) => status,
    }
}

fn repair(o: &crate::tools::cli::InOut) -> Result<()> {
    if same_file(&o.input, &o.output) {
        bail!("the input and the output are the same file: repair writes to another one");
    }
    let input = open_device(&o.input, false)?;
    let output = open_shared(&o.output, true)?;
    let out_blocks = output.nr_blocks();
    let mut restorer = Restorer::new(Arc::clone(&output), RestoreOptions::default());
    let report = cache::dump::dump(&input, true, &mut restorer).map_err(|e| {
        if matches!(e, cache::CacheError::Pdata(pdata::Error::NoSpace(_))) {
            anyhow::anyhow!(
                "the output ({out_blocks} blocks of 4 KiB) is too small for the recovered metadata"
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if !o.quiet {
        for w in report.warnings.iter().chain(&restorer.warnings) {
            eprintln!("cache_repair: {w}");
        }
    }
    Ok(())
}
