//! `cache_dump`: dm-cache metadata as XML (the established tools' format;
//! version 2's real dirty bits, where Debian's 0.9.0 prints every block
//! clean). `-r`/`--repair` dumps what recovery reads of damaged metadata.

use super::xml::XmlWriter;
use crate::tools::cli::{
    exit_status, open_device, open_output, GetOpt, HasArg, Opt, ASYNC_IO, HELP, QUIET, VERSION,
};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "Usage: cache_dump [options] {device|file}
Options:
  {-h|--help}
  {-o|--output} <xml file>
  {-r|--repair}
  {-q|--quiet}
  {-V|--version}
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    Opt::both('o', "output", HasArg::Required, "output"),
    Opt::both('r', "repair", HasArg::No, "repair"),
    ASYNC_IO,
];

struct Options {
    output: Option<PathBuf>,
    repair: bool,
    quiet: bool,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut o = Options {
        output: None,
        repair: false,
        quiet: false,
        input: PathBuf::new(),
    };
    let mut g = GetOpt::new("cache_dump", OPTS, args).with_usage(USAGE);
    while let Some((id, value)) = g.next_opt()? {
        match id {
            "output" => o.output = value.map(PathBuf::from),
            "repair" => o.repair = true,
            "quiet" => o.quiet = true,
            _ => {}
        }
    }
    o.input = g.single_input()?;
    Ok(o)
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(o) => exit_status("", dump(&o).map(|()| true)),
        Err(status) => status,
    }
}

fn dump(o: &Options) -> Result<()> {
    let dev = open_device(&o.input, false)?;
    let out = open_output(o.output.as_deref())?;
    let report = cache::dump::dump(&dev, o.repair, &mut XmlWriter::new(out))?;
    if !o.quiet {
        for w in &report.warnings {
            errln!("cache_dump: {w}");
        }
    }
    Ok(())
}
