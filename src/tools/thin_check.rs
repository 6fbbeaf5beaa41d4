//! `thin_check`: validates thin-pool metadata — the superblock, every tree
//! node, the devices tree against the mappings, both space maps against the
//! references found — as Debian's and the upstream Rust tools do. Progress
//! and problems go to stderr, TRANSACTION_ID and METADATA_FREE_BLOCKS to
//! stdout. Exit 0 when sound, 1 otherwise (leaks count only without
//! `--ignore-non-fatal-errors`, and are repaired with `--auto-repair`).

use super::cli::Cli;
use anyhow::{bail, Context, Result};
use pdata::io::FileDevice;
use std::path::PathBuf;
use std::process::ExitCode;
use thin::check::{check_with, clear_needs_check, CheckOptions, CheckReport, Section};

const USAGE: &str = "Usage: thin_check [options] {device|file}
Options:
  {-q|--quiet}
  {-h|--help}
  {-V|--version}
  {-m|--metadata-snap}
  {--auto-repair}
  {--override-mapping-root}
  {--clear-needs-check-flag}
  {--ignore-non-fatal-errors}
  {--skip-mappings}
  {--super-block-only}
";

#[derive(Default)]
struct Options {
    quiet: bool,
    ignore_non_fatal: bool,
    auto_repair: bool,
    clear_needs_check: bool,
    check: CheckOptions,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options::default();
    let mut input = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        match name {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-q" | "--quiet" => o.quiet = true,
            "--super-block-only" => o.check.super_block_only = true,
            "--skip-mappings" => o.check.skip_mappings = true,
            "-m" | "--metadata-snap" | "--metadata-snapshot" => o.check.metadata_snap = true,
            "--auto-repair" => o.auto_repair = true,
            "--ignore-non-fatal-errors" => o.ignore_non_fatal = true,
            "--clear-needs-check-flag" => o.clear_needs_check = true,
            "--override-mapping-root" => {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .context("--override-mapping-root needs a block number")?
                        .clone(),
                };
                let b = v.parse().with_context(|| {
                    format!("bad block number '{v}' for --override-mapping-root")
                })?;
                o.check.override_mapping_root = Some(b);
            }
            s if s.starts_with('-') && s.len() > 1 => bail!("unrecognised option '{s}'"),
            s => {
                if input.replace(PathBuf::from(s)).is_some() {
                    bail!("only one input is allowed");
                }
            }
        }
    }
    o.input = input.context("No input file provided.")?;
    if (o.auto_repair || o.clear_needs_check)
        && (o.check.metadata_snap || o.check.override_mapping_root.is_some())
    {
        bail!(
            "cannot repair or clear flags outside the live metadata (-m, --override-mapping-root)"
        );
    }
    // 1.x: clearing the flag repairs leaks too.
    o.check.repair_leaks = o.auto_repair || o.clear_needs_check;
    Ok(Some(o))
}

pub fn run(args: &[String]) -> ExitCode {
    let cli = Cli {
        usage: USAGE,
        prefix: "",
        usage_status: 1,
    };
    cli.run(args, parse, |o| match execute(o) {
        // -q: only the exit status speaks.
        Err(_) if o.quiet => Ok(false),
        r => r,
    })
}

fn execute(o: &Options) -> Result<bool> {
    let writable = o.check.repair_leaks;
    let dev = FileDevice::open(&o.input, writable)
        .with_context(|| format!("cannot open {}", o.input.display()))?;
    let report = check_with(&dev, &o.check);
    if !o.quiet {
        print_report(o, &report);
    }
    let repaired = report.repaired_leaks > 0 && report.repaired_leaks == report.nr_leaks;
    let ok = report.is_sound() && (report.nr_leaks == 0 || o.ignore_non_fatal || repaired);
    if !o.quiet && repaired {
        eprintln!("repaired {} leaked blocks", report.repaired_leaks);
    }
    if ok && o.clear_needs_check {
        let cleared = clear_needs_check(&dev).map_err(anyhow::Error::msg)?;
        if cleared && !o.quiet {
            eprintln!("cleared the needs_check flag");
        }
    }
    Ok(ok)
}

/// Prints like Debian's thin_check: each step's heading, then its problems
/// indented under it.
fn print_report(o: &Options, r: &CheckReport) {
    if r.superblock_ok {
        println!("TRANSACTION_ID={}", r.transaction_id);
        println!("METADATA_FREE_BLOCKS={}", r.metadata_free_blocks);
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
    let mut err = String::new();
    for (section, heading) in steps {
        err += heading;
        err.push('\n');
        for p in r.problems.iter().filter(|p| p.section == section) {
            err += "  ";
            err += &p.text;
            err.push('\n');
        }
        if section == Section::SpaceMaps && !r.counts_compared {
            err += "  reference counts not compared: the trees above are damaged\n";
        }
    }
    if r.nr_hidden() > 0 {
        err += &format!("  ... and {} more problems\n", r.nr_hidden());
    }
    eprint!("{err}");
}
