//! `cache_repair -i IN -o OUT`: recovers what can be read of damaged
//! dm-cache metadata and writes it, consistent and of the same version, to
//! another device or file (see `cache::dump` for what recovery keeps).
//! A superblock that is wholly lost is stood in for by `--block-size`
//! (required then: nothing else records it), `--metadata-version`,
//! `--nr-cache-blocks` and `--policy` (upstream 1.3.3 has none of these).

use crate::tools::cli::{
    exit_status, number, open_device, open_shared, parse_in_out, same_file, HasArg, Opt, ASYNC_IO,
    HELP, INPUT, OUTPUT, QUIET, VERSION,
};
use anyhow::{bail, Result};
use cache::dump::LostSuperblock;
use cache::restore::{RestoreOptions, Restorer};
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "Usage: cache_repair [options] -i {device|file} -o {device|file}
Options:
  {-h|--help}
  {-i|--input} <input metadata (binary format)>
  {-o|--output} <output metadata (binary format)>
  {-q|--quiet}
  {-V|--version}
When the superblock is wholly lost:
  {--block-size} <cache block size in sectors> (required then)
  {--metadata-version} <1 or 2> (else 2 if a dirty bitset is found)
  {--nr-cache-blocks} <count> (else the mapping array's length)
  {--policy} <name> (else smq)
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    INPUT,
    OUTPUT,
    ASYNC_IO,
    Opt::long("block-size", HasArg::Required, "block-size"),
    super::METADATA_VERSION,
    Opt::long("nr-cache-blocks", HasArg::Required, "nr-cache-blocks"),
    Opt::long("policy", HasArg::Required, "policy"),
];

pub fn run(args: &[String]) -> ExitCode {
    let mut lost = LostSuperblock::default();
    let io = parse_in_out("cache_repair", USAGE, OPTS, args, |id, value| {
        match id {
            "block-size" => lost.block_size = Some(number(id, value)?),
            "metadata-version" => lost.version = Some(super::metadata_version(id, value)?),
            "nr-cache-blocks" => lost.nr_cache_blocks = Some(number(id, value)?),
            "policy" => lost.policy = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    });
    match io {
        Ok(io) => exit_status("cache_repair: ", repair(&io, &lost).map(|()| true)),
        Err(status) => status,
    }
}

fn repair(o: &crate::tools::cli::InOut, lost: &LostSuperblock) -> Result<()> {
    if same_file(&o.input, &o.output) {
        bail!("the input and the output are the same file: repair writes to another one");
    }
    let input = open_device(&o.input, false)?;
    let output = open_shared(&o.output, true)?;
    let out_blocks = output.nr_blocks();
    let mut restorer = Restorer::new(Arc::clone(&output), RestoreOptions::default());
    let report = cache::dump::dump_with(&input, true, lost, &mut restorer).map_err(|e| {
        if matches!(e, cache::CacheError::Pdata(pdata::Error::NoSpace(_))) {
            anyhow::anyhow!(
                "the output ({out_blocks} blocks of 4 KiB) is too small for the recovered metadata"
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if !o.quiet {
        for w in report.warnings.iter().chain(&restorer.warnings) {
            errln!("cache_repair: {w}");
        }
    }
    Ok(())
}
