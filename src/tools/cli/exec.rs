//! The line-driven tools (`thin_exec`, `cache_exec`): the command line
//! `TOOL [--force] [--stop-on-error] META [SCRIPT]`, operations read one per
//! line from SCRIPT or standard input, checked against the client's table of
//! operations and their arities, one output line per operation (`ok`, a
//! value, or `error: MESSAGE`), and whatever follows the last commit
//! dropped at the end. A client supplies only its operations.

use super::device::open_shared;
use super::getopt::{GetOpt, HasArg, Opt};
use super::opts::{HELP, VERSION};
use super::status::{describe, exit_status};
use anyhow::{anyhow, bail, Context, Result};
use pdata::io::BlockDevice;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// An operation's name and how many arguments it takes (at least, at most).
pub struct Operation {
    pub name: &'static str,
    pub min_args: usize,
    pub max_args: usize,
}

impl Operation {
    /// An operation taking exactly `n` arguments.
    pub const fn new(name: &'static str, n: usize) -> Operation {
        Operation {
            name,
            min_args: n,
            max_args: n,
        }
    }

    /// An operation taking `min` to `max` arguments.
    pub const fn range(name: &'static str, min: usize, max: usize) -> Operation {
        Operation {
            name,
            min_args: min,
            max_args: max,
        }
    }
}

/// One line's words, the operation first, checked against its arity.
pub struct Line<'a> {
    pub words: &'a [&'a str],
}

impl Line<'_> {
    pub fn op(&self) -> &str {
        self.words[0]
    }

    /// Number of arguments after the operation.
    pub fn nr_args(&self) -> usize {
        self.words.len() - 1
    }

    /// Word `i` (1: the first argument).
    pub fn word(&self, i: usize) -> Result<&str> {
        self.words
            .get(i)
            .copied()
            .ok_or_else(|| anyhow!("'{}' needs more arguments", self.words[0]))
    }

    /// Word `i` as a number.
    pub fn num(&self, i: usize) -> Result<u64> {
        let w = self.word(i)?;
        w.parse::<u64>()
            .map_err(|_| anyhow!("'{w}' is not a number"))
    }

    /// Word `i` as a 32-bit number; `what` names it when it is too large.
    pub fn num32(&self, i: usize, what: &str) -> Result<u32> {
        u32::try_from(self.num(i)?).map_err(|_| anyhow!("{what} too large"))
    }
}

/// What a client supplies: its live metadata, with its operations.
pub trait ExecClient: Sized {
    /// The operations, with their arities.
    const OPERATIONS: &'static [Operation];

    /// Opens existing metadata for writing.
    fn open(dev: Arc<dyn BlockDevice>) -> Result<Self>;

    /// Drops the transaction.
    fn abort(&mut self) -> Result<()>;

    /// Runs one operation (its name and arity already checked): the line
    /// to print.
    fn apply(s: &mut Session<Self>, line: &Line<'_>) -> Result<String>;
}

/// The metadata a script works on, opened at the first operation that
/// needs it (the first line may be a `format`).
pub struct Session<M> {
    dev: Arc<dyn BlockDevice>,
    md: Option<M>,
    force: bool,
}

impl<M: ExecClient> Session<M> {
    /// The open metadata (opened now if need be).
    pub fn md(&mut self) -> Result<&mut M> {
        if self.md.is_none() {
            self.md = Some(M::open(self.dev.clone())?);
        }
        Ok(self.md.as_mut().expect("opened above"))
    }

    /// Formats with `f(device, --force)`; any open handle is dropped first
    /// (its cache must not outlive the format).
    pub fn format(
        &mut self,
        f: impl FnOnce(Arc<dyn BlockDevice>, bool) -> Result<M>,
    ) -> Result<()> {
        self.md = None;
        self.md = Some(f(self.dev.clone(), self.force)?);
        Ok(())
    }
}

/// The parsed command line.
pub struct ExecArgs {
    pub force: bool,
    pub stop_on_error: bool,
    pub meta: PathBuf,
    pub script: Option<PathBuf>,
}

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    Opt::both('f', "force", HasArg::No, "force"),
    Opt::long("stop-on-error", HasArg::No, "stop-on-error"),
];

/// Parses `prog [--force] [--stop-on-error] META [SCRIPT]`; help and bad
/// usage (exit 2) come back as the status to end with.
pub fn parse_exec_args(
    prog: &'static str,
    usage: &'static str,
    args: &[String],
) -> Result<ExecArgs, ExitCode> {
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
        [meta, script @ ..] if script.len() <= 1 => Ok(ExecArgs {
            force,
            stop_on_error,
            meta: PathBuf::from(meta),
            script: script.first().map(PathBuf::from),
        }),
        _ => Err(g.usage_error(format!("{prog}: expected META [SCRIPT]"))),
    }
}

/// The whole tool: parses the command line, opens META, runs the script.
/// Exit 1 if any operation failed.
pub fn exec_main<M: ExecClient>(
    prog: &'static str,
    usage: &'static str,
    args: &[String],
) -> ExitCode {
    match parse_exec_args(prog, usage, args) {
        Ok(a) => exit_status(&format!("{prog}: "), run_script::<M>(&a)),
        Err(status) => status,
    }
}

/// Applies every line of the script; true when every operation succeeded.
pub fn run_script<M: ExecClient>(args: &ExecArgs) -> Result<bool> {
    let mut session = Session::<M> {
        dev: open_shared(&args.meta, true)?,
        md: None,
        force: args.force,
    };
    let input: Box<dyn BufRead> = match &args.script {
        Some(p) => Box::new(BufReader::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut all_ok = true;
    let r = (|| -> Result<()> {
        for (n, line) in input.lines().enumerate() {
            let line = line.with_context(|| format!("reading line {}", n + 1))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match apply(&mut session, &Line { words: &words }) {
                Ok(s) => writeln!(out, "{s}")?,
                Err(e) => {
                    all_ok = false;
                    writeln!(out, "error: {}", describe(&e))?;
                    if args.stop_on_error {
                        break;
                    }
                }
            }
        }
        out.flush()?;
        Ok(())
    })();
    // Whatever follows the last commit is dropped: nothing of it is on disk.
    if let Some(md) = session.md.as_mut() {
        let _ = md.abort();
    }
    r.map(|_| all_ok)
}

fn apply<M: ExecClient>(session: &mut Session<M>, line: &Line<'_>) -> Result<String> {
    let op = line.op();
    let Some(o) = M::OPERATIONS.iter().find(|o| o.name == op) else {
        bail!("unknown operation '{op}'");
    };
    let n = line.nr_args();
    if n < o.min_args || n > o.max_args {
        if o.min_args == o.max_args {
            bail!("'{op}' takes {} argument(s), not {n}", o.min_args);
        }
        bail!(
            "'{op}' takes {} to {} arguments, not {n}",
            o.min_args,
            o.max_args
        );
    }
    M::apply(session, line)
}
