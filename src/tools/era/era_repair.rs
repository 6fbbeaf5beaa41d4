//! `era_repair -i DEV -o DEV`: recovers what is readable of damaged era
//! metadata into new metadata (`era::repair`): whatever was lost comes back
//! as written in the newest era, never as unwritten.

use crate::tools::cli::{
    exit_status, open_shared, parse_in_out, Opt, HELP, INPUT, OUTPUT, QUIET, VERSION,
};
use anyhow::Result;
use era::restore::Restorer;
use std::process::ExitCode;

const USAGE: &str = "Usage: era_repair [options]
Options:
  {-h|--help}
  {-i|--input} <input metadata (binary format)>
  {-o|--output} <output metadata (binary format)>
  {-q|--quiet}
  {-V|--version}
";

const OPTS: &[Opt] = &[HELP, INPUT, OUTPUT, QUIET, VERSION];

pub fn run(args: &[String]) -> ExitCode {
    match parse_in_out("era_repair", USAGE, OPTS, args, |_, _| Ok(())) {
        Ok(o) => exit_status("era_repair: ", repair(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn repair(o: &crate::tools::cli::InOut) -> Result<()> {
    let input = open_shared(&o.input, false)?;
    let output = open_shared(&o.output, true)?;
    let mut restorer = Restorer::new(output)?;
    era::repair::recover(input, &mut restorer)?;
    Ok(())
}
