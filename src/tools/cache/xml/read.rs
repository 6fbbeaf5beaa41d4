//! XML text -> events, streaming: the dump of either established tool
//! (`<mappings>`, `<hints>`, and 1.x's optional `<discards>`). The mapping
//! tag has a fast path, as both tools write it.

use crate::tools::xml::fast::{empty_tag_end, number_field};
use crate::tools::xml::{self, base64, Kind, Tag, Tokenizer};
use anyhow::{anyhow, bail, Result};
use cache::ir::{CacheInfo, MappingEvent, Visitor};
use std::io::Read;

/// One event of the stream, as the reader produces it.
#[derive(Debug, Clone)]
pub enum Event {
    SuperblockBegin(Box<CacheInfo>),
    Mapping(MappingEvent),
    /// Hint bytes, at most 8 (longer hints are refused by the reader).
    Hint(u32, [u8; 8], u8),
    Discard(u64, u64),
    SuperblockEnd,
}

fn apply(out: &mut dyn Visitor, ev: &Event, line: usize) -> Result<()> {
    match ev {
        Event::Mapping(m) => out.mapping(m),
        Event::Hint(c, data, n) => out.hint(*c, &data[..*n as usize]),
        Event::Discard(b, e) => out.discard(*b, *e),
        Event::SuperblockBegin(i) => out.superblock_begin(i),
        Event::SuperblockEnd => out.superblock_end(),
    }
    .map_err(|e| anyhow!("line {line}: {e}"))
}

fn superblock(t: &Tag) -> Result<CacheInfo> {
    Ok(CacheInfo {
        uuid: t.text("uuid"),
        block_size: t.num32("block_size", t.num("block_size")?)?,
        nr_cache_blocks: t.num32("nr_cache_blocks", t.num("nr_cache_blocks")?)?,
        policy: t.text("policy"),
        hint_width: t.num32("hint_width", t.num("hint_width")?)?,
        version: None,
    })
}

fn boolean(t: &Tag, key: &str) -> Result<bool> {
    match t.required(key)? {
        b"true" => Ok(true),
        b"false" => Ok(false),
        v => bail!(
            "line {}: {key}=\"{}\" in <{}> is neither true nor false",
            t.line,
            String::from_utf8_lossy(v),
            t.name_str()
        ),
    }
}

fn mapping(t: &Tag) -> Result<MappingEvent> {
    Ok(MappingEvent {
        cblock: t.num32("cache_block", t.num("cache_block")?)?,
        oblock: t.num("origin_block")?,
        dirty: boolean(t, "dirty")?,
    })
}

/// `<mapping cache_block="C" origin_block="O" dirty="true|false"/>` as the
/// tools write it, straight from the bytes; None: leave it to the tokenizer.
fn fast_mapping(s: &[u8]) -> Option<(MappingEvent, usize)> {
    let mut at = 0;
    let cblock = u32::try_from(number_field(s, &mut at, b"<mapping cache_block=\"")?).ok()?;
    let oblock = number_field(s, &mut at, b" origin_block=\"")?;
    let rest = s.get(at..)?;
    let (dirty, n) = if rest.starts_with(b" dirty=\"true\"") {
        (true, 13)
    } else if rest.starts_with(b" dirty=\"false\"") {
        (false, 14)
    } else {
        return None;
    };
    let end = empty_tag_end(s, at + n)?;
    Some((
        MappingEvent {
            cblock,
            oblock,
            dirty,
        },
        end,
    ))
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Place {
    Start,
    Superblock,
    Mappings,
    Hints,
    Discards,
    End,
}

/// Reads a dump, giving its events (with their lines) to `sink`.
pub fn read_events<R: Read>(
    input: R,
    sink: &mut dyn FnMut(Event, usize) -> Result<()>,
) -> Result<()> {
    let mut tokens = Tokenizer::new(input);
    let mut place = Place::Start;
    let mut data = Vec::new();
    while tokens.next_markup()? {
        if place == Place::Mappings {
            if let Some((m, n)) = fast_mapping(tokens.peek()) {
                let line = tokens.line();
                tokens.consume(n);
                sink(Event::Mapping(m), line)?;
                continue;
            }
        }
        let Some(t) = tokens.next_tag()? else { break };
        let line = t.line;
        let opening = matches!(t.kind(), Kind::Open | Kind::Empty);
        place = match (t.name(), t.kind(), place) {
            (b"superblock", Kind::Open, Place::Start) => {
                sink(Event::SuperblockBegin(Box::new(superblock(&t)?)), line)?;
                Place::Superblock
            }
            (b"superblock", Kind::Close, Place::Superblock) => {
                sink(Event::SuperblockEnd, line)?;
                Place::End
            }
            (b"mappings", Kind::Open, Place::Superblock) => Place::Mappings,
            (b"hints", Kind::Open, Place::Superblock) => Place::Hints,
            (b"discards", Kind::Open, Place::Superblock) => Place::Discards,
            (b"mappings" | b"hints" | b"discards", Kind::Empty, Place::Superblock) => place,
            (b"mappings", Kind::Close, Place::Mappings)
            | (b"hints", Kind::Close, Place::Hints)
            | (b"discards", Kind::Close, Place::Discards) => Place::Superblock,
            (b"mapping", _, Place::Mappings) if opening => {
                sink(Event::Mapping(mapping(&t)?), line)?;
                place
            }
            (b"hint", _, Place::Hints) if opening => {
                let c = t.num32("cache_block", t.num("cache_block")?)?;
                let text = t.required("data")?;
                if base64::decode(text, &mut data).is_none() || data.len() > 8 {
                    bail!(
                        "line {line}: data=\"{}\" in <hint> is not base64 of at most 8 bytes",
                        String::from_utf8_lossy(text)
                    );
                }
                let mut bytes = [0u8; 8];
                bytes[..data.len()].copy_from_slice(&data);
                sink(Event::Hint(c, bytes, data.len() as u8), line)?;
                place
            }
            (b"discard", _, Place::Discards) if opening => {
                let (b, e) = (t.num("dbegin")?, t.num("dend")?);
                if b > e {
                    bail!("line {line}: <discard> with dbegin {b} after dend {e}");
                }
                sink(Event::Discard(b, e), line)?;
                place
            }
            (b"mapping", Kind::Close, Place::Mappings)
            | (b"hint", Kind::Close, Place::Hints)
            | (b"discard", Kind::Close, Place::Discards) => place,
            _ => {
                return Err(t.unexpected(match place {
                    Place::Start => "before <superblock>",
                    Place::Superblock => "inside <superblock>",
                    Place::Mappings => "inside <mappings>",
                    Place::Hints => "inside <hints>",
                    Place::Discards => "inside <discards>",
                    Place::End => "after </superblock>",
                }))
            }
        };
    }
    match place {
        Place::End => Ok(()),
        Place::Start => bail!("no <superblock> in the input"),
        _ => bail!(
            "line {}: the input ends before </superblock> (truncated?)",
            tokens.line()
        ),
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
    use crate::tools::cache::xml::XmlWriter;

    const XML: &str = "<superblock uuid=\"\" block_size=\"128\" nr_cache_blocks=\"16\" policy=\"smq\" hint_width=\"4\">\n  <mappings>\n    <mapping cache_block=\"0\" origin_block=\"5\" dirty=\"false\"/>\n    <mapping cache_block=\"3\" origin_block=\"7\" dirty=\"true\"/>\n  </mappings>\n  <hints>\n    <hint cache_block=\"0\" data=\"AQAAAA==\"/>\n    <hint cache_block=\"3\" data=\"AgAAAA==\"/>\n  </hints>\n</superblock>\n";

    fn round(xml: &str) -> Result<String> {
        let mut text = Vec::new();
        parse(xml.as_bytes(), &mut XmlWriter::new(&mut text))?;
        Ok(String::from_utf8(text)?)
    }

    #[test]
    fn reads_what_it_writes() {
        assert_eq!(round(XML).unwrap(), XML);
        // The slow path gives the same.
        let slow = XML.replace("<mapping cache_block", "<mapping  cache_block");
        assert_eq!(round(&slow).unwrap(), XML);
    }

    #[test]
    fn errors_name_the_line() {
        let bad = XML.replace("dirty=\"true\"", "dirty=\"yes\"");
        assert!(round(&bad).unwrap_err().to_string().contains("line 4"));
        let bad = XML.replace("AgAAAA==", "A*AAAA==");
        assert!(round(&bad).unwrap_err().to_string().contains("line 8"));
        assert!(round(&XML[..XML[..200].rfind('\n').unwrap() + 1])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        assert!(round("")
            .unwrap_err()
            .to_string()
            .contains("no <superblock>"));
        let bad = XML.replace(
            "<hints>",
            "<mapping cache_block=\"1\" origin_block=\"1\" dirty=\"false\"/>",
        );
        assert!(round(&bad)
            .unwrap_err()
            .to_string()
            .contains("unexpected <mapping>"));
    }
}
