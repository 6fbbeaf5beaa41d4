//! `thin_check`: validates thin-pool metadata (superblock, every tree node,
//! device details against the mappings, both space maps against the
//! references found). Exit 0 when clean, 1 otherwise.

use super::cli::Cli;
use anyhow::{bail, Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use thin::check::check;
use thin::ThinMetadata;

const USAGE: &str = "Usage: thin_check [options] {device|file}
Options:
  {-q|--quiet}
  {-h|--help}
  {-V|--version}
  {-m|--metadata-snapshot}
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
    super_block_only: bool,
    ignore_non_fatal: bool,
    clear_needs_check: bool,
    input: PathBuf,
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options::default();
    let mut input = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-q" | "--quiet" => o.quiet = true,
            "--super-block-only" => o.super_block_only = true,
            "--skip-mappings" | "-m" | "--metadata-snapshot" | "--auto-repair" => {}
            "--ignore-non-fatal-errors" => o.ignore_non_fatal = true,
            "--clear-needs-check-flag" => o.clear_needs_check = true,
            "--override-mapping-root" => {
                it.next().context("--override-mapping-root needs a block")?;
            }
            s if s.starts_with('-') => bail!("unrecognised option '{s}'"),
            s => {
                if input.replace(PathBuf::from(s)).is_some() {
                    bail!("only one input is allowed");
                }
            }
        }
    }
    o.input = input.context("No input file provided.")?;
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
    let dev: Arc<dyn BlockDevice> = Arc::new(
        FileDevice::open(&o.input, false)
            .with_context(|| format!("cannot open {}", o.input.display()))?,
    );
    let say = |s: &str| {
        if !o.quiet {
            println!("{s}");
        }
    };
    say("examining superblock");
    let md = ThinMetadata::open(dev.clone(), false).context("bad superblock")?;
    drop(md);
    if o.super_block_only {
        return Ok(true);
    }
    say("examining devices tree");
    say("examining mapping tree");
    say("checking space map counts");
    let report = check(dev)?;
    if !o.quiet {
        for e in &report.errors {
            eprintln!("{e}");
        }
        for l in &report.leaks {
            eprintln!("{l}");
        }
    }
    let ok = report.errors.is_empty() && (o.ignore_non_fatal || report.leaks.is_empty());
    if ok && o.clear_needs_check {
        let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(&o.input, true)?);
        let mut md = ThinMetadata::open(dev, true)?;
        if md.needs_check() {
            md.clear_needs_check();
            md.commit()?;
        }
    }
    Ok(ok)
}
