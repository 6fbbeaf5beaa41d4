//! `thin_metadata_size`: the metadata device size a pool needs, given its
//! data block size, pool size and number of thins, with the established
//! tool's estimate, units, spellings and output, number for number.
//!
//! The estimate: one 4 KiB block per 126 mappings (a leaf holds 252, half
//! full on average), one per thin, plus the superblock. Arithmetic is done
//! as the established tool does it (64-bit unsigned integers that wrap,
//! then a double), so even absurd inputs give the same answers.

use crate::tools::cli::units::{
    factor, parse_numeric, show, unit_index, Numeric, SECTORS, SECTOR_BYTES, UNIT_CHARS, UNIT_NAMES,
};
use crate::tools::cli::{GetOpt, HasArg, Opt, HELP, VERSION};
use std::process::ExitCode;
use thin::format::superblock::{data_block_size_error, valid_data_block_size};

const PROG: &str = "thin_metadata_size";

/// Mappings per B-tree leaf: (4096 - 64-byte header) / 16 bytes an entry.
const MAPPINGS_PER_BLOCK: u64 = 252;
const METADATA_BLOCK_BYTES: u64 = 4096;

struct State {
    unit: usize,
    block_size: u64,
    pool_size: u64,
    max_thins: u64,
    /// How each size was given, for the full output line.
    spelled: [String; 3],
    numeric: Numeric,
}

const BLOCK: usize = 0;
const POOL: usize = 1;
const THINS: usize = 2;

const OPTS: &[Opt] = &[
    Opt::both('b', "block-size", HasArg::Required, "b"),
    Opt::both('s', "pool-size", HasArg::Required, "s"),
    Opt::both('m', "max-thins", HasArg::Required, "m"),
    Opt::both('u', "unit", HasArg::Required, "u"),
    Opt::both('n', "numeric-only", HasArg::Optional, "n"),
    HELP,
    VERSION,
];

fn usage() -> String {
    let units = std::str::from_utf8(UNIT_CHARS).unwrap_or_default();
    let lines = [
        (
            "-b",
            format!("--block-size BLOCKSIZE[{units}]"),
            "Block size of thin provisioned devices.",
        ),
        (
            "-s",
            format!("--pool-size SIZE[{units}]"),
            "Size of pool device.",
        ),
        (
            "-m",
            format!("--max-thins #MAXTHINS[{units}]"),
            "Maximum sum of all thin devices and snapshots.",
        ),
        (
            "-u",
            format!("--unit {{{units}}}"),
            "Output unit specifier.",
        ),
        (
            "-n",
            "--numeric-only [short|long]".into(),
            "Output numeric value only (optionally with short/long unit identifier).",
        ),
        ("-h", "--help".into(), "This help."),
        (
            "-V",
            "--version".into(),
            "Print thin provisioning tools version.",
        ),
    ];
    let mut s =
        format!("Thin Provisioning Metadata Device Size Calculator.\nUsage: {PROG} [options]\n");
    for (short, long, about) in lines {
        s += &format!("\t{short:<4}{long:<44}{about}\n");
    }
    s
}

pub fn run(args: &[String]) -> ExitCode {
    match execute(args) {
        Ok(text) => match out!("{text}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => crate::tools::cli::out::write_failed(PROG, &e),
        },
        Err(msg) => {
            errln!("{msg}");
            ExitCode::from(1)
        }
    }
}

fn abort(msg: &str) -> String {
    format!("{PROG} - {msg}")
}

/// The text to print (the result, the help or the version), or the error
/// message.
fn execute(args: &[String]) -> Result<String, String> {
    let mut st = State {
        unit: SECTORS,
        block_size: 0,
        pool_size: 0,
        max_thins: 0,
        spelled: Default::default(),
        numeric: Numeric::Full,
    };
    let mut g = GetOpt::new(PROG, OPTS, args);
    while let Some(opt) = g.next() {
        let (id, arg) = opt?;
        let value = arg.as_deref().unwrap_or_default();
        match id {
            "b" => st.size(BLOCK, value)?,
            "s" => st.size(POOL, value)?,
            "m" => st.size(THINS, value)?,
            "u" => {
                st.unit =
                    unit_index(value).ok_or_else(|| abort("output unit specifier invalid!"))?
            }
            "n" => st.numeric_option(arg.as_deref())?,
            "help" => return Ok(usage()),
            _ => return Ok(format!("{}\n", env!("CARGO_PKG_VERSION"))),
        }
    }
    st.check()?;
    Ok(st.result())
}

impl State {
    /// Parses NUMBER[UNIT] for option `o`: block and pool sizes in sectors,
    /// the number of thins as a plain count (a unit multiplies it).
    fn size(&mut self, o: usize, arg: &str) -> Result<(), String> {
        let current = [self.block_size, self.pool_size, self.max_thins][o];
        if current != 0 {
            return Err(abort("option already given!"));
        }
        let digits_end = arg.bytes().take_while(u8::is_ascii_digit).count();
        let (digits, suffix) = arg.split_at(digits_end);
        // atoll: saturates at the largest signed value.
        let n = digits.parse::<u64>().map_or_else(
            |_| {
                if digits.is_empty() {
                    0
                } else {
                    i64::MAX as u64
                }
            },
            |v| v.min(i64::MAX as u64),
        );
        let unit = if suffix.is_empty() {
            None
        } else {
            Some(unit_index(suffix).ok_or_else(|| abort("Invalid unit specifier!"))?)
        };
        let bytes = n.wrapping_mul(factor(unit.unwrap_or(SECTORS)));
        let value = if unit.is_none() || o != THINS {
            bytes / SECTOR_BYTES
        } else {
            bytes
        };
        // A bare number is shown in the output unit current at the time.
        let shown = match unit {
            Some(u) => format!("{digits}{}", UNIT_NAMES[u]),
            None if o == THINS => arg.to_string(),
            None => format!("{arg}{}", UNIT_NAMES[self.unit]),
        };
        match o {
            BLOCK => self.block_size = value,
            POOL => self.pool_size = value,
            _ => self.max_thins = value,
        }
        self.spelled[o] = shown;
        Ok(())
    }

    /// `-n`, `-nshort`, `-nlong` (or prefixes); an empty argument is refused.
    fn numeric_option(&mut self, arg: Option<&str>) -> Result<(), String> {
        if self.numeric != Numeric::Full {
            return Err(abort("-n already given!"));
        }
        self.numeric = parse_numeric(arg).ok_or_else(|| abort("-n invalid option argument"))?;
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let msg = if self.block_size == 0 {
            "block size required!"
        } else if self.pool_size == 0 {
            "pool size required!"
        } else if self.max_thins == 0 {
            "max thins required!"
        } else if !u32::try_from(self.block_size).is_ok_and(valid_data_block_size) {
            // The kernel's rule (as 1.x), where 0.9.0 wanted a power of two:
            // it took 64 and 4194304 sectors, which dm-thin refuses, and
            // refused 384, which dm-thin takes.
            return Err(abort(&data_block_size_error(
                u32::try_from(self.block_size).unwrap_or(u32::MAX),
            )));
        } else if self.pool_size <= self.block_size {
            "pool size must be larger than block size"
        } else {
            return Ok(());
        };
        Err(abort(msg))
    }

    fn result(&self) -> String {
        let blocks = self.pool_size.wrapping_mul(2) / self.block_size / MAPPINGS_PER_BLOCK;
        let mut r = 1.0 + blocks.wrapping_add(self.max_thins) as f64;
        r *= METADATA_BLOCK_BYTES as f64;
        r /= factor(self.unit) as f64;
        let mut s = String::new();
        if self.numeric == Numeric::Full {
            s += &format!("{PROG} - ");
        }
        s += &show(r, self.unit, self.numeric);
        if self.numeric == Numeric::Full {
            s += &format!(
                " estimated metadata area size for \"--block-size={} --pool-size={} --max-thins={}\"",
                self.spelled[BLOCK], self.spelled[POOL], self.spelled[THINS]
            );
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(args: &[&str]) -> Result<String, String> {
        execute(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn examples() {
        assert_eq!(
            out(&["-b64k", "-s1t", "-m1000"]).unwrap(),
            "thin_metadata_size - 1073224 sectors estimated metadata area size for \"--block-size=64kibibytes --pool-size=1tebibytes --max-thins=1000\"\n"
        );
        assert_eq!(
            out(&[
                "--block-size=1g",
                "--pool-size=1P",
                "--max-thins=1M",
                "--unit=G",
                "--numeric-only"
            ])
            .unwrap(),
            "4.13\n"
        );
        assert_eq!(
            out(&["-b", "64k", "-s", "1000000", "-m", "10", "-u", "Y"]).unwrap(),
            "thin_metadata_size - 1.49e-13 yottabytes estimated metadata area size for \"--block-size=64kibibytes --pool-size=1000000sectors --max-thins=10\"\n"
        );
        assert!(out(&["-b", "127", "-s", "1000", "-m", "1"]).is_err());
    }
}
