//! Command lines parsed the way the established C++ tools parse them
//! (glibc `getopt_long`): short options clustered (`-hV`, `-oDEV`), long
//! options abbreviated to any unambiguous prefix (`--reg`), `--opt=value`
//! or `--opt value`, optional arguments only when attached, operands
//! anywhere (collected in order), `--` ending the options.
//!
//! Options come out one at a time, in order, so a tool acts on each as the
//! established one does (an error in an early option wins over `-h` later).
//!
//! An empty argument (`""`) is skipped: LVM releases before 2023 pass one to
//! the tools they run (their default `thin_repair_options` is `[""]`), and
//! the established tools ignore it.
//!
//! Tools read them with `next_opt`, which answers `help` and `version` and
//! reports glibc's complaints with the usage, the same way for every tool.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

/// Whether an option takes an argument.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    No,
    Required,
    /// Only attached: `-m5`, `--metadata-snap=5`.
    Optional,
}

/// One option: its short and/or long spelling, and its identity.
pub struct Opt {
    pub short: Option<char>,
    pub long: Option<&'static str>,
    pub has_arg: HasArg,
    /// What the tool matches on (several spellings may share one).
    pub id: &'static str,
}

impl Opt {
    pub const fn short(c: char, has_arg: HasArg, id: &'static str) -> Opt {
        Opt {
            short: Some(c),
            long: None,
            has_arg,
            id,
        }
    }
    pub const fn long(name: &'static str, has_arg: HasArg, id: &'static str) -> Opt {
        Opt {
            short: None,
            long: Some(name),
            has_arg,
            id,
        }
    }
    pub const fn both(c: char, name: &'static str, has_arg: HasArg, id: &'static str) -> Opt {
        Opt {
            short: Some(c),
            long: Some(name),
            has_arg,
            id,
        }
    }
}

/// An option's identity and argument, or glibc's complaint.
pub type OptResult = Result<(&'static str, Option<String>), String>;

/// Walks a command line; `next` gives each option in turn, then the
/// operands are in `operands`.
pub struct GetOpt<'a> {
    opts: &'a [Opt],
    args: &'a [String],
    i: usize,
    /// Position inside a cluster of short options (`-abc`).
    cluster: usize,
    pub operands: Vec<String>,
    /// Name used in error messages.
    prog: &'static str,
    /// Printed for `help` and after complaints.
    usage: &'a str,
    /// Exit status for a bad command line.
    usage_status: u8,
}

impl<'a> GetOpt<'a> {
    pub fn new(prog: &'static str, opts: &'a [Opt], args: &'a [String]) -> Self {
        GetOpt {
            opts,
            args,
            i: 0,
            cluster: 0,
            operands: Vec::new(),
            prog,
            usage: "",
            usage_status: 1,
        }
    }

    /// The text `help` prints and complaints end with.
    pub fn with_usage(mut self, usage: &'a str) -> Self {
        self.usage = usage;
        self
    }

    /// The exit status for a bad command line (1 unless set).
    pub fn with_usage_status(mut self, status: u8) -> Self {
        self.usage_status = status;
        self
    }

    /// The next option the tool acts on. Options with the ids `help` and
    /// `version` are answered here, and a bad option is reported with the
    /// usage; either ends the parse, `Err` holding the exit status.
    pub fn next_opt(&mut self) -> Result<Option<(&'static str, Option<String>)>, ExitCode> {
        match self.next() {
            None => Ok(None),
            Some(Err(msg)) => Err(self.usage_error(msg)),
            Some(Ok(("help", _))) => Err(self.answer(out!("{}", self.usage))),
            Some(Ok(("version", _))) => Err(self.answer(super::print_version())),
            Some(Ok(o)) => Ok(Some(o)),
        }
    }

    /// Reports a bad command line: the complaint, then the usage.
    /// The exit status after printing the help or the version.
    fn answer(&self, printed: std::io::Result<()>) -> ExitCode {
        match printed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::out::write_failed(self.prog, &e),
        }
    }

    pub fn usage_error(&self, msg: impl Display) -> ExitCode {
        err!("{msg}\n{}", self.usage);
        ExitCode::from(self.usage_status)
    }

    /// The one operand a tool that reads one device or file takes, once
    /// the options are read; none or several is a usage error.
    pub fn single_input(&self) -> Result<PathBuf, ExitCode> {
        match self.operands.as_slice() {
            [] => Err(self.usage_error("No input file provided.")),
            [input] => Ok(PathBuf::from(input)),
            _ => Err(self.usage_error("only one input is allowed")),
        }
    }

    /// `value`, or a usage error saying `missing`: for what a tool cannot
    /// do without, once the options are read.
    pub fn need<T>(&self, value: Option<T>, missing: &str) -> Result<T, ExitCode> {
        value.ok_or_else(|| self.usage_error(missing))
    }

    /// Takes the next word as an option's argument when `accept` says it is
    /// one (for an optional argument given apart: `-m 5`).
    pub fn take_next_if(&mut self, accept: impl Fn(&str) -> bool) -> Option<String> {
        let a = self
            .args
            .get(self.i)
            .filter(|a| self.cluster == 0 && accept(a))?;
        self.i += 1;
        Some(a.clone())
    }

    /// The next option with its argument; `Err` holds glibc's message.
    /// Operands met on the way are collected.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<OptResult> {
        if self.cluster > 0 {
            return Some(self.short_option());
        }
        while let Some(a) = self.args.get(self.i) {
            if a == "--" {
                self.operands
                    .extend(self.args[self.i + 1..].iter().cloned());
                self.i = self.args.len();
                return None;
            }
            if let Some(body) = a.strip_prefix("--") {
                self.i += 1;
                return Some(self.long_option(body));
            }
            if a.is_empty() {
                self.i += 1;
                continue;
            }
            if a.len() > 1 && a.starts_with('-') {
                self.cluster = 1;
                return Some(self.short_option());
            }
            self.operands.push(a.clone());
            self.i += 1;
        }
        None
    }

    fn short_option(&mut self) -> Result<(&'static str, Option<String>), String> {
        let arg = &self.args[self.i];
        let c = arg[self.cluster..].chars().next().unwrap_or('-');
        let rest_at = self.cluster + c.len_utf8();
        let rest = &arg[rest_at..];
        let at_end = rest.is_empty();
        // Move on: to the next character of the cluster, or the next word.
        let advance = |g: &mut Self| {
            if at_end {
                g.cluster = 0;
                g.i += 1;
            } else {
                g.cluster = rest_at;
            }
        };
        let Some(opt) = self.opts.iter().find(|o| o.short == Some(c)) else {
            advance(self);
            return Err(format!("{}: invalid option -- '{c}'", self.prog));
        };
        match opt.has_arg {
            HasArg::No => {
                advance(self);
                Ok((opt.id, None))
            }
            HasArg::Optional => {
                let value = (!at_end).then(|| rest.to_string());
                self.cluster = 0;
                self.i += 1;
                Ok((opt.id, value))
            }
            HasArg::Required => {
                self.cluster = 0;
                self.i += 1;
                if !at_end {
                    return Ok((opt.id, Some(rest.to_string())));
                }
                match self.take_word() {
                    Some(v) => Ok((opt.id, Some(v))),
                    None => Err(format!(
                        "{}: option requires an argument -- '{c}'",
                        self.prog
                    )),
                }
            }
        }
    }

    /// The next word whole, as a required argument given apart.
    fn take_word(&mut self) -> Option<String> {
        let v = self.args.get(self.i)?.clone();
        self.i += 1;
        Some(v)
    }

    fn long_option(&mut self, body: &str) -> Result<(&'static str, Option<String>), String> {
        let (name, attached) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let opt = self.find_long(name, body)?;
        let full = opt.long.unwrap_or(name);
        match (opt.has_arg, attached) {
            (HasArg::No, Some(_)) => Err(format!(
                "{}: option '--{full}' doesn't allow an argument",
                self.prog
            )),
            (HasArg::No, None) | (HasArg::Optional, None) => Ok((opt.id, None)),
            (_, Some(v)) => Ok((opt.id, Some(v))),
            (HasArg::Required, None) => match self.take_word() {
                Some(v) => Ok((opt.id, Some(v))),
                None => Err(format!(
                    "{}: option '--{full}' requires an argument",
                    self.prog
                )),
            },
        }
    }

    /// An exact name, or the one option the prefix names (several spellings
    /// of the same option are not ambiguous).
    fn find_long(&self, name: &str, body: &str) -> Result<&'a Opt, String> {
        let opts = self.opts;
        if let Some(o) = opts.iter().find(|o| o.long == Some(name)) {
            return Ok(o);
        }
        let matches: Vec<&Opt> = opts
            .iter()
            .filter(|o| {
                o.long
                    .is_some_and(|l| !name.is_empty() && l.starts_with(name))
            })
            .collect();
        match matches.as_slice() {
            [] => Err(format!("{}: unrecognized option '--{body}'", self.prog)),
            [first, rest @ ..] => {
                if rest
                    .iter()
                    .all(|o| o.id == first.id && o.has_arg == first.has_arg)
                {
                    Ok(first)
                } else {
                    let names: Vec<String> = matches
                        .iter()
                        .filter_map(|o| o.long)
                        .map(|l| format!("'--{l}'"))
                        .collect();
                    Err(format!(
                        "{}: option '--{name}' is ambiguous; possibilities: {}",
                        self.prog,
                        names.join(" ")
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt::both('h', "help", HasArg::No, "help"),
        Opt::both('m', "metadata-snap", HasArg::Optional, "snap"),
        Opt::both('o', "format", HasArg::Required, "format"),
        Opt::long("thin1", HasArg::Required, "thin1"),
        Opt::long("snap1", HasArg::Required, "thin1"),
        Opt::long("thin2", HasArg::Required, "thin2"),
    ];

    fn parse(args: &[&str]) -> (Vec<OptResult>, Vec<String>) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut g = GetOpt::new("t", OPTS, &args);
        let mut out = Vec::new();
        while let Some(r) = g.next() {
            out.push(r);
        }
        (out, g.operands)
    }

    #[test]
    fn spellings() {
        let (o, ops) = parse(&[
            "x",
            "-hm5",
            "-oDEV",
            "--form",
            "A,B",
            "-m",
            "y",
            "--thin1=3",
        ]);
        assert_eq!(
            o,
            vec![
                Ok(("help", None)),
                Ok(("snap", Some("5".into()))),
                Ok(("format", Some("DEV".into()))),
                Ok(("format", Some("A,B".into()))),
                Ok(("snap", None)),
                Ok(("thin1", Some("3".into()))),
            ]
        );
        assert_eq!(ops, vec!["x", "y"]);
    }

    #[test]
    fn errors() {
        let (o, _) = parse(&["--thin", "1"]);
        assert!(o[0].as_ref().is_err_and(|e| e.contains("ambiguous")));
        let (o, _) = parse(&["-x", "--help=1", "--nope", "-o"]);
        assert_eq!(o.len(), 4);
        assert!(o.iter().all(|r| r.is_err()));
        let (o, ops) = parse(&["", "-h", ""]);
        assert_eq!(o, vec![Ok(("help", None))]);
        assert!(ops.is_empty());
        let (o, ops) = parse(&["--", "-h"]);
        assert!(o.is_empty());
        assert_eq!(ops, vec!["-h"]);
    }

    #[test]
    fn optional_argument_apart() {
        let args: Vec<String> = ["-m", "12", "dev", "-m", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut g = GetOpt::new("t", OPTS, &args);
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        assert_eq!(g.next(), Some(Ok(("snap", None))));
        assert_eq!(g.take_next_if(digits).as_deref(), Some("12"));
        assert_eq!(g.next(), Some(Ok(("snap", None))));
        assert_eq!(g.take_next_if(digits), None);
        assert_eq!(g.next(), None);
        assert_eq!(g.operands, vec!["dev", "x"]);
    }
}
