//! The `*_exec` tools' shared frame (thin_exec, era_exec): the command line
//! `[--force] [--stop-on-error] META [SCRIPT]`, one operation per line from
//! the script or stdin, checked against the tool's table of operations and
//! their arities, one output line per operation (`ok`, a value, or
//! `error: MESSAGE`). The client applies each operation; whatever follows
//! the last commit is aborted by the client at the end.

use super::device::open_shared;
use super::getopt::{GetOpt, HasArg, Opt};
use super::opts::HELP;
use anyhow::{anyhow, bail, Context, Result};
use pdata::io::BlockDevice;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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

/// The metadata an exec tool works on, opened at its first use (the first
/// line may format it instead).
pub trait ExecMetadata: Sized {
    fn open(dev: Arc<dyn BlockDevice>) -> Result<Self>;
    /// Drops the transaction (what follows the last commit).
    fn abort(&mut self);
}

/// An exec tool's session: the device, and the metadata once opened.
pub struct Session<M> {
    pub dev: Arc<dyn BlockDevice>,
    pub md: Option<M>,
    pub force: bool,
}

impl<M: ExecMetadata> Session<M> {
    /// The metadata, opened on first use.
    pub fn md(&mut self) -> Result<&mut M> {
        if self.md.is_none() {
            self.md = Some(M::open(self.dev.clone())?);
        }
        Ok(self.md.as_mut().expect("opened above"))
    }
}

/// Runs an exec tool: each line of the script is checked against `table`
/// and applied by `apply`; whatever follows the last commit is aborted
/// (nothing of it is on disk).
pub fn execute<M: ExecMetadata>(
    opts: &ExecOptions,
    table: &[(&'static str, usize)],
    mut apply: impl FnMut(&mut Session<M>, &Words) -> Result<String>,
) -> Result<bool> {
    let mut session = Session {
        dev: open_shared(&opts.meta, true)?,
        md: None,
        force: opts.force,
    };
    let all_ok = run_script(opts.script.as_deref(), opts.stop_on_error, |words| {
        apply(&mut session, &Words::new(words, table)?)
    })?;
    if let Some(md) = session.md.as_mut() {
        md.abort();
    }
    Ok(all_ok)
}
