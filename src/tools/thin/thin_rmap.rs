//! `thin_rmap`: which thin blocks map the data blocks of some regions, one
//! line per run: `data B..E -> thin(DEV) T..T+len`, ordered by data block
//! as the established tool orders them (its sort leaves runs that start on
//! the same data block in a scrambled order, which is reproduced).
//!
//! Every device mapping the data is listed. The established tools list a
//! mapping-tree node shared by snapshots only under the first device that
//! reaches it, leaving its sharers out; `--shared-once` prints that.

use super::introsort;
use crate::tools::cli::{exit_status, open_reader, GetOpt, HasArg, Opt, HELP, VERSION};
use anyhow::{bail, Result};
use pdata::live::LiveMetadata;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use thin::query::rmap::Sharers;
use thin::ThinMetadata;

const CACHE_BLOCKS: usize = 1024;

const USAGE: &str = "Usage: thin_rmap [options] {device|file}
Options:
  {-h|--help}
  {-V|--version}
  {--region <block range>}*
  {--shared-once}
Where:
  <block range> is of the form <begin>..<one-past-the-end>
  for example 5..45 denotes blocks 5 to 44 inclusive, but not block 45
--shared-once lists mappings under a sub-tree that snapshots share only for
the first device that reaches it, as thin_rmap 0.9.0 does.
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    Opt::long("region", HasArg::Required, "region"),
    Opt::long("shared-once", HasArg::No, "shared-once"),
];

/// A number as C++ streams read one: blanks first, an optional sign (a
/// minus wraps), digits; what follows is left for the caller.
fn take_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim_start();
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..end].parse().ok()?;
    Some((if neg { n.wrapping_neg() } else { n }, &s[end..]))
}

/// `BEGIN..END`, END excluded; anything after END is ignored, as it is by
/// the established tool.
fn parse_region(s: &str) -> Result<Range<u64>> {
    let Some((begin, rest)) = take_number(s) else {
        bail!("badly formed region (no dots)");
    };
    let Some(rest) = rest.strip_prefix("..") else {
        bail!("badly formed region (no dots)");
    };
    let Some((end, _)) = take_number(rest) else {
        bail!("badly formed region (couldn't parse numbers)");
    };
    if end <= begin {
        bail!("badly formed region (end <= begin)");
    }
    Ok(begin..end)
}

pub fn run(args: &[String]) -> ExitCode {
    let mut regions = Vec::new();
    let mut sharers = Sharers::All;
    let mut g = GetOpt::new("thin_rmap", OPTS, args).with_usage(USAGE);
    loop {
        match g.next_opt() {
            Err(status) => return status,
            Ok(None) => break,
            Ok(Some(("shared-once", _))) => sharers = Sharers::FirstOnly,
            Ok(Some((_, v))) => match parse_region(v.as_deref().unwrap_or_default()) {
                Ok(r) => regions.push(r),
                Err(e) => {
                    errln!("{e}");
                    return ExitCode::from(1);
                }
            },
        }
    }
    if regions.is_empty() {
        return g.usage_error("No regions provided.");
    }
    let input = match g.need(
        g.operands.first().map(PathBuf::from),
        "No input file provided.",
    ) {
        Ok(input) => input,
        Err(status) => return status,
    };
    exit_status("", rmap(&input, &regions, sharers).map(|()| true))
}

fn rmap(input: &std::path::Path, regions: &[Range<u64>], sharers: Sharers) -> Result<()> {
    let dev = open_reader("thin_rmap", input, false)?;
    let md = ThinMetadata::open_with_cache(dev, false, CACHE_BLOCKS)?;
    let tm = md.transaction_manager();
    let mut runs =
        thin::query::rmap::rmap(tm, md.superblock().data_mapping_root, regions, sharers)?;
    introsort::sort_by(&mut runs, |a, b| a.data_begin < b.data_begin);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    for r in &runs {
        // Device ids are 24-bit; the established tool prints them as 32-bit.
        writeln!(
            out,
            "data {}..{} -> thin({}) {}..{}",
            r.data_begin,
            r.data_end,
            r.dev as u32,
            r.thin_begin,
            r.thin_begin.wrapping_add(r.data_end - r.data_begin)
        )?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert_eq!(parse_region("5..45").unwrap(), 5..45);
        assert_eq!(parse_region(" +1..3..5").unwrap(), 1..3);
        assert_eq!(parse_region("0..5x").unwrap(), 0..5);
        for (s, why) in [
            ("5", "no dots"),
            ("a..b", "no dots"),
            ("5 ..7", "no dots"),
            ("5..x", "couldn't parse"),
            ("1..", "couldn't parse"),
            ("3..3", "end <= begin"),
            ("-1..3", "end <= begin"),
            ("99999999999999999999..3", "no dots"),
        ] {
            let e = parse_region(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
