//! `thin_repair -i IN -o OUT`: recovers what can be read of damaged
//! thin-pool metadata and writes it, consistent, to another device or file.

use super::counted::Counted;
use super::in_out::{self, Args};
use crate::tools::cli::{data_budget, distinct, exit_status, open_device, open_reader, Progress};
use anyhow::Result;
use pdata::io::BlockDevice;
use std::process::ExitCode;
use std::sync::Arc;
use thin::repair::recover_with_progress;
use thin::restore::Restorer;

const USAGE: &str = "Usage: thin_repair [options] -i {device|file} -o {device|file}
Options:
  {-h|--help}
  {-i|--input} <input metadata (binary format)>
  {-o|--output} <output metadata (binary format)>
  {-q|--quiet}
  {--transaction-id} <natural>
  {--data-block-size} <natural>
  {--nr-data-blocks} <natural>
  {-V|--version}
";

pub fn run(args: &[String]) -> ExitCode {
    match in_out::parse("thin_repair", USAGE, args) {
        Ok(o) => exit_status("thin_repair: ", repair(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn repair(args: &Args) -> Result<()> {
    let o = &args.io;
    distinct(&o.input, &o.output)?;
    let input = open_reader("thin_repair", &o.input, false)?;
    let out_dev = open_device(&o.output, true)?;
    let out_blocks = out_dev.nr_blocks();
    let output: Arc<dyn BlockDevice> = Arc::new(out_dev);
    // Mappings written, out of those recovered.
    let progress = Progress::new("thin_repair", 0, o.quiet);
    let mut restorer = Counted {
        inner: Restorer::new(output).with_data_budget(data_budget()),
        progress: &progress,
    };
    let recovered = recover_with_progress(input, &args.overrides, &mut restorer, &progress);
    drop(progress);
    let report = recovered.map_err(|e| {
        if matches!(e, thin::ThinError::Pdata(pdata::Error::NoSpace(_))) {
            anyhow::anyhow!(
                "the output ({out_blocks} blocks of 4 KiB) is too small for the recovered metadata: give it more space"
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if !o.quiet {
        for w in &report.warnings {
            errln!("thin_repair: {w}");
        }
    }
    Ok(())
}
