//! XML text -> events, streaming: the dump of either established tool.
//!
//! `<def name="…">` (a mapping sequence the Rust 1.x dump names once, at
//! the top of the superblock) is kept in memory as runs; each
//! `<ref name="…"/>` inside a device (or a later def) replays it.

use super::fast;
use crate::tools::xml::{self, parse_u64, Kind, Tag, Tokenizer};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::io::Read;
use thin::ir::{PoolInfo, Run, Visitor};
use thin::DeviceDetails;

fn superblock(t: &Tag) -> Result<PoolInfo> {
    Ok(PoolInfo {
        uuid: t.text("uuid"),
        time: t.num32("time", t.num("time")?)?,
        transaction_id: t.num("transaction")?,
        flags: t.num32("flags", t.num_or("flags", 0)?)?,
        version: t.num32("version", t.num_or("version", 2)?)?,
        data_block_size: t.num32("data_block_size", t.num("data_block_size")?)?,
        nr_data_blocks: t.num("nr_data_blocks")?,
        metadata_snap: t.num_opt("metadata_snap")?,
    })
}

fn device(t: &Tag) -> Result<(u64, DeviceDetails)> {
    Ok((
        t.num("dev_id")?,
        DeviceDetails {
            mapped_blocks: t.num("mapped_blocks")?,
            transaction_id: t.num("transaction")?,
            creation_time: t.num32("creation_time", t.num("creation_time")?)?,
            snapshotted_time: t.num32("snap_time", t.num("snap_time")?)?,
        },
    ))
}

/// A mapping tag, read in one pass over its attributes (the hot path).
fn mapping(t: &Tag, single: bool) -> Result<Run> {
    let (origin_key, data_key): (&[u8], &[u8]) = if single {
        (b"origin_block", b"data_block")
    } else {
        (b"origin_begin", b"data_begin")
    };
    let (mut origin, mut data, mut len, mut time) = (None, None, None, None);
    for (k, v) in t.attrs() {
        let slot = if k == origin_key {
            &mut origin
        } else if k == data_key {
            &mut data
        } else if k == b"time" {
            &mut time
        } else if k == b"length" && !single {
            &mut len
        } else {
            continue;
        };
        *slot = Some(parse_u64(v).ok_or_else(|| t.not_a_number(k, v))?);
    }
    let origin = origin.ok_or_else(|| t.missing(origin_key))?;
    let data = data.ok_or_else(|| t.missing(data_key))?;
    let len = if single {
        1
    } else {
        len.ok_or_else(|| t.missing(b"length"))?
    };
    let time = t.num32("time", time.ok_or_else(|| t.missing(b"time"))?)?;
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

/// One event of the stream, as the reader produces it.
#[derive(Debug, Clone)]
pub enum Event {
    SuperblockBegin(Box<PoolInfo>),
    DeviceBegin(u64, DeviceDetails),
    Run(Run),
    DeviceEnd,
    SuperblockEnd,
}

/// Passes `ev`, read at `line`, to `out`.
pub fn apply(out: &mut dyn Visitor, ev: &Event, line: usize) -> Result<()> {
    match ev {
        Event::Run(run) => out.run(run),
        Event::DeviceBegin(id, details) => out
            .device_begin(*id, details)
            .map_err(|e| thin::ThinError::Invalid(format!("device {id}: {e}"))),
        Event::DeviceEnd => out.device_end(),
        Event::SuperblockBegin(pool) => out.superblock_begin(pool),
        Event::SuperblockEnd => out.superblock_end(),
    }
    .map_err(|e| anyhow!("line {line}: {e}"))
}

/// Receives the events of a document with the line of each.
pub type Sink<'a> = dyn FnMut(Event, usize) -> Result<()> + 'a;

/// Where in the document the reader is.
#[derive(PartialEq, Eq)]
enum Place {
    Start,
    Superblock,
    Device,
    Def,
    End,
}

struct Reader<'s, 'a> {
    sink: &'s mut Sink<'a>,
    place: Place,
    defs: HashMap<Vec<u8>, Vec<Run>>,
    /// The def being read: its name and runs.
    def: Option<(Vec<u8>, Vec<Run>)>,
}

impl Reader<'_, '_> {
    fn emit(&mut self, run: Run, line: usize) -> Result<()> {
        match &mut self.def {
            Some((_, runs)) => {
                runs.push(run);
                Ok(())
            }
            None => (self.sink)(Event::Run(run), line),
        }
    }

    fn tag(&mut self, t: &Tag) -> Result<()> {
        let line = t.line;
        let in_mappings = matches!(self.place, Place::Device | Place::Def);
        match (t.name(), t.kind()) {
            (b"single_mapping" | b"range_mapping", Kind::Empty | Kind::Open) if in_mappings => {
                let run = mapping(t, t.name() == b"single_mapping")?;
                self.emit(run, line)?;
            }
            (b"single_mapping" | b"range_mapping", Kind::Close) if in_mappings => {}
            (b"ref", Kind::Empty | Kind::Open) if in_mappings => {
                let name = t.required("name")?;
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
                            (self.sink)(Event::Run(*r), line)?;
                        }
                    }
                }
            }
            (b"ref", Kind::Close) if in_mappings => {}
            (b"device", Kind::Open | Kind::Empty) if self.place == Place::Superblock => {
                let (id, details) = device(t)?;
                (self.sink)(Event::DeviceBegin(id, details), line)?;
                if t.kind() == Kind::Empty {
                    (self.sink)(Event::DeviceEnd, line)?;
                } else {
                    self.place = Place::Device;
                }
            }
            (b"device", Kind::Close) if self.place == Place::Device => {
                (self.sink)(Event::DeviceEnd, line)?;
                self.place = Place::Superblock;
            }
            (b"def", Kind::Open) if self.place == Place::Superblock => {
                let name = t.required("name")?.to_vec();
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
                (self.sink)(Event::SuperblockBegin(Box::new(superblock(t)?)), line)?;
                self.place = Place::Superblock;
            }
            (b"superblock", Kind::Close) if self.place == Place::Superblock => {
                (self.sink)(Event::SuperblockEnd, line)?;
                self.place = Place::End;
            }
            _ => {
                let place = match self.place {
                    Place::Start => "before <superblock>",
                    Place::Superblock => "inside <superblock>",
                    Place::Device => "inside <device>",
                    Place::Def => "inside <def>",
                    Place::End => "after </superblock>",
                };
                return Err(t.unexpected(place));
            }
        }
        Ok(())
    }
}

/// Reads a dump of either established tool, giving its events to `sink`.
pub fn read_events<R: Read>(input: R, sink: &mut Sink<'_>) -> Result<()> {
    let mut tokens = Tokenizer::new(input);
    let mut r = Reader {
        sink,
        place: Place::Start,
        defs: HashMap::new(),
        def: None,
    };
    while tokens.next_markup()? {
        if matches!(r.place, Place::Device | Place::Def) {
            if let Some((run, n)) = fast::mapping(tokens.peek()) {
                let line = tokens.line();
                tokens.consume(n);
                r.emit(run, line)?;
                continue;
            }
        }
        match tokens.next_tag()? {
            Some(t) => r.tag(&t)?,
            None => break,
        }
    }
    let line = tokens.line();
    match r.place {
        Place::End => Ok(()),
        Place::Start => bail!("no <superblock> in the input"),
        _ => bail!("line {line}: the input ends before </superblock> (truncated?)"),
    }
}

/// Parses a dump and feeds it to `out`, on this thread.
pub fn parse<R: Read>(input: R, out: &mut dyn Visitor) -> Result<()> {
    read_events(input, &mut |ev, line| apply(out, &ev, line))
}

/// As [`parse`], with the parsing on another thread.
pub fn parse_in_background<R: Read + Send>(input: R, out: &mut dyn Visitor) -> Result<()> {
    xml::parse_lines_in_background(input, read_events, |ev, line| apply(out, ev, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use thin::Result as ThinResult;

    /// Records events as text.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Visitor for Log {
        fn superblock_begin(&mut self, p: &PoolInfo) -> ThinResult<()> {
            self.0.push(format!(
                "sb {} {} {} {}",
                p.time, p.transaction_id, p.data_block_size, p.nr_data_blocks
            ));
            Ok(())
        }
        fn device_begin(&mut self, id: u64, d: &DeviceDetails) -> ThinResult<()> {
            self.0.push(format!("dev {id} {}", d.mapped_blocks));
            Ok(())
        }
        fn run(&mut self, r: &Run) -> ThinResult<()> {
            self.0
                .push(format!("run {} {} {} {}", r.origin, r.data, r.len, r.time));
            Ok(())
        }
        fn device_end(&mut self) -> ThinResult<()> {
            self.0.push("end".into());
            Ok(())
        }
        fn superblock_end(&mut self) -> ThinResult<()> {
            self.0.push("sb end".into());
            Ok(())
        }
    }

    fn read(xml: &str) -> Result<Vec<String>> {
        let mut log = Log::default();
        parse(xml.as_bytes(), &mut log)?;
        Ok(log.0)
    }

    const SB: &str = "<superblock uuid=\"\" time=\"3\" transaction=\"4\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"1000\">\n";
    const DEV: &str = "<device dev_id=\"7\" mapped_blocks=\"9\" transaction=\"1\" creation_time=\"0\" snap_time=\"1\">\n";

    #[test]
    fn both_mapping_forms_and_defs() {
        let xml = format!(
            "{SB}<def name=\"a\">\n<range_mapping origin_begin=\"0\" data_begin=\"10\" length=\"3\" time=\"1\"/>\n</def>\n<def name='b'><ref name=\"a\"/><single_mapping origin_block=\"5\" data_block=\"20\" time=\"0\"/></def>\n{DEV}<ref name=\"b\"/>\n<single_mapping origin_block=\"9\" data_block=\"30\" time=\"2\"/>\n</device>\n<device dev_id=\"8\" mapped_blocks=\"0\" transaction=\"1\" creation_time=\"0\" snap_time=\"1\"/>\n</superblock>\n"
        );
        assert_eq!(
            read(&xml).unwrap(),
            vec![
                "sb 3 4 128 1000",
                "dev 7 9",
                "run 0 10 3 1",
                "run 5 20 1 0",
                "run 9 30 1 2",
                "end",
                "dev 8 0",
                "end",
                "sb end"
            ]
        );
    }

    fn error(xml: &str) -> String {
        read(xml).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_line() {
        let map = "<single_mapping origin_block=\"1\"";
        // (the input, what its error says)
        let cases = [
            (
                format!("{SB}{DEV}<single_mapping origin_block=\"x\" data_block=\"1\" time=\"0\"/>\n"),
                &["line 3", "not a number"][..],
            ),
            (format!("{SB}{DEV}{map} time=\"0\"/>\n"), &["line 3", "data_block"]),
            (
                format!("{SB}{DEV}<range_mapping origin_begin=\"1\" data_begin=\"1\" length=\"0\" time=\"0\"/>\n"),
                &["length 0"],
            ),
            (
                format!("{SB}{DEV}{map} data_block=\"2\" time=\"0\"/>\n"),
                &["line 4", "truncated"],
            ),
            (format!("{SB}{DEV}{map} data_b"), &["line 3", "ends inside a tag"]),
            (format!("{SB}{DEV}<ref name=\"nope\"/>"), &["line 3", "nope"]),
            (
                format!("{SB}{map} data_block=\"2\" time=\"0\"/>"),
                &["line 2", "unexpected <single_mapping>"],
            ),
            (
                format!("{SB}{DEV}{map} data_block=\"2\" time=\"99999999999\"/>"),
                &["too large"],
            ),
        ];
        for (xml, says) in &cases {
            let e = error(xml);
            assert!(says.iter().all(|s| e.contains(s)), "{e}");
        }
        assert!(error("").contains("no <superblock>"));
        // Lines stay right across tags taken by the fast path.
        let mut xml = format!("{SB}{DEV}");
        for i in 0..100 {
            xml +=
                &format!("<single_mapping origin_block=\"{i}\" data_block=\"{i}\" time=\"0\"/>\n");
        }
        let e =
            error(&(xml + "<single_mapping origin_block=\"1\" data_block=\"-1\" time=\"0\"/>\n"));
        assert!(e.contains("line 103"), "{e}");
        let e = error("<superblock uuid=\"\" time=\"0\" transaction=\"1\" nr_data_blocks=\"5\">");
        assert!(e.contains("data_block_size"), "{e}");
    }
}
