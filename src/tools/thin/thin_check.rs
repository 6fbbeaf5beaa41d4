//! `thin_check`: validates thin-pool metadata — the superblock, every tree
//! node, the devices tree against the mappings, both space maps against the
//! references found — as Debian's and the upstream Rust tools do. Progress
//! and problems go to stderr, TRANSACTION_ID and METADATA_FREE_BLOCKS to
//! stdout. Exit 0 when sound, 1 otherwise (leaks count only without
//! `--ignore-non-fatal-errors`, and are repaired with `--auto-repair`).

use crate::tools::cli::{
    check_status, data_budget, number, open_device, print_steps, warn_live, GetOpt, HasArg, Opt,
    Progress, ASYNC_IO, AUTO_REPAIR, CLEAR_NEEDS_CHECK, HELP, IGNORE_NON_FATAL, QUIET,
    SKIP_MAPPINGS, SUPER_BLOCK_ONLY, VERSION,
};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use thin::check::{check_with_progress, clear_needs_check, CheckOptions, CheckReport, Section};

const USAGE: &str = "Usage: thin_check [options] {device|file}
Options:
  {-q|--quiet}
  {-h|--help}
  {-V|--version}
  {-m|--metadata-snap}
  {--auto-repair}
  {--override-mapping-root} <block#>
  {--override-details-root} <block#>
  {--clear-needs-check-flag}
  {--ignore-non-fatal-errors}
  {--skip-mappings}
  {--super-block-only}
";

const OPTS: &[Opt] = &[
    QUIET,
    HELP,
    VERSION,
    Opt::both('m', "metadata-snap", HasArg::No, "metadata-snap"),
    // 1.x's spelling.
    Opt::long("metadata-snapshot", HasArg::No, "metadata-snap"),
    AUTO_REPAIR,
    Opt::long(
        "override-mapping-root",
        HasArg::Required,
        "override-mapping-root",
    ),
    Opt::long(
        "override-details-root",
        HasArg::Required,
        "override-details-root",
    ),
    CLEAR_NEEDS_CHECK,
    IGNORE_NON_FATAL,
    SKIP_MAPPINGS,
    SUPER_BLOCK_ONLY,
    ASYNC_IO,
];

#[derive(Default)]
struct Options {
    quiet: bool,
    ignore_non_fatal: bool,
    auto_repair: bool,
    clear_needs_check: bool,
    check: CheckOptions,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut o = Options::default();
    let mut g = GetOpt::new("thin_check", OPTS, args).with_usage(USAGE);
    while let Some((id, value)) = g.next_opt()? {
        let value = value.unwrap_or_default();
        match id {
            "quiet" => o.quiet = true,
            "super-block-only" => o.check.super_block_only = true,
            "skip-mappings" => o.check.skip_mappings = true,
            "metadata-snap" => o.check.metadata_snap = true,
            "auto-repair" => o.auto_repair = true,
            "ignore-non-fatal-errors" => o.ignore_non_fatal = true,
            "clear-needs-check-flag" => o.clear_needs_check = true,
            "override-mapping-root" => {
                o.check.override_mapping_root =
                    Some(number(id, &value).map_err(|e| g.usage_error(e))?);
            }
            "override-details-root" => {
                o.check.override_details_root =
                    Some(number(id, &value).map_err(|e| g.usage_error(e))?);
            }
            _ => {} // async-io
        }
    }
    o.input = g.single_input()?;
    if let Some(why) = conflict(&o) {
        return Err(g.usage_error(why));
    }
    // 1.x: clearing the flag repairs leaks too.
    o.check.repair_leaks = o.auto_repair || o.clear_needs_check;
    o.check.data_budget = data_budget();
    Ok(o)
}

/// Combinations that cannot write safely, refused as 1.x refuses them:
/// repairing wants the whole live metadata checked, and a repair that
/// leaves problems unreported is no repair.
fn conflict(o: &Options) -> Option<&'static str> {
    let c = &o.check;
    let elsewhere =
        c.metadata_snap || c.override_mapping_root.is_some() || c.override_details_root.is_some();
    if (o.auto_repair || o.clear_needs_check) && elsewhere {
        return Some("cannot repair or clear flags outside the live metadata (-m, --override-mapping-root, --override-details-root)");
    }
    if o.auto_repair && (c.skip_mappings || c.super_block_only) {
        return Some("--auto-repair needs the whole check: it takes no --skip-mappings or --super-block-only");
    }
    if o.auto_repair && o.ignore_non_fatal {
        return Some(
            "--auto-repair repairs the non-fatal errors: it takes no --ignore-non-fatal-errors",
        );
    }
    None
}

pub fn run(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(status) => return status,
    };
    check_status(o.quiet, execute(&o))
}

fn execute(o: &Options) -> Result<bool> {
    let writable = o.check.repair_leaks;
    let dev = open_device(&o.input, writable)?;
    if !writable && !o.check.metadata_snap && dev.held_by_kernel() {
        warn_live("thin_check", &o.input);
    }
    let report = {
        // Gone (its line cleared) before the report is printed.
        let progress = Progress::new("thin_check", 0, o.quiet);
        check_with_progress(&dev, &o.check, &progress)
    };
    if !o.quiet {
        print_report(o, &report).context("cannot write to stdout")?;
    }
    let repaired = report.repaired_leaks > 0 && report.repaired_leaks == report.nr_leaks;
    let ok = report.is_sound() && (report.nr_leaks == 0 || o.ignore_non_fatal || repaired);
    if !o.quiet && repaired {
        errln!("repaired {} leaked blocks", report.repaired_leaks);
    }
    // 1.x: --auto-repair clears the flag too once all is well (stratisd
    // relies on it).
    if ok && (o.clear_needs_check || o.auto_repair) {
        let cleared = clear_needs_check(&dev).map_err(anyhow::Error::msg)?;
        if cleared && !o.quiet {
            errln!("cleared the needs_check flag");
        }
    }
    Ok(ok)
}

/// Prints like Debian's thin_check: each step's heading, then its problems
/// indented under it.
fn print_report(o: &Options, r: &CheckReport) -> std::io::Result<()> {
    if r.superblock_ok {
        outln!("TRANSACTION_ID={}", r.transaction_id)?;
        outln!("METADATA_FREE_BLOCKS={}", r.metadata_free_blocks)?;
    }
    let mut steps = vec![(Section::Superblock, "examining superblock")];
    if r.superblock_ok && !o.check.super_block_only {
        steps.push((Section::Devices, "examining devices tree"));
        if o.check.skip_mappings {
            steps.push((Section::Mappings, "examining top level of mapping tree"));
        } else {
            steps.push((Section::Mappings, "examining mapping tree"));
            if !o.check.metadata_snap {
                steps.push((Section::SpaceMaps, "checking space map counts"));
            }
        }
    }
    print_steps(&steps, &r.log, |section| {
        (section == Section::SpaceMaps && !r.counts_compared)
            .then_some("reference counts not compared: the trees above are damaged")
    });
    Ok(())
}
