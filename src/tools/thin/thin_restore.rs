//! `thin_restore`: builds thin-pool metadata from the XML of `thin_dump`.

use super::in_out::{self, Args};
use super::xml::parse_in_background;
use crate::tools::cli::{
    data_budget, distinct, exit_status, open_restore_output, open_text_input, CountingReader,
    Progress,
};
use anyhow::Result;
use std::process::ExitCode;
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

pub fn run(args: &[String]) -> ExitCode {
    match in_out::parse("thin_restore", USAGE, args) {
        Ok(o) => exit_status("thin_restore: ", restore(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn restore(args: &Args) -> Result<()> {
    let o = &args.io;
    distinct(&o.input, &o.output)?;
    let input = open_text_input(&o.input)?;
    let dev = open_restore_output(&o.output)?;
    let mut restorer = Restorer::new(dev)
        .with_overrides(Overrides {
            transaction_id: args.overrides.transaction_id,
            data_block_size: args.overrides.data_block_size,
            nr_data_blocks: args.overrides.nr_data_blocks,
        })
        .with_data_budget(data_budget());
    // Input bytes parsed, out of the file's length.
    let len = input.metadata().map_or(0, |m| m.len());
    let progress = Progress::new("thin_restore", len, o.quiet || len == 0);
    let input = CountingReader {
        inner: input,
        progress: &progress,
    };
    parse_in_background(input, &mut restorer)
}
