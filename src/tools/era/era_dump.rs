//! `era_dump`: era metadata as XML, one `<bit>` per block of each writeset
//! (as Debian's era_dump) or, with `--compact`, runs of marked blocks (as
//! the upstream Rust tools read them). `--logical` folds the writesets into
//! the era array first. The current writeset is dumped as the writeset of
//! the current era when it holds a write (Debian 0.9.0 leaves it out).

use super::xml::XmlWriter;
use crate::tools::cli::{exit_status, open_shared, GetOpt, HasArg, Opt, HELP, VERSION};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "Usage: era_dump [options] {device|file}
Options:
  {-h|--help}
  {-o <xml file>}
  {-V|--version}
  {--logical}
  {--compact}
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    Opt::both('o', "output", HasArg::Required, "output"),
    Opt::long("logical", HasArg::No, "logical"),
    Opt::long("compact", HasArg::No, "compact"),
    Opt::both('r', "repair", HasArg::No, "repair"),
];

pub fn run(args: &[String]) -> ExitCode {
    let (mut output, mut logical, mut compact, mut repair) = (None, false, false, false);
    let mut g = GetOpt::new("era_dump", OPTS, args).with_usage(USAGE);
    loop {
        match g.next_opt() {
            Ok(Some((id, v))) => match id {
                "output" => output = v.map(PathBuf::from),
                "logical" => logical = true,
                "compact" => compact = true,
                _ => repair = true,
            },
            Ok(None) => break,
            Err(status) => return status,
        }
    }
    let input = match g.single_input() {
        Ok(i) => i,
        Err(status) => return status,
    };
    exit_status(
        "era_dump: ",
        dump(&input, output, logical, compact, repair).map(|()| true),
    )
}

fn dump(
    input: &std::path::Path,
    output: Option<PathBuf>,
    logical: bool,
    compact: bool,
    repair: bool,
) -> Result<()> {
    let dev = open_shared(input, false)?;
    let out: Box<dyn Write> = match &output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = XmlWriter::new(out, compact);
    if repair {
        era::repair::recover(dev, &mut w)?;
    } else {
        era::dump::dump(dev, logical, &mut w)?;
    }
    Ok(())
}
