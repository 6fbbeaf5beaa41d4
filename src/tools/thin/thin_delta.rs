//! `thin_delta`: how the mappings of two thin devices differ, in the
//! established tool's XML (`same`, `different`, `left_only`, `right_only`
//! ranges of thin blocks; `--verbose` adds where the data is).
//!
//! Both devices' mappings are streamed side by side as runs (consecutive
//! thin blocks on consecutive data blocks) and merged; nothing is held per
//! mapping. A leaf the two devices share is read twice but from the cache,
//! since both streams reach it together.

use crate::tools::cli::{describe, open_reader, GetOpt, HasArg, Opt, HELP, VERSION};
use anyhow::{bail, Context, Result};
use pdata::live::LiveMetadata;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use thin::query::cursor::{Run, RunCursor};
use thin::query::device_root;
use thin::ThinMetadata;

/// Two streams walk side by side: a small cache holds both paths.
const CACHE_BLOCKS: usize = 1024;

const USAGE: &str = "Usage: thin_delta [options] <device or file>
Options:
  {--thin1, --snap1}
  {--thin2, --snap2}
  {-m, --metadata-snap} [block#]
  {--verbose}
  {-h|--help}
  {-V|--version}
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    Opt::long("thin1", HasArg::Required, "thin1"),
    Opt::long("snap1", HasArg::Required, "thin1"),
    Opt::long("thin2", HasArg::Required, "thin2"),
    Opt::long("snap2", HasArg::Required, "thin2"),
    Opt::long("root1", HasArg::Required, "root1"),
    Opt::long("root2", HasArg::Required, "root2"),
    Opt::both('m', "metadata-snap", HasArg::Optional, "snap"),
    Opt::long("verbose", HasArg::No, "verbose"),
];

/// A side of the diff: a device, or (as in newer releases) a tree root.
#[derive(Clone, Copy)]
enum Side {
    Dev(u64),
    Root(u64),
}

struct Options {
    input: PathBuf,
    left: Side,
    right: Side,
    metadata_snap: Option<Option<u64>>,
    verbose: bool,
}

/// The established tool's number parsing: decimal, a leading minus wraps.
fn parse_u64(s: &str, what: &str) -> Result<u64, String> {
    let bad = || format!("Couldn't parse {what}: '{s}'");
    match s.strip_prefix('-') {
        Some(rest) => Ok(rest.parse::<u64>().map_err(|_| bad())?.wrapping_neg()),
        None => s.parse::<u64>().map_err(|_| bad()),
    }
}

/// Every complaint comes with the usage, as the established tool gives it.
fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut left = None;
    let mut right = None;
    let mut metadata_snap = None;
    let mut verbose = false;
    let mut g = GetOpt::new("thin_delta", OPTS, args).with_usage(USAGE);
    while let Some((id, value)) = g.next_opt()? {
        let value = value.unwrap_or_default();
        let number = |what| parse_u64(&value, what).map_err(|e| g.usage_error(e));
        match id {
            "thin1" => left = Some(Side::Dev(number("thin id 1")?)),
            "thin2" => right = Some(Side::Dev(number("thin id 2")?)),
            "root1" => left = Some(Side::Root(number("root block 1")?)),
            "root2" => right = Some(Side::Root(number("root block 2")?)),
            "snap" if value.is_empty() => metadata_snap = Some(None),
            "snap" => metadata_snap = Some(Some(number("metadata snapshot block")?)),
            _ => verbose = true,
        }
    }
    Ok(Options {
        input: g.need(
            g.operands.first().map(PathBuf::from),
            "No input device provided.",
        )?,
        left: g.need(left, "--snap1 not specified.")?,
        right: g.need(right, "--snap2 not specified.")?,
        metadata_snap,
        verbose,
    })
}

pub fn run(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(status) => return status,
    };
    match delta(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Reported with the usage too, as the established tool does.
            err!("{}\n{USAGE}", describe(&e));
            ExitCode::from(1)
        }
    }
}

fn delta(o: &Options) -> Result<()> {
    let dev = open_reader("thin_delta", &o.input, o.metadata_snap.is_some())?;
    let md = ThinMetadata::open_with_cache(dev, false, CACHE_BLOCKS)?;
    let live = md.superblock().clone();
    let (sb, nr_data_blocks) = match o.metadata_snap {
        None => (live.clone(), md.nr_data_blocks()),
        Some(asked) => {
            let held = md.held_root().context("no current metadata snap")?;
            if asked.is_some_and(|b| b != held) {
                bail!("metadata snapshot does not match that in superblock");
            }
            let snap = md.metadata_snap()?.context("no current metadata snap")?;
            // A snapshot's space-map roots are zero, so is its size.
            (snap, 0)
        }
    };
    let tm = md.transaction_manager();
    let root_of = |side: Side, n: u32| -> Result<u64> {
        match side {
            Side::Root(b) => Ok(b),
            Side::Dev(d) => device_root(tm, sb.data_mapping_root, d)?
                .with_context(|| format!("Unable to find mapping tree for snap{n} ({d})")),
        }
    };
    let (left_root, right_root) = (root_of(o.left, 1)?, root_of(o.right, 2)?);

    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    write!(
        out,
        "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\" data_block_size=\"{}\" nr_data_blocks=\"{}\"",
        sb.time, sb.transaction_id, sb.data_block_size, nr_data_blocks
    )?;
    if sb.held_root != 0 {
        write!(out, " metadata_snap=\"{}\"", sb.held_root)?;
    }
    writeln!(out, ">")?;
    let side = |s: Side, n: &str| match s {
        Side::Dev(d) => format!("{n}=\"{d}\""),
        Side::Root(b) => format!("{n}_root=\"{b}\""),
    };
    writeln!(
        out,
        "  <diff {} {}>",
        side(o.left, "left"),
        side(o.right, "right")
    )?;
    let mut left = RunCursor::new(tm, left_root);
    let mut right = RunCursor::new(tm, right_root);
    if o.verbose {
        merge(&mut left, &mut right, &mut Verbose::new(&mut out))?;
    } else {
        merge(&mut left, &mut right, &mut Simple::new(&mut out))?;
    }
    writeln!(out, "  </diff>\n</superblock>")?;
    out.flush()?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    LeftOnly,
    RightOnly,
    Different,
    Same,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::LeftOnly => "left_only",
            Kind::RightOnly => "right_only",
            Kind::Different => "different",
            Kind::Same => "same",
        }
    }
}

/// One piece of the diff: `len` thin blocks from `begin`, with the data
/// blocks each side maps them to (right_data only for `Different`).
#[derive(Clone, Copy)]
struct Piece {
    kind: Kind,
    begin: u64,
    data: u64,
    right_data: u64,
    len: u64,
}

trait Emit {
    fn piece(&mut self, p: Piece) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
}

/// Walks both run streams in thin-block order, cutting runs where the
/// other side starts or ends.
fn merge<R: pdata::block_manager::BlockRead>(
    left: &mut RunCursor<R>,
    right: &mut RunCursor<R>,
    e: &mut dyn Emit,
) -> Result<()> {
    let mut l = left.next_run()?;
    let mut r = right.next_run()?;
    let piece = |kind, begin, data, right_data, len| Piece {
        kind,
        begin,
        data,
        right_data,
        len,
    };
    while let (Some(lm), Some(rm)) = (l, r) {
        let len;
        if lm.thin_begin < rm.thin_begin {
            len = lm.len.min(rm.thin_begin - lm.thin_begin);
            e.piece(piece(Kind::LeftOnly, lm.thin_begin, lm.data_begin, 0, len))?;
            l = consume(left, lm, len)?;
            continue;
        }
        if rm.thin_begin < lm.thin_begin {
            len = rm.len.min(lm.thin_begin - rm.thin_begin);
            e.piece(piece(Kind::RightOnly, rm.thin_begin, rm.data_begin, 0, len))?;
            r = consume(right, rm, len)?;
            continue;
        }
        len = lm.len.min(rm.len);
        let kind = if lm.data_begin == rm.data_begin {
            Kind::Same
        } else {
            Kind::Different
        };
        e.piece(piece(
            kind,
            lm.thin_begin,
            lm.data_begin,
            rm.data_begin,
            len,
        ))?;
        l = consume(left, lm, len)?;
        r = consume(right, rm, len)?;
    }
    while let Some(lm) = l {
        e.piece(piece(
            Kind::LeftOnly,
            lm.thin_begin,
            lm.data_begin,
            0,
            lm.len,
        ))?;
        l = left.next_run()?;
    }
    while let Some(rm) = r {
        e.piece(piece(
            Kind::RightOnly,
            rm.thin_begin,
            rm.data_begin,
            0,
            rm.len,
        ))?;
        r = right.next_run()?;
    }
    e.finish()
}

/// What is left of `run` after its first `len` blocks (the next run when
/// nothing is).
fn consume<R: pdata::block_manager::BlockRead>(
    c: &mut RunCursor<R>,
    run: Run,
    len: u64,
) -> Result<Option<Run>> {
    if len >= run.len {
        return Ok(c.next_run()?);
    }
    Ok(Some(Run {
        thin_begin: run.thin_begin + len,
        data_begin: run.data_begin + len,
        len: run.len - len,
    }))
}

/// One element per stretch of contiguous thin blocks of one kind.
struct Simple<'w> {
    out: &'w mut dyn Write,
    open: Option<(Kind, u64, u64)>,
}

impl<'w> Simple<'w> {
    fn new(out: &'w mut dyn Write) -> Self {
        Simple { out, open: None }
    }

    fn flush_open(&mut self) -> Result<()> {
        if let Some((kind, begin, end)) = self.open.take() {
            writeln!(
                self.out,
                "    <{} begin=\"{begin}\" length=\"{}\"/>",
                kind.tag(),
                end.wrapping_sub(begin)
            )?;
        }
        Ok(())
    }
}

impl Emit for Simple<'_> {
    fn piece(&mut self, p: Piece) -> Result<()> {
        if let Some((kind, _, end)) = &mut self.open {
            if *kind == p.kind && *end == p.begin {
                *end = end.wrapping_add(p.len);
                return Ok(());
            }
        }
        self.flush_open()?;
        self.open = Some((p.kind, p.begin, p.begin.wrapping_add(p.len)));
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_open()
    }
}

/// One element per change of kind, holding a range per piece.
struct Verbose<'w> {
    out: &'w mut dyn Write,
    open: Option<Kind>,
}

impl<'w> Verbose<'w> {
    fn new(out: &'w mut dyn Write) -> Self {
        Verbose { out, open: None }
    }
}

impl Emit for Verbose<'_> {
    fn piece(&mut self, p: Piece) -> Result<()> {
        if self.open != Some(p.kind) {
            if let Some(k) = self.open {
                writeln!(self.out, "    </{}>", k.tag())?;
            }
            writeln!(self.out, "    <{}>", p.kind.tag())?;
            self.open = Some(p.kind);
        }
        if p.kind == Kind::Different {
            writeln!(
                self.out,
                "      <range begin=\"{}\" left_data_begin=\"{}\" right_data_begin=\"{}\" length=\"{}\"/>",
                p.begin, p.data, p.right_data, p.len
            )?;
        } else {
            writeln!(
                self.out,
                "      <range begin=\"{}\" data_begin=\"{}\" length=\"{}\"/>",
                p.begin, p.data, p.len
            )?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(k) = self.open.take() {
            writeln!(self.out, "    </{}>", k.tag())?;
        }
        Ok(())
    }
}
