//! `-i IN -o OUT [-q]`: the command line of the tools that read one device
//! or file and write another (restore, repair), whatever the client.

use super::getopt::{GetOpt, HasArg, Opt};
use std::path::PathBuf;
use std::process::ExitCode;

/// `-i`, `--input`.
pub const INPUT: Opt = Opt::both('i', "input", HasArg::Required, "input");
/// `-o`, `--output`.
pub const OUTPUT: Opt = Opt::both('o', "output", HasArg::Required, "output");

pub struct InOut {
    pub input: PathBuf,
    pub output: PathBuf,
    pub quiet: bool,
    /// `-f`: overwrite an output that is not empty (for the tools that
    /// list [`super::FORCE`]).
    pub force: bool,
}

/// Parses `args` for tool `prog` with the option table `opts`, which holds
/// [`INPUT`] and [`OUTPUT`] (and usually `QUIET`, `HELP`, `VERSION`). The
/// ids `input`, `output`, `quiet`, `force` and `async-io` are taken here; every other
/// option goes to `other` with its argument (empty when it has none), whose
/// complaint is reported with the usage. Help, version and usage errors come
/// back as the exit status to end with.
pub fn parse_in_out(
    prog: &'static str,
    usage: &'static str,
    opts: &[Opt],
    args: &[String],
    mut other: impl FnMut(&'static str, &str) -> Result<(), String>,
) -> Result<InOut, ExitCode> {
    let (mut input, mut output, mut quiet, mut force) = (None, None, false, false);
    let mut g = GetOpt::new(prog, opts, args).with_usage(usage);
    while let Some((id, value)) = g.next_opt()? {
        let value = value.unwrap_or_default();
        match id {
            "quiet" => quiet = true,
            "force" => force = true,
            "input" => input = Some(PathBuf::from(value)),
            "output" => output = Some(PathBuf::from(value)),
            "async-io" => {}
            _ => other(id, &value).map_err(|e| g.usage_error(e))?,
        }
    }
    // Older LVM passes a stray empty argument: it names nothing.
    if let Some(extra) = g.operands.iter().find(|a| !a.is_empty()) {
        return Err(g.usage_error(format!(
            "unexpected argument '{extra}': give the input with -i and the output with -o"
        )));
    }
    Ok(InOut {
        input: g.need(input, "No input file provided.")?,
        output: g.need(output, "No output file provided.")?,
        quiet,
        force,
    })
}
