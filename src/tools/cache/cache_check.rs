//! `cache_check`: validates dm-cache metadata — the superblock, every array
//! and bitset block, the mappings, hints, discards and dirty bits, the
//! metadata space map against the references found — as Debian's and the
//! upstream tools do. Headings and problems go to stderr. Exit 0 when
//! sound, 1 otherwise (leaks and oddities count only without
//! `--ignore-non-fatal-errors`; `--auto-repair` and
//! `--clear-needs-check-flag` set leaks free).

use crate::tools::cli::{
    check_status, open_device, GetOpt, HasArg, Opt, Progress, ASYNC_IO, AUTO_REPAIR,
    CLEAR_NEEDS_CHECK, HELP, IGNORE_NON_FATAL, QUIET, SKIP_MAPPINGS, SUPER_BLOCK_ONLY, VERSION,
};

use anyhow::Result;
use cache::check::{check_with, clear_needs_check, CheckOptions, CheckReport, Section};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "Usage: cache_check [options] {device|file}
Options:
  {-q|--quiet}
  {-h|--help}
  {-V|--version}
  {--auto-repair}
  {--clear-needs-check-flag}
  {--ignore-non-fatal-errors}
  {--super-block-only}
  {--skip-mappings}
  {--skip-hints}
  {--skip-discards}
";

const OPTS: &[Opt] = &[
    QUIET,
    HELP,
    VERSION,
    AUTO_REPAIR,
    CLEAR_NEEDS_CHECK,
    IGNORE_NON_FATAL,
    SUPER_BLOCK_ONLY,
    SKIP_MAPPINGS,
    Opt::long("skip-hints", HasArg::No, "skip-hints"),
    Opt::long("skip-discards", HasArg::No, "skip-discards"),
    ASYNC_IO,
];

#[derive(Default)]
struct Options {
    quiet: bool,
    ignore_non_fatal: bool,
    clear_needs_check: bool,
    check: CheckOptions,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut o = Options::default();
    let mut g = GetOpt::new("cache_check", OPTS, args).with_usage(USAGE);
    let mut auto_repair = false;
    while let Some((id, _)) = g.next_opt()? {
        match id {
            "quiet" => o.quiet = true,
            "super-block-only" => o.check.super_block_only = true,
            "skip-mappings" => o.check.skip_mappings = true,
            "skip-hints" => o.check.skip_hints = true,
            "skip-discards" => o.check.skip_discards = true,
            "auto-repair" => auto_repair = true,
            "ignore-non-fatal-errors" => o.ignore_non_fatal = true,
            "clear-needs-check-flag" => o.clear_needs_check = true,
            _ => {} // async-io
        }
    }
    o.input = g.single_input()?;
    // 1.x: clearing the flag repairs leaks too.
    o.check.repair_leaks = auto_repair || o.clear_needs_check;
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
    let dev = open_device(&o.input, o.check.repair_leaks)?;
    let report = {
        let progress = Progress::new("cache_check", 0, o.quiet);
        check_with(&dev, &o.check, &progress)
    };
    if !o.quiet {
        print_report(o, &report);
    }
    let repaired = report.repaired_leaks > 0 && report.repaired_leaks == report.nr_leaks;
    let leaks_left = report.nr_leaks > 0 && !repaired;
    let ok = report.is_sound() && (!(leaks_left || report.nr_odd > 0) || o.ignore_non_fatal);
    if !o.quiet && repaired {
        errln!("repaired {} leaked blocks", report.repaired_leaks);
    }
    // The flag is cleared once nothing is damaged or leaked.
    if o.clear_needs_check && report.is_sound() && !leaks_left {
        let cleared = clear_needs_check(&dev).map_err(anyhow::Error::msg)?;
        if cleared && !o.quiet {
            errln!("cleared the needs_check flag");
        }
    }
    Ok(ok)
}

/// Prints like Debian's cache_check: each step's heading, then its
/// problems indented under it.
fn print_report(o: &Options, r: &CheckReport) {
    let mut steps = vec![(Section::Superblock, "examining superblock")];
    // The rest is examined once the superblock is sound.
    if r.superblock_ok && r.nr_fatal_in(Section::Superblock) == 0 && !o.check.super_block_only {
        steps.extend([
            (Section::Mappings, "examining mapping array"),
            (Section::Hints, "examining hint array"),
            (Section::Discards, "examining discard bitset"),
        ]);
        if r.version >= 2 {
            steps.push((Section::Dirty, "examining dirty bitset"));
        }
        steps.push((Section::SpaceMap, "checking space map counts"));
    }
    let mut err = String::new();
    for (section, heading) in steps {
        err += heading;
        err.push('\n');
        for p in r.problems.iter().filter(|p| p.section == section) {
            err += "  ";
            err += &p.text;
            err.push('\n');
        }
        if section == Section::SpaceMap && !r.counts_compared && !r.is_sound() {
            err += "  reference counts not compared: the structures above are damaged\n";
        }
    }
    for odd in &r.odd {
        err += "  ";
        err += odd;
        err.push('\n');
    }
    for note in &r.notes {
        err += "note: ";
        err += note;
        err.push('\n');
    }
    if r.nr_hidden() > 0 {
        err += &format!("  ... and {} more problems\n", r.nr_hidden());
    }
    err!("{err}");
}
