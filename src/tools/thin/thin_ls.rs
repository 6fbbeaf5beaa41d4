//! `thin_ls`: one row per thin device with the fields asked for, in the
//! established tool's layout (right-aligned columns, each followed by a
//! space), or as JSON for scripts.

use crate::tools::cli::{
    data_budget, exit_status, open_reader, GetOpt, HasArg, Opt, HELP, VERSION,
};
use anyhow::{Context, Result};
use pdata::live::LiveMetadata;
use pdata::space_map::counts::WINDOW_BUDGET;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use thin::query::usage::{exclusive_mappings, highest_mapped};
use thin::{DeviceDetails, ThinError, ThinMetadata};

/// Small: the walks read each node once or twice, in order.
const CACHE_BLOCKS: usize = 1024;
const SECTOR_BYTES: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Dev,
    MappedBlocks,
    ExclusiveBlocks,
    SharedBlocks,
    MappedSectors,
    ExclusiveSectors,
    SharedSectors,
    MappedBytes,
    ExclusiveBytes,
    SharedBytes,
    Mapped,
    Exclusive,
    Shared,
    Transaction,
    CreateTime,
    SnapTime,
    HighestBlock,
    HighestSector,
    HighestByte,
    HighestMapped,
}

const FIELDS: &[(&str, Field)] = &[
    ("DEV", Field::Dev),
    ("MAPPED_BLOCKS", Field::MappedBlocks),
    ("EXCLUSIVE_BLOCKS", Field::ExclusiveBlocks),
    ("SHARED_BLOCKS", Field::SharedBlocks),
    ("MAPPED_SECTORS", Field::MappedSectors),
    ("EXCLUSIVE_SECTORS", Field::ExclusiveSectors),
    ("SHARED_SECTORS", Field::SharedSectors),
    ("MAPPED_BYTES", Field::MappedBytes),
    ("EXCLUSIVE_BYTES", Field::ExclusiveBytes),
    ("SHARED_BYTES", Field::SharedBytes),
    ("MAPPED", Field::Mapped),
    ("EXCLUSIVE", Field::Exclusive),
    ("SHARED", Field::Shared),
    ("TRANSACTION", Field::Transaction),
    ("CREATE_TIME", Field::CreateTime),
    ("SNAP_TIME", Field::SnapTime),
    ("HIGHEST_BLOCK", Field::HighestBlock),
    ("HIGHEST_SECTOR", Field::HighestSector),
    ("HIGHEST_BYTE", Field::HighestByte),
    ("HIGHEST_MAPPED", Field::HighestMapped),
];

const DEFAULT_FIELDS: &[Field] = &[
    Field::Dev,
    Field::Mapped,
    Field::CreateTime,
    Field::SnapTime,
];

impl Field {
    fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    fn needs_exclusive(self) -> bool {
        use Field::*;
        matches!(
            self,
            ExclusiveBlocks
                | SharedBlocks
                | ExclusiveSectors
                | SharedSectors
                | ExclusiveBytes
                | SharedBytes
                | Exclusive
                | Shared
        )
    }

    fn needs_highest(self) -> bool {
        use Field::*;
        matches!(
            self,
            HighestBlock | HighestSector | HighestByte | HighestMapped
        )
    }
}

fn usage() -> String {
    let mut s = String::from(
        "Usage: thin_ls [options] {metadata device}
Options:
  {-h|--help}
  {-m|--metadata-snap}
  {--no-headers}
  {-o|--format <fields>}
  {--json}
  {-V|--version}

where <fields> is a comma separated list from:
",
    );
    for (name, _) in FIELDS {
        s += &format!("  {name}\n");
    }
    s += "
--json prints a JSON array with one object per device, keyed by field
name; counts are numbers, MAPPED, EXCLUSIVE, SHARED and HIGHEST_MAPPED the
sizes as the table shows them, HIGHEST_* null for a device with no mappings.
";
    s
}

const OPTS: &[Opt] = &[
    HELP,
    // `-m5` is accepted (and ignored); `--metadata-snap=5` is not.
    Opt::short('m', HasArg::Optional, "snap"),
    Opt::long("metadata-snap", HasArg::No, "snap"),
    Opt::long("no-headers", HasArg::No, "no-headers"),
    Opt::both('o', "format", HasArg::Required, "format"),
    Opt::long("json", HasArg::No, "json"),
    VERSION,
];

struct Options {
    fields: Vec<Field>,
    headers: bool,
    metadata_snap: bool,
    json: bool,
    input: PathBuf,
}

/// Splits on commas as the established tool does: a trailing comma adds
/// nothing, an empty list is no fields at all.
fn parse_fields(s: &str) -> Result<Vec<Field>> {
    let s = s.strip_suffix(',').unwrap_or(s);
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|tok| {
            FIELDS
                .iter()
                .find(|(n, _)| *n == tok)
                .map(|(_, f)| *f)
                .with_context(|| "unknown field".to_string())
        })
        .collect()
}

fn parse(args: &[String]) -> Result<Options, ExitCode> {
    let mut o = Options {
        fields: DEFAULT_FIELDS.to_vec(),
        headers: true,
        metadata_snap: false,
        json: false,
        input: PathBuf::new(),
    };
    let usage = usage();
    let mut g = GetOpt::new("thin_ls", OPTS, args).with_usage(&usage);
    while let Some((id, v)) = g.next_opt()? {
        match id {
            "snap" => o.metadata_snap = true,
            "no-headers" => o.headers = false,
            "json" => o.json = true,
            _ => match parse_fields(v.as_deref().unwrap_or_default()) {
                Ok(f) => o.fields = f,
                Err(e) => {
                    errln!("{e}");
                    return Err(ExitCode::from(1));
                }
            },
        }
    }
    o.input = g.need(
        g.operands.first().map(PathBuf::from),
        "No input file provided.",
    )?;
    Ok(o)
}

pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(o) => exit_status("", ls(&o).map(|()| true)),
        Err(status) => status,
    }
}

/// One device's numbers.
struct Row {
    dev: u64,
    details: DeviceDetails,
    exclusive: u64,
    highest: Option<u64>,
}

fn ls(o: &Options) -> Result<()> {
    let dev = open_reader("thin_ls", &o.input, o.metadata_snap)?;
    let md = ThinMetadata::open_with_cache(dev, false, CACHE_BLOCKS)?;
    let sb = if o.metadata_snap {
        md.metadata_snap()?.ok_or(ThinError::NoSnapshot)?
    } else {
        md.superblock().clone()
    };
    let block_size = u64::from(sb.data_block_size);
    let devices = md.devices_at(sb.data_mapping_root, sb.device_details_root)?;
    let tm = md.transaction_manager();
    let exclusive = if o.fields.iter().any(|f| f.needs_exclusive()) {
        let roots: Vec<u64> = devices.iter().map(|d| d.2).collect();
        let budget = data_budget().unwrap_or(WINDOW_BUDGET);
        exclusive_mappings(tm, &roots, tm.bm().nr_blocks(), md.nr_data_blocks(), budget)?
    } else {
        vec![0; devices.len()]
    };
    let want_highest = o.fields.iter().any(|f| f.needs_highest());
    let mut rows = Vec::with_capacity(devices.len());
    for ((dev, details, root), exclusive) in devices.into_iter().zip(exclusive) {
        let highest = if want_highest {
            highest_mapped(tm, root)?
        } else {
            None
        };
        rows.push(Row {
            dev,
            details,
            exclusive,
            highest,
        });
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if o.json {
        write_json(&mut out, &o.fields, &rows, block_size)?;
    } else {
        write_table(&mut out, o, &rows, block_size)?;
    }
    out.flush()?;
    Ok(())
}

/// A cell's value: a number, a size for people, or nothing.
enum Cell {
    Num(u64),
    Text(String),
    Null,
}

fn cell(f: Field, r: &Row, bs: u64) -> Cell {
    use Field::*;
    let mapped = r.details.mapped_blocks;
    let shared = mapped.wrapping_sub(r.exclusive);
    let sectors = |blocks: u64| blocks.wrapping_mul(bs);
    let bytes = |blocks: u64| sectors(blocks).wrapping_mul(SECTOR_BYTES);
    let highest = |g: &dyn Fn(u64) -> Cell| r.highest.map_or(Cell::Null, g);
    match f {
        Dev => Cell::Num(r.dev),
        MappedBlocks => Cell::Num(mapped),
        ExclusiveBlocks => Cell::Num(r.exclusive),
        SharedBlocks => Cell::Num(shared),
        MappedSectors => Cell::Num(sectors(mapped)),
        ExclusiveSectors => Cell::Num(sectors(r.exclusive)),
        SharedSectors => Cell::Num(sectors(shared)),
        MappedBytes => Cell::Num(bytes(mapped)),
        ExclusiveBytes => Cell::Num(bytes(r.exclusive)),
        SharedBytes => Cell::Num(bytes(shared)),
        Mapped => Cell::Text(disk_unit(bytes(mapped))),
        Exclusive => Cell::Text(disk_unit(bytes(r.exclusive))),
        Shared => Cell::Text(disk_unit(bytes(shared))),
        Transaction => Cell::Num(r.details.transaction_id),
        CreateTime => Cell::Num(u64::from(r.details.creation_time)),
        SnapTime => Cell::Num(u64::from(r.details.snapshotted_time)),
        HighestBlock => highest(&|h| Cell::Num(h)),
        HighestSector => highest(&|h| Cell::Num(sectors(h.wrapping_add(1)).wrapping_sub(1))),
        HighestByte => highest(&|h| Cell::Num(bytes(h.wrapping_add(1)).wrapping_sub(1))),
        HighestMapped => highest(&|h| Cell::Text(disk_unit(bytes(h.wrapping_add(1))))),
    }
}

/// The established tool's size format: below 1 MiB-and-a-bit in a unit
/// (dividing by 1024 rounds down), then above 8 of a unit the next unit up,
/// rounded to nearest.
fn disk_unit(mut n: u64) -> String {
    const UNITS: [&str; 7] = ["", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut i = 0;
    while n > 1024 * 1024 {
        n /= 1024;
        i += 1;
    }
    if n > 8 * 1024 {
        n = (n as f64 / 1024.0).round() as u64;
        i += 1;
    }
    format!("{n}{}", UNITS[i])
}

fn write_table(out: &mut dyn Write, o: &Options, rows: &[Row], bs: u64) -> Result<()> {
    if o.fields.is_empty() {
        return Ok(());
    }
    let mut grid: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    if o.headers {
        grid.push(o.fields.iter().map(|f| f.name().to_string()).collect());
    }
    for r in rows {
        grid.push(
            o.fields
                .iter()
                .map(|&f| match cell(f, r, bs) {
                    Cell::Num(n) => n.to_string(),
                    Cell::Text(s) => s,
                    Cell::Null => "-".to_string(),
                })
                .collect(),
        );
    }
    let mut widths = vec![0; o.fields.len()];
    for row in &grid {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    for row in &grid {
        let mut line = String::new();
        for (w, c) in widths.iter().zip(row) {
            line += &format!("{c:>w$} ");
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn write_json(out: &mut dyn Write, fields: &[Field], rows: &[Row], bs: u64) -> Result<()> {
    if rows.is_empty() {
        writeln!(out, "[]")?;
        return Ok(());
    }
    writeln!(out, "[")?;
    for (i, r) in rows.iter().enumerate() {
        let members: Vec<String> = fields
            .iter()
            .map(|&f| {
                let v = match cell(f, r, bs) {
                    Cell::Num(n) => n.to_string(),
                    // Sizes are digits and unit letters: nothing to escape.
                    Cell::Text(s) => format!("\"{s}\""),
                    Cell::Null => "null".to_string(),
                };
                format!("\"{}\": {v}", f.name())
            })
            .collect();
        let sep = if i + 1 < rows.len() { "," } else { "" };
        writeln!(out, "  {{{}}}{sep}", members.join(", "))?;
    }
    writeln!(out, "]")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_units() {
        assert!(parse_fields("").unwrap().is_empty());
        assert_eq!(parse_fields("DEV,").unwrap(), vec![Field::Dev]);
        assert!(parse_fields(",DEV").is_err());
        assert!(parse_fields("DEV,,MAPPED").is_err());
        assert_eq!(disk_unit(0), "0");
        assert_eq!(disk_unit(6094848), "5952KiB");
        assert_eq!(disk_unit(32768000), "31MiB");
        assert_eq!(disk_unit(26673152), "25MiB");
        assert_eq!(disk_unit(65536), "64KiB");
        assert_eq!(disk_unit(u64::MAX), "16EiB");
    }
}
