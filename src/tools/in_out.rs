//! What `thin_restore` and `thin_repair` share on their command lines:
//! `-i IN -o OUT`, `-q`, and the superblock overrides (also taken by
//! `thin_dump --repair`).

use super::cli::number;
use super::getopt::{GetOpt, HasArg, Opt};
use std::path::PathBuf;
use std::process::ExitCode;
use thin::repair::RepairOptions;

pub const OPTS: &[Opt] = &[
    Opt::both('h', "help", HasArg::No, "help"),
    Opt::both('V', "version", HasArg::No, "version"),
    Opt::both('q', "quiet", HasArg::No, "quiet"),
    Opt::both('i', "input", HasArg::Required, "input"),
    Opt::both('o', "output", HasArg::Required, "output"),
    Opt::long("transaction-id", HasArg::Required, "transaction-id"),
    Opt::long("data-block-size", HasArg::Required, "data-block-size"),
    Opt::long("nr-data-blocks", HasArg::Required, "nr-data-blocks"),
    // 1.x's I/O engine switch: one engine here.
    Opt::long("async-io", HasArg::No, "async-io"),
];

pub struct InOut {
    pub input: PathBuf,
    pub output: PathBuf,
    pub quiet: bool,
    pub overrides: RepairOptions,
}

/// The superblock overrides `thin_repair`, `thin_restore` and
/// `thin_dump --repair` share, by option id; other ids are left alone.
pub fn parse_override(id: &str, value: &str, o: &mut RepairOptions) -> Result<(), String> {
    match id {
        "transaction-id" => o.transaction_id = Some(number(id, value)?),
        "data-block-size" => o.data_block_size = Some(number(id, value)?),
        "nr-data-blocks" => o.nr_data_blocks = Some(number(id, value)?),
        _ => {}
    }
    Ok(())
}

/// Parses `args` for tool `prog`; help, version and usage errors come back
/// as the exit status to end with.
pub fn parse(prog: &'static str, usage: &'static str, args: &[String]) -> Result<InOut, ExitCode> {
    let (mut input, mut output, mut quiet) = (None, None, false);
    let mut overrides = RepairOptions::default();
    let mut g = GetOpt::new(prog, OPTS, args).with_usage(usage);
    while let Some((id, value)) = g.next_opt()? {
        let value = value.unwrap_or_default();
        match id {
            "quiet" => quiet = true,
            "input" => input = Some(PathBuf::from(value)),
            "output" => output = Some(PathBuf::from(value)),
            "async-io" => {}
            _ => parse_override(id, &value, &mut overrides).map_err(|e| g.usage_error(e))?,
        }
    }
    if let Some(extra) = g.operands.first() {
        return Err(g.usage_error(format!(
            "unexpected argument '{extra}': give the input with -i and the output with -o"
        )));
    }
    let Some(input) = input else {
        return Err(g.usage_error("No input file provided."));
    };
    let Some(output) = output else {
        return Err(g.usage_error("No output file provided."));
    };
    Ok(InOut {
        input,
        output,
        quiet,
        overrides,
    })
}
