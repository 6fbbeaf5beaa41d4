//! `cache_metadata_size`: the metadata device size a cache needs, given
//! its number of cache blocks (or the fast device's size and the cache
//! block size) and the policy's hint width.
//!
//! The estimate, as the established tool makes it: 4 MiB of transaction
//! overhead, 16 bytes a block for the mappings, 8 plus the hint width for
//! the hints; each part in whole sectors, in 64-bit arithmetic that wraps
//! (so absurd inputs give the established answers too). Without `-u` or
//! `-n` the output is the established tool's, byte for byte; with them it
//! is the 1.x tool's (the exact size in the unit asked for).

use crate::tools::cli::units::{
    factor, parse_numeric, show, unit_index, Numeric, SECTORS, SECTOR_BYTES,
};
use crate::tools::cli::{GetOpt, HasArg, Opt, HELP, VERSION};
use std::process::ExitCode;

const PROG: &str = "cache_metadata_size";

const USAGE: &str = "Usage: cache_metadata_size [options]
Options:
  {-h|--help}
  {-V|--version}
  {--block-size <sectors>}
  {--device-size <sectors>}
  {--nr-blocks <natural>}
  {--max-hint-width <nr bytes>}
  {-u|--unit <unit>}
  {-n|--numeric-only [short|long]}

These all relate to the size of the fast device (eg, SSD), rather
than the whole cached device.
";

const TRANSACTION_OVERHEAD: u64 = 4 * 1024 * 1024;
const MAPPING_BYTES: u64 = 16;
const HINT_OVERHEAD: u64 = 8;
const DEFAULT_HINT_WIDTH: u32 = 4;

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    Opt::long("block-size", HasArg::Required, "block-size"),
    Opt::long("device-size", HasArg::Required, "device-size"),
    Opt::long("nr-blocks", HasArg::Required, "nr-blocks"),
    Opt::long("max-hint-width", HasArg::Required, "max-hint-width"),
    Opt::both('u', "unit", HasArg::Required, "unit"),
    Opt::both('n', "numeric-only", HasArg::Optional, "numeric-only"),
];

const BAD_NUMBER: &str = "bad lexical cast: source type value could not be interpreted as target";

pub fn run(args: &[String]) -> ExitCode {
    let mut g = GetOpt::new(PROG, OPTS, args).with_usage(USAGE);
    let mut req = Request::default();
    loop {
        let (id, value) = match g.next() {
            None => break,
            Some(Ok(o)) => o,
            Some(Err(msg)) => {
                err!("{msg}\n{USAGE}Invalid command line\n");
                return ExitCode::from(1);
            }
        };
        if let Err(msg) = req.take(id, value.as_deref()) {
            errln!("{msg}");
            return ExitCode::from(1);
        }
        if matches!(id, "help" | "version") {
            return ExitCode::SUCCESS;
        }
    }
    match req.answer() {
        Ok(line) => match outln!("{line}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => crate::tools::cli::out::write_failed(PROG, &e),
        },
        Err(msg) => {
            errln!("{msg}");
            ExitCode::from(1)
        }
    }
}

#[derive(Default)]
struct Request {
    block_size: Option<u64>,
    device_size: Option<u64>,
    nr_blocks: Option<u64>,
    hint_width: Option<u32>,
    unit: Option<usize>,
    numeric: Option<Numeric>,
}

/// A number as the established tool reads it (boost's lexical_cast): an
/// optional sign, digits, nothing else; a minus wraps around.
fn lexical<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let bad = || BAD_NUMBER.to_string();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: u64 = digits.parse().map_err(|_| bad())?;
    let bits = std::mem::size_of::<T>() * 8;
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    if v > max {
        return Err(bad());
    }
    let v = if neg { v.wrapping_neg() & max } else { v };
    T::try_from(v).map_err(|_| bad())
}

/// A size in sectors: a number, or (as 1.x takes it) a number and a unit.
fn sectors(s: &str) -> Result<u64, String> {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '+' || c == '-'))))
        .map_or(s.len(), |(i, _)| i);
    let (n, suffix) = s.split_at(end);
    let n: u64 = lexical(n)?;
    if suffix.is_empty() {
        return Ok(n);
    }
    let unit = unit_index(suffix).ok_or_else(|| BAD_NUMBER.to_string())?;
    Ok(n.wrapping_mul(factor(unit)) / SECTOR_BYTES)
}

impl Request {
    fn take(&mut self, id: &str, value: Option<&str>) -> Result<(), String> {
        let v = value.unwrap_or_default();
        match id {
            "help" => {
                out!("{USAGE}").map_err(|e| format!("{PROG}: cannot write to stdout: {e}"))?
            }
            "version" => outln!("{}", env!("CARGO_PKG_VERSION"))
                .map_err(|e| format!("{PROG}: cannot write to stdout: {e}"))?,
            "block-size" => self.block_size = Some(sectors(v)?),
            "device-size" => self.device_size = Some(sectors(v)?),
            "nr-blocks" => self.nr_blocks = Some(lexical(v)?),
            "max-hint-width" => self.hint_width = Some(lexical(v)?),
            "unit" => {
                self.unit =
                    Some(unit_index(v).ok_or_else(|| format!("{PROG}: invalid unit '{v}'"))?)
            }
            _ => {
                self.numeric = Some(parse_numeric(value).ok_or_else(|| {
                    format!("{PROG}: --numeric-only takes short or long, not '{v}'")
                })?)
            }
        }
        Ok(())
    }

    fn nr_blocks(&self) -> Result<u64, String> {
        let from_sizes = match (self.block_size, self.device_size) {
            (Some(0), Some(_)) => return Err("--block-size must not be zero".into()),
            (Some(b), Some(d)) => Some(d / b),
            (Some(_), None) => {
                return Err("If you specify --block-size you must also give --device-size.".into())
            }
            (None, Some(_)) => {
                return Err("If you specify --device-size you must also give --block-size.".into())
            }
            (None, None) => None,
        };
        match (from_sizes, self.nr_blocks) {
            (Some(a), Some(b)) if a != b => Err(
                "Contradictory arguments given, --nr-blocks doesn't match the --device-size and --block-size."
                    .into(),
            ),
            (Some(n), _) | (None, Some(n)) => Ok(n),
            (None, None) => {
                Err("Please specify either --device-size and --block-size, or --nr-blocks.".into())
            }
        }
    }

    fn answer(&self) -> Result<String, String> {
        let nr = self.nr_blocks()?;
        let width = u64::from(self.hint_width.unwrap_or(DEFAULT_HINT_WIDTH));
        if self.unit.is_none() && self.numeric.is_none() {
            let s = TRANSACTION_OVERHEAD / SECTOR_BYTES
                + nr.wrapping_mul(MAPPING_BYTES) / SECTOR_BYTES
                + nr.wrapping_mul(HINT_OVERHEAD + width) / SECTOR_BYTES;
            return Ok(format!("{s} sectors"));
        }
        let bytes = TRANSACTION_OVERHEAD as f64
            + nr as f64 * (MAPPING_BYTES + HINT_OVERHEAD + width) as f64;
        let unit = self.unit.unwrap_or(SECTORS);
        Ok(show(
            bytes / factor(unit) as f64,
            unit,
            self.numeric.unwrap_or(Numeric::Full),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(nr: u64, width: Option<u32>, unit: Option<usize>) -> String {
        let r = Request {
            nr_blocks: Some(nr),
            hint_width: width,
            unit,
            ..Request::default()
        };
        r.answer().unwrap()
    }

    #[test]
    fn estimates() {
        assert_eq!(answer(1000, None, None), "8246 sectors");
        assert_eq!(answer(20, None, None), "8192 sectors");
        assert_eq!(answer(u64::MAX, None, None), "72057594037936126 sectors");
        assert_eq!(answer(1000, Some(u32::MAX), None), "8388616236 sectors");
        assert_eq!(answer(1000, None, Some(2)), "4123.34 kibibytes");
    }

    #[test]
    fn numbers() {
        assert_eq!(lexical::<u64>("-1"), Ok(u64::MAX));
        assert_eq!(lexical::<u32>("-1"), Ok(u32::MAX));
        assert_eq!(lexical::<u64>("+5"), Ok(5));
        assert!(lexical::<u32>("4294967296").is_err());
        assert!(lexical::<u64>("12x").is_err());
        assert!(lexical::<u64>("").is_err());
        assert_eq!(sectors("64k"), Ok(128));
        assert_eq!(sectors("64"), Ok(64));
    }
}
