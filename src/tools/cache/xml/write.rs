//! Events -> the XML `cache_dump` prints, byte for byte as Debian's does:
//! the `<mappings>` and `<hints>` sections always, `<discards>` only when
//! some block is discarded (Debian's never prints them).

use crate::tools::xml::{base64, XmlOut};
use cache::ir::{CacheInfo, MappingEvent, Visitor};
use cache::Result;
use std::io::Write;

#[derive(PartialEq, PartialOrd)]
enum Open {
    Superblock,
    Mappings,
    Hints,
    Discards,
}

pub struct XmlWriter<W: Write> {
    out: XmlOut<W>,
    open: Open,
    data: Vec<u8>,
}

impl<W: Write> XmlWriter<W> {
    pub fn new(out: W) -> Self {
        XmlWriter {
            out: XmlOut::new(out),
            open: Open::Superblock,
            data: Vec::new(),
        }
    }

    /// Closes sections up to `to`, opening the ones passed on the way.
    fn enter(&mut self, to: Open) {
        let o = &mut self.out;
        while self.open < to {
            self.open = match self.open {
                Open::Superblock => {
                    o.markup(b"  <mappings>\n");
                    Open::Mappings
                }
                Open::Mappings => {
                    o.markup(b"  </mappings>\n  <hints>\n");
                    Open::Hints
                }
                Open::Hints | Open::Discards => {
                    o.markup(b"  </hints>\n  <discards>\n");
                    Open::Discards
                }
            };
        }
    }
}

impl<W: Write> Visitor for XmlWriter<W> {
    fn superblock_begin(&mut self, i: &CacheInfo) -> Result<()> {
        let o = &mut self.out;
        o.markup(b"<superblock");
        o.text_attr(b"uuid", &i.uuid);
        o.num_attr(b"block_size", i.block_size);
        o.num_attr(b"nr_cache_blocks", i.nr_cache_blocks);
        o.text_attr(b"policy", &i.policy);
        o.num_attr(b"hint_width", i.hint_width);
        o.markup(b">\n");
        Ok(o.spill()?)
    }

    #[inline]
    fn mapping(&mut self, m: &MappingEvent) -> Result<()> {
        if self.open != Open::Mappings {
            self.enter(Open::Mappings);
        }
        let o = &mut self.out;
        o.markup(b"    <mapping");
        o.num_attr(b"cache_block", m.cblock);
        o.num_attr(b"origin_block", m.oblock);
        o.markup(if m.dirty {
            b" dirty=\"true\"/>\n"
        } else {
            b" dirty=\"false\"/>\n"
        });
        Ok(o.spill()?)
    }

    #[inline]
    fn hint(&mut self, cblock: u32, data: &[u8]) -> Result<()> {
        if self.open != Open::Hints {
            self.enter(Open::Hints);
        }
        self.data.clear();
        base64::encode(data, &mut self.data);
        let o = &mut self.out;
        o.markup(b"    <hint");
        o.num_attr(b"cache_block", cblock);
        o.markup(b" data=\"");
        o.markup(&self.data);
        o.markup(b"\"/>\n");
        Ok(o.spill()?)
    }

    fn discard(&mut self, begin: u64, end: u64) -> Result<()> {
        self.enter(Open::Discards);
        let o = &mut self.out;
        o.markup(b"    <discard");
        o.num_attr(b"dbegin", begin);
        o.num_attr(b"dend", end);
        o.markup(b"/>\n");
        Ok(o.spill()?)
    }

    fn superblock_end(&mut self) -> Result<()> {
        self.enter(Open::Hints);
        self.out.markup(if self.open == Open::Discards {
            b"  </discards>\n</superblock>\n"
        } else {
            b"  </hints>\n</superblock>\n"
        });
        Ok(self.out.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_always_and_in_order() {
        let mut text = Vec::new();
        let mut w = XmlWriter::new(&mut text);
        let info = CacheInfo {
            uuid: String::new(),
            block_size: 128,
            nr_cache_blocks: 16,
            policy: "smq".into(),
            hint_width: 4,
            version: None,
        };
        w.superblock_begin(&info).unwrap();
        w.hint(3, &[2, 0, 0, 0]).unwrap();
        w.superblock_end().unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "<superblock uuid=\"\" block_size=\"128\" nr_cache_blocks=\"16\" policy=\"smq\" hint_width=\"4\">\n  <mappings>\n  </mappings>\n  <hints>\n    <hint cache_block=\"3\" data=\"AgAAAA==\"/>\n  </hints>\n</superblock>\n"
        );
    }
}
