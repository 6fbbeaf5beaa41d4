//! `era_restore`: builds era metadata from the XML of era_dump (either
//! form: one `<bit>` per block, or `<marked>` runs).

use super::xml::read_into;
use crate::tools::cli::{
    exit_status, open_restore_output, parse_in_out, CountingReader, Opt, Progress, HELP, INPUT,
    OUTPUT, QUIET, VERSION,
};
use anyhow::{Context, Result};
use era::restore::Restorer;
use std::fs::File;
use std::process::ExitCode;

const USAGE: &str = "Usage: era_restore [options]
Options:
  {-h|--help}
  {-i|--input} <input xml file>
  {-o|--output} <output device or file>
  {-q|--quiet}
  {-V|--version}
";

const OPTS: &[Opt] = &[HELP, INPUT, OUTPUT, QUIET, VERSION];

pub fn run(args: &[String]) -> ExitCode {
    match parse_in_out("era_restore", USAGE, OPTS, args, |_, _| Ok(())) {
        Ok(o) => exit_status("era_restore: ", restore(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn restore(o: &crate::tools::cli::InOut) -> Result<()> {
    let input =
        File::open(&o.input).with_context(|| format!("cannot open {}", o.input.display()))?;
    let dev = open_restore_output(&o.output)?;
    let mut restorer = Restorer::new(dev)?;
    let len = input.metadata().map_or(0, |m| m.len());
    let progress = Progress::new("era_restore", len, o.quiet || len == 0);
    let input = CountingReader {
        inner: input,
        progress: &progress,
    };
    read_into(input, &mut restorer)
}
