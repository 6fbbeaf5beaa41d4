//! `era_check`: validates era metadata — the superblock, the writeset tree
//! and every writeset, the era array, the metadata snapshot's trees, the
//! metadata space map against the references found. Progress and problems
//! go to stderr. Exit 0 when sound, 1 otherwise (leaks count only without
//! `--ignore-non-fatal-errors`).

use crate::tools::cli::{
    check_status, open_device, print_steps, GetOpt, HasArg, Opt, Progress, HELP, QUIET, VERSION,
};
use anyhow::Result;
use era::check::{check, CheckOptions, CheckReport, Section};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "Usage: era_check [options] {device|file}
Options:
  {-q|--quiet}
  {-h|--help}
  {-V|--version}
  {--super-block-only}
  {--ignore-non-fatal-errors}
";

const OPTS: &[Opt] = &[
    QUIET,
    HELP,
    VERSION,
    Opt::long("super-block-only", HasArg::No, "super-block-only"),
    Opt::long(
        "ignore-non-fatal-errors",
        HasArg::No,
        "ignore-non-fatal-errors",
    ),
];

#[derive(Default)]
struct Options {
    quiet: bool,
    ignore_non_fatal: bool,
    check: CheckOptions,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut o = Options::default();
    let mut g = GetOpt::new("era_check", OPTS, args).with_usage(USAGE);
    while let Some((id, _)) = g.next_opt()? {
        match id {
            "quiet" => o.quiet = true,
            "super-block-only" => o.check.super_block_only = true,
            _ => o.ignore_non_fatal = true,
        }
    }
    o.input = g.single_input()?;
    Ok(o)
}

pub fn run(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(status) => return status,
    };
    check_status(o.quiet, execute(&o))
}

fn execute(o: &Options) -> Result<bool> {
    let dev = open_device(&o.input, false)?;
    let report = {
        let progress = Progress::new("era_check", 0, o.quiet);
        check(&dev, &o.check, &progress)
    };
    if !o.quiet {
        print_report(o, &report);
    }
    Ok(report.is_sound() && (report.nr_leaks == 0 || o.ignore_non_fatal))
}

/// Each step's heading, then its problems indented under it.
fn print_report(o: &Options, r: &CheckReport) {
    let mut steps = vec![(Section::Superblock, "examining superblock")];
    if r.superblock_ok && !o.check.super_block_only {
        steps.push((Section::Writesets, "examining writeset tree"));
        steps.push((Section::EraArray, "examining era array"));
        steps.push((Section::SpaceMap, "checking space map counts"));
    }
    print_steps(&steps, &r.log, |section| {
        (section == Section::SpaceMap && !r.counts_compared)
            .then_some("reference counts not compared: the structures above are damaged")
    });
}
