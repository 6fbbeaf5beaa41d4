//! `thin_restore`: builds thin-pool metadata from the XML of `thin_dump`.

use super::thin_xml::parse;
use anyhow::{Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use thin::restore::Restorer;

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
    let dev: Arc<dyn BlockDevice> = Arc::new(
        FileDevice::open(output, true)
            .with_context(|| format!("cannot open {}", output.display()))?,
    );
    parse(&text, &mut Restorer::new(dev))
}
