//! The `*_exec` tools' shared frame (thin_exec, era_exec): the command line
//! `[--force] [--stop-on-error] META [SCRIPT]`, one operation per line from
//! the script or stdin, checked against the tool's table of operations and
//! their arities, one output line per operation (`ok`, a value, or
//! `error: MESSAGE`). The client applies each operation; whatever follows
//! the last commit is aborted by the client at the end.

use super::getopt::{GetOpt, HasArg, Opt};
use super::opts::HELP;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct ExecOptions {
    pub force: bool,
    pub stop_on_error: bool,
    pub meta: PathBuf,
    pub script: Option<PathBuf>,
}

const OPTS: &[Opt] = &[
    HELP,
    Opt::both('f', "force", HasArg::No, "force"),
    Opt::long("stop-on-error", HasArg::No, "stop-on-error"),
];

/// Parses an exec tool's command line (usage errors exit 2).
pub fn parse_exec(
    prog: &'static str,
    usage: &'static str,
    args: &[String],
) -> Result<ExecOptions, ExitCode> {
    let mut force = false;
    let mut stop_on_error = false;
    let mut g = GetOpt::new(prog, OPTS, args)
        .with_usage(usage)
        .with_usage_status(2);
    while let Some((id, _)) = g.next_opt()? {
        match id {
            "force" => force = true,
            _ => stop_on_error = true,
        }
    }
    match g.operands.as_slice() {
        [meta, script @ ..] if script.len() <= 1 => Ok(ExecOptions {
            force,
            stop_on_error,
            meta: PathBuf::from(meta),
            script: script.first().map(PathBuf::from),
        }),
        _ => Err(g.usage_error(format!("{prog}: expected META [SCRIPT]"))),
    }
}

/// One line's operation, checked against the table of (name, arity).
pub struct Words<'a> {
    pub op: &'static str,
    words: &'a [&'a str],
}

impl<'a> Words<'a> {
    /// The operation `words[0]` of `table`, which may list a name once per
    /// arity it accepts.
    pub fn new(words: &'a [&'a str], table: &[(&'static str, usize)]) -> Result<Self> {
        let first = words[0];
        let given = words.len() - 1;
        let mut arities = table.iter().filter(|(name, _)| *name == first).peekable();
        let Some(&&(op, arity)) = arities.peek() else {
            bail!("unknown operation '{first}'");
        };
        if !arities.any(|&(_, a)| a == given) {
            bail!("'{op}' takes {arity} argument(s), not {given}");
        }
        Ok(Words { op, words })
    }

    /// Argument `i` (1-based) as a number.
    pub fn num(&self, i: usize) -> Result<u64> {
        let w = self
            .words
            .get(i)
            .ok_or_else(|| anyhow!("'{}' needs more arguments", self.op))?;
        w.parse::<u64>()
            .map_err(|_| anyhow!("'{w}' is not a number"))
    }

    /// Argument `i` as a 32-bit number.
    pub fn num32(&self, i: usize) -> Result<u32> {
        let v = self.num(i)?;
        u32::try_from(v).map_err(|_| anyhow!("{v} is too large"))
    }

    /// How many arguments there are.
    pub fn nr_args(&self) -> usize {
        self.words.len() - 1
    }
}

/// Runs the script (or stdin) line by line through `apply`, printing one
/// line per operation; blank lines and `#` comments are skipped. Returns
/// whether every operation succeeded.
pub fn run_script(
    script: Option<&Path>,
    stop_on_error: bool,
    mut apply: impl FnMut(&[&str]) -> Result<String>,
) -> Result<bool> {
    let input: Box<dyn BufRead> = match script {
        Some(p) => Box::new(BufReader::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut all_ok = true;
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match apply(&words) {
            Ok(s) => writeln!(out, "{s}")?,
            Err(e) => {
                all_ok = false;
                writeln!(out, "error: {e:#}")?;
                if stop_on_error {
                    break;
                }
            }
        }
    }
    out.flush()?;
    Ok(all_ok)
}
