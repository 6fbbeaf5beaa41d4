//! `cache_restore`: builds dm-cache metadata from the XML of `cache_dump`,
//! in bulk (version 2 unless `--metadata-version 1`).

use crate::tools::cli::{
    exit_status, open_shared, parse_in_out, CountingReader, HasArg, Opt, Progress, ASYNC_IO, HELP,
    INPUT, OUTPUT, QUIET, VERSION,
};
use anyhow::{bail, Context, Result};
use cache::restore::{RestoreOptions, Restorer};
use std::fs::File;
use std::process::ExitCode;

const USAGE: &str = "Usage: cache_restore [options]
Options:
  {-h|--help}
  {-i|--input} <input xml file>
  {-o|--output} <output device or file>
  {-q|--quiet}
  {--metadata-version} <1 or 2>
  {--omit-clean-shutdown}
  {-V|--version}
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    INPUT,
    OUTPUT,
    super::METADATA_VERSION,
    // 0.9.0's debugging spelling: any version, unchecked there; 1 or 2 here.
    Opt::long(
        "debug-override-metadata-version",
        HasArg::Required,
        "metadata-version",
    ),
    Opt::long("omit-clean-shutdown", HasArg::No, "omit-clean-shutdown"),
    ASYNC_IO,
];

pub fn run(args: &[String]) -> ExitCode {
    let mut opts = RestoreOptions::default();
    let io = parse_in_out("cache_restore", USAGE, OPTS, args, |id, value| {
        match id {
            "metadata-version" => opts.version = Some(super::metadata_version(id, value)?),
            "omit-clean-shutdown" => opts.omit_clean_shutdown = true,
            _ => {}
        }
        Ok(())
    });
    match io {
        Ok(io) => exit_status("cache_restore: ", restore(&io, opts).map(|()| true)),
        Err(status) => status,
    }
}

fn restore(o: &crate::tools::cli::InOut, opts: RestoreOptions) -> Result<()> {
    let input =
        File::open(&o.input).with_context(|| format!("cannot open {}", o.input.display()))?;
    if input.metadata().is_ok_and(|m| m.is_dir()) {
        bail!("{} is a directory", o.input.display());
    }
    if !o.output.exists() {
        bail!(
            "{} does not exist.\n\nThe output file should either be a block device,\nor an existing file.  The file needs to be large\nenough to hold the metadata.",
            o.output.display()
        );
    }
    let dev = open_shared(&o.output, true)?;
    let mut restorer = Restorer::new(dev, opts);
    let len = input.metadata().map_or(0, |m| m.len());
    let progress = Progress::new("cache_restore", len, o.quiet || len == 0);
    let input = CountingReader {
        inner: input,
        progress: &progress,
    };
    let done = super::xml::parse_in_background(input, &mut restorer);
    drop(progress);
    if !o.quiet {
        for w in &restorer.warnings {
            errln!("cache_restore: warning: {w}");
        }
    }
    done
}
