//! XML text -> events, streaming: the dump of either established tool.
//!
//! `<def name="…">` (a mapping sequence the Rust 1.x dump names once, at
//! the top of the superblock) is kept in memory as runs; each
//! `<ref name="…"/>` inside a device (or a later def) replays it.

use super::tags::{parse_u64, Kind, Tag, Tokenizer};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::io::Read;
use thin::ir::{PoolInfo, Run, Visitor};
use thin::DeviceDetails;

fn required<'a>(t: &Tag<'a>, key: &str) -> Result<&'a [u8]> {
    t.attr(key.as_bytes())
        .ok_or_else(|| anyhow!("line {}: <{}> has no {key} attribute", t.line, t.name_str()))
}

fn number(t: &Tag, key: &str, v: &[u8]) -> Result<u64> {
    parse_u64(v).ok_or_else(|| {
        anyhow!(
            "line {}: {key}=\"{}\" in <{}> is not a number",
            t.line,
            String::from_utf8_lossy(v),
            t.name_str()
        )
    })
}

fn num(t: &Tag, key: &str) -> Result<u64> {
    number(t, key, required(t, key)?)
}

fn num_or(t: &Tag, key: &str, default: u64) -> Result<u64> {
    match t.attr(key.as_bytes()) {
        Some(v) => number(t, key, v),
        None => Ok(default),
    }
}

fn num32(t: &Tag, key: &str, v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("line {}: {key}=\"{v}\" is too large", t.line))
}

fn superblock(t: &Tag) -> Result<PoolInfo> {
    Ok(PoolInfo {
        uuid: String::from_utf8_lossy(t.attr(b"uuid").unwrap_or_default()).into_owned(),
        time: num32(t, "time", num(t, "time")?)?,
        transaction_id: num(t, "transaction")?,
        flags: num32(t, "flags", num_or(t, "flags", 0)?)?,
        version: num32(t, "version", num_or(t, "version", 2)?)?,
        data_block_size: num32(t, "data_block_size", num(t, "data_block_size")?)?,
        nr_data_blocks: num(t, "nr_data_blocks")?,
        metadata_snap: match t.attr(b"metadata_snap") {
            Some(v) => Some(number(t, "metadata_snap", v)?),
            None => None,
        },
    })
}

fn device(t: &Tag) -> Result<(u64, DeviceDetails)> {
    Ok((
        num(t, "dev_id")?,
        DeviceDetails {
            mapped_blocks: num(t, "mapped_blocks")?,
            transaction_id: num(t, "transaction")?,
            creation_time: num32(t, "creation_time", num(t, "creation_time")?)?,
            snapshotted_time: num32(t, "snap_time", num(t, "snap_time")?)?,
        },
    ))
}

fn mapping(t: &Tag, single: bool) -> Result<Run> {
    let (origin, data, len) = if single {
        (num(t, "origin_block")?, num(t, "data_block")?, 1)
    } else {
        (
            num(t, "origin_begin")?,
            num(t, "data_begin")?,
            num(t, "length")?,
        )
    };
    let time = num32(t, "time", num(t, "time")?)?;
    if len == 0 || origin.checked_add(len).is_none() || data.checked_add(len).is_none() {
        bail!("line {}: bad mapping length {len}", t.line);
    }
    Ok(Run {
        origin,
        data,
        len,
        time,
    })
}

/// Where in the document the reader is.
#[derive(PartialEq, Eq)]
enum Place {
    Start,
    Superblock,
    Device,
    Def,
    End,
}

struct Reader<'v> {
    out: &'v mut dyn Visitor,
    place: Place,
    defs: HashMap<Vec<u8>, Vec<Run>>,
    /// The def being read: its name and runs.
    def: Option<(Vec<u8>, Vec<Run>)>,
}

impl Reader<'_> {
    fn emit(&mut self, run: Run, line: usize) -> Result<()> {
        match &mut self.def {
            Some((_, runs)) => runs.push(run),
            None => self
                .out
                .run(&run)
                .map_err(|e| anyhow!("line {line}: {e}"))?,
        }
        Ok(())
    }

    fn tag(&mut self, t: &Tag) -> Result<()> {
        let line = t.line;
        let at = |e: thin::ThinError| anyhow!("line {line}: {e}");
        let in_mappings = matches!(self.place, Place::Device | Place::Def);
        match (t.name(), t.kind()) {
            (b"single_mapping" | b"range_mapping", Kind::Empty | Kind::Open) if in_mappings => {
                let run = mapping(t, t.name() == b"single_mapping")?;
                self.emit(run, line)?;
            }
            (b"single_mapping" | b"range_mapping", Kind::Close) if in_mappings => {}
            (b"ref", Kind::Empty | Kind::Open) if in_mappings => {
                let name = required(t, "name")?;
                let runs = self.defs.get(name).ok_or_else(|| {
                    anyhow!(
                        "line {line}: <ref name=\"{}\"/> names no earlier <def>",
                        String::from_utf8_lossy(name)
                    )
                })?;
                match &mut self.def {
                    Some((_, to)) => to.extend_from_slice(runs),
                    None => {
                        for r in runs {
                            self.out.run(r).map_err(at)?;
                        }
                    }
                }
            }
            (b"ref", Kind::Close) if in_mappings => {}
            (b"device", Kind::Open) if self.place == Place::Superblock => {
                let (id, details) = device(t)?;
                self.out
                    .device_begin(id, &details)
                    .map_err(|e| anyhow!("line {line}: device {id}: {e}"))?;
                self.place = Place::Device;
            }
            (b"device", Kind::Empty) if self.place == Place::Superblock => {
                let (id, details) = device(t)?;
                self.out
                    .device_begin(id, &details)
                    .and_then(|_| self.out.device_end())
                    .map_err(|e| anyhow!("line {line}: device {id}: {e}"))?;
            }
            (b"device", Kind::Close) if self.place == Place::Device => {
                self.out.device_end().map_err(at)?;
                self.place = Place::Superblock;
            }
            (b"def", Kind::Open) if self.place == Place::Superblock => {
                let name = required(t, "name")?.to_vec();
                if self.defs.contains_key(&name) {
                    bail!(
                        "line {line}: a second <def name=\"{}\">",
                        String::from_utf8_lossy(&name)
                    );
                }
                self.def = Some((name, Vec::new()));
                self.place = Place::Def;
            }
            (b"def", Kind::Close) if self.place == Place::Def => {
                if let Some((name, runs)) = self.def.take() {
                    self.defs.insert(name, runs);
                }
                self.place = Place::Superblock;
            }
            (b"superblock", Kind::Open) if self.place == Place::Start => {
                self.out.superblock_begin(&superblock(t)?).map_err(at)?;
                self.place = Place::Superblock;
            }
            (b"superblock", Kind::Close) if self.place == Place::Superblock => {
                self.out.superblock_end().map_err(at)?;
                self.place = Place::End;
            }
            (name, kind) => {
                let name = String::from_utf8_lossy(name);
                let tag = match kind {
                    Kind::Close => format!("</{name}>"),
                    _ => format!("<{name}>"),
                };
                let place = match self.place {
                    Place::Start => "before <superblock>",
                    Place::Superblock => "inside <superblock>",
                    Place::Device => "inside <device>",
                    Place::Def => "inside <def>",
                    Place::End => "after </superblock>",
                };
                bail!("line {line}: unexpected {tag} {place}");
            }
        }
        Ok(())
    }
}

/// Parses a dump of either established tool and feeds it to `out`.
pub fn parse<R: Read>(input: R, out: &mut dyn Visitor) -> Result<()> {
    let mut tokens = Tokenizer::new(input);
    let mut r = Reader {
        out,
        place: Place::Start,
        defs: HashMap::new(),
        def: None,
    };
    while let Some(t) = tokens.next_tag()? {
        r.tag(&t)?;
    }
    let line = tokens.line();
    match r.place {
        Place::End => Ok(()),
        Place::Start => bail!("no <superblock> in the input"),
        _ => bail!("line {line}: the input ends before </superblock> (truncated?)"),
    }
}
