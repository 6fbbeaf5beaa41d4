//! `era_invalidate --written-since ERA`: the blocks written in that era or
//! later (archived writesets, the current writeset, the era array), merged
//! into ranges, in the established XML. With `--metadata-snapshot`, from
//! the metadata snapshot (which the live target leaves alone).
//!
//! Unlike Debian 0.9.0 it counts the current writeset (those blocks were
//! written as surely as any) and reads the snapshot when asked (0.9.0 reads
//! the live metadata); an era array entry 0 is never a write.

use crate::tools::cli::{exit_status, number, open_shared, GetOpt, HasArg, Opt, HELP, VERSION};
use crate::tools::xml::XmlOut;
use anyhow::{anyhow, bail, Context, Result};
use era::check::read_superblock;
use era::EraView;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "Usage: era_invalidate [options] {device|file}
Options:
  {-h|--help}
  {-o <xml file>}
  {--metadata-snapshot}
  {--written-since} <era>
  {-V|--version}
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    Opt::both('o', "output", HasArg::Required, "output"),
    Opt::long("metadata-snapshot", HasArg::No, "metadata-snapshot"),
    Opt::long("written-since", HasArg::Required, "written-since"),
];

pub fn run(args: &[String]) -> ExitCode {
    let (mut output, mut snap, mut since) = (None, false, None);
    let mut g = GetOpt::new("era_invalidate", OPTS, args).with_usage(USAGE);
    loop {
        match g.next_opt() {
            Ok(Some((id, v))) => {
                let v = v.unwrap_or_default();
                match id {
                    "output" => output = Some(PathBuf::from(v)),
                    "metadata-snapshot" => snap = true,
                    _ => match number::<u32>(id, &v) {
                        Ok(n) => since = Some(n),
                        Err(e) => return g.usage_error(e),
                    },
                }
            }
            Ok(None) => break,
            Err(status) => return status,
        }
    }
    let input = match g.single_input() {
        Ok(i) => i,
        Err(status) => return status,
    };
    let Some(since) = since else {
        return g.usage_error("Please specify --written-since");
    };
    exit_status(
        "era_invalidate: ",
        invalidate(&input, output.as_deref(), snap, since).map(|()| true),
    )
}

fn invalidate(input: &Path, output: Option<&Path>, snap: bool, since: u32) -> Result<()> {
    let dev = open_shared(input, false)?;
    let sb = read_superblock(dev.as_ref(), 0).map_err(|e| anyhow!("the superblock {e}"))?;
    let view = if snap {
        if sb.metadata_snap == 0 {
            bail!("no metadata snapshot is held");
        }
        let s = read_superblock(dev.as_ref(), sb.metadata_snap)
            .map_err(|e| anyhow!("the metadata snapshot's superblock {e}"))?;
        EraView::snapshot(&s)
    } else {
        EraView::live(&sb)
    };
    let runs = era::invalidate::written_since(dev, &view, since)?;
    let out: Box<dyn Write> = match output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut o = XmlOut::new(out);
    o.markup(b"<blocks>\n");
    for r in runs {
        if r.end - r.start == 1 {
            o.markup(b"  <block");
            o.num_attr(b"block", r.start);
            o.markup(b"/>\n");
        } else {
            o.markup(b"  <range");
            o.num_attr(b"begin", r.start);
            // The established tool's spacing.
            o.markup(b" end = \"");
            o.markup(itoa::Buffer::new().format(r.end).as_bytes());
            o.markup(b"\"/>\n");
        }
        o.spill()?;
    }
    o.markup(b"</blocks>\n");
    o.finish()?;
    Ok(())
}
