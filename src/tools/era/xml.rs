//! Era's XML schema over the shared XML layer: the writer (one `<bit>` per
//! block, as both established tools write, or the compact `<marked
//! block_begin= len=/>` runs the upstream Rust tools read) and the reader
//! of both forms, producing `era::ir` events.

use crate::tools::xml::{fast, parse_in_background, Batcher, Kind, Tag, Tokenizer, XmlOut};
use anyhow::{anyhow, bail, Result};
use era::ir::{Event, Sink};
use std::io::{Read, Write};

/// The XML writer: a sink of events.
pub struct XmlWriter<W: Write> {
    out: XmlOut<W>,
    compact: bool,
}

impl<W: Write> XmlWriter<W> {
    pub fn new(out: W, compact: bool) -> Self {
        XmlWriter {
            out: XmlOut::new(out),
            compact,
        }
    }

    fn io(r: std::io::Result<()>) -> era::Result<()> {
        r.map_err(|e| era::EraError::Invalid(format!("writing the output: {e}")))
    }
}

impl<W: Write> Sink for XmlWriter<W> {
    fn event(&mut self, ev: &Event) -> era::Result<()> {
        let o = &mut self.out;
        match *ev {
            Event::Superblock {
                block_size,
                nr_blocks,
                current_era,
            } => {
                o.markup(b"<superblock uuid=\"\"");
                o.num_attr(b"block_size", block_size);
                o.num_attr(b"nr_blocks", nr_blocks);
                o.num_attr(b"current_era", current_era);
                o.markup(b">\n");
            }
            Event::WritesetBegin { era, nr_bits } => {
                o.markup(b"  <writeset");
                o.num_attr(b"era", era);
                o.num_attr(b"nr_bits", nr_bits);
                o.markup(b">\n");
            }
            Event::Bits { begin, end, value } if self.compact => {
                if value && end > begin {
                    o.markup(b"    <marked");
                    o.num_attr(b"block_begin", begin);
                    o.num_attr(b"len", end - begin);
                    o.markup(b"/>\n");
                }
            }
            Event::Bits { begin, end, value } => {
                let tail: &[u8] = if value {
                    b"\" value=\"true\"/>\n"
                } else {
                    b"\" value=\"false\"/>\n"
                };
                let mut num = itoa::Buffer::new();
                for b in begin..end {
                    o.markup(b"    <bit block=\"");
                    o.markup(num.format(b).as_bytes());
                    o.markup(tail);
                    Self::io(o.spill())?;
                }
            }
            Event::WritesetEnd => o.markup(b"  </writeset>\n"),
            Event::EraArrayBegin => o.markup(b"  <era_array>\n"),
            Event::Eras { begin, end, era } => {
                let mut num = itoa::Buffer::new();
                let mut e = itoa::Buffer::new();
                let era = e.format(era).as_bytes();
                for b in begin..end {
                    o.markup(b"    <era block=\"");
                    o.markup(num.format(b).as_bytes());
                    o.markup(b"\" era=\"");
                    o.markup(era);
                    o.markup(b"\"/>\n");
                    Self::io(o.spill())?;
                }
            }
            Event::EraArrayEnd => o.markup(b"  </era_array>\n"),
            Event::End => {
                o.markup(b"</superblock>\n");
                return Self::io(o.finish());
            }
        }
        Self::io(o.spill())
    }
}

/// A `<bit .../>` or `<era .../>` line exactly as the writers lay it out,
/// straight from the bytes; None leaves it to the tokenizer.
fn fast_line(s: &[u8]) -> Option<(Event, usize)> {
    let mut at = 0;
    if let Some(b) = fast::number_field(s, &mut at, b"<bit block=\"") {
        let rest = &s[at..];
        for (tail, value) in [
            (&b" value=\"true\"/>"[..], true),
            (b" value=\"false\"/>", false),
        ] {
            if rest.starts_with(tail) {
                return Some((
                    Event::Bits {
                        begin: b,
                        end: b + 1,
                        value,
                    },
                    at + tail.len(),
                ));
            }
        }
        return None;
    }
    let b = fast::number_field(s, &mut at, b"<era block=\"")?;
    let era = u32::try_from(fast::number_field(s, &mut at, b" era=\"")?).ok()?;
    let end = fast::empty_tag_end(s, at)?;
    Some((
        Event::Eras {
            begin: b,
            end: b + 1,
            era,
        },
        end,
    ))
}

fn num32(t: &Tag, key: &str) -> Result<u32> {
    t.num32(key, t.num(key)?)
}

/// Reads the XML of either form, passing each event to `out`.
fn read_events<R: Read>(input: R, out: &mut dyn FnMut(Event) -> Result<()>) -> Result<()> {
    let mut tokens = Tokenizer::new(input);
    let mut in_writeset = false;
    let mut seen_end = false;
    loop {
        if !tokens.next_markup()? {
            break;
        }
        if let Some((ev, n)) = fast_line(tokens.peek()) {
            // False bits are the default: only set ones reach the builder.
            if !matches!(ev, Event::Bits { value: false, .. }) {
                out(ev)?;
            }
            tokens.consume(n);
            continue;
        }
        let Some(t) = tokens.next_tag()? else { break };
        if seen_end {
            bail!("line {}: a tag after </superblock>", t.line);
        }
        let ev = match (t.name(), t.kind()) {
            (b"superblock", Kind::Open) => Event::Superblock {
                block_size: num32(&t, "block_size")?,
                nr_blocks: num32(&t, "nr_blocks")?,
                current_era: num32(&t, "current_era")?,
            },
            (b"superblock", Kind::Close) => {
                seen_end = true;
                Event::End
            }
            (b"writeset", Kind::Open) => {
                in_writeset = true;
                Event::WritesetBegin {
                    era: num32(&t, "era")?,
                    nr_bits: num32(&t, "nr_bits")?,
                }
            }
            (b"writeset", Kind::Close) => {
                in_writeset = false;
                Event::WritesetEnd
            }
            (b"bit", Kind::Empty) if in_writeset => {
                let b = t.num("block")?;
                match t.required("value")? {
                    b"true" => Event::Bits {
                        begin: b,
                        end: b + 1,
                        value: true,
                    },
                    b"false" => continue,
                    v => bail!(
                        "line {}: value=\"{}\" is not true or false",
                        t.line,
                        String::from_utf8_lossy(v)
                    ),
                }
            }
            (b"marked", Kind::Empty) if in_writeset => {
                let begin = t.num("block_begin")?;
                let len = t.num("len")?;
                let end = begin
                    .checked_add(len)
                    .ok_or_else(|| anyhow!("line {}: marked run too long", t.line))?;
                Event::Bits {
                    begin,
                    end,
                    value: true,
                }
            }
            (b"era_array", Kind::Open) => Event::EraArrayBegin,
            (b"era_array", Kind::Close) => Event::EraArrayEnd,
            (b"era", Kind::Empty) => {
                let b = t.num("block")?;
                Event::Eras {
                    begin: b,
                    end: b + 1,
                    era: num32(&t, "era")?,
                }
            }
            (b"writeset" | b"era_array", Kind::Empty) => {
                bail!(
                    "line {}: an empty <{}/> is not expected",
                    t.line,
                    t.name_str()
                )
            }
            _ => bail!("line {}: unexpected <{}>", t.line, t.name_str()),
        };
        out(ev)?;
    }
    if !seen_end {
        bail!("the input ends before </superblock>");
    }
    Ok(())
}

/// Parses `input` into `sink`.
pub fn parse<R: Read>(input: R, sink: &mut dyn Sink) -> Result<()> {
    read_events(input, &mut |ev| {
        sink.event(&ev).map_err(anyhow::Error::from)
    })
}

/// Parses `input` on another thread into `sink`.
pub fn read_into<R: Read + Send>(input: R, sink: &mut dyn Sink) -> Result<()> {
    parse_in_background(
        input,
        |input, events: &mut Batcher<Event>| read_events(input, &mut |ev| events.push(ev)),
        |ev| sink.event(ev).map_err(anyhow::Error::from),
    )
}
