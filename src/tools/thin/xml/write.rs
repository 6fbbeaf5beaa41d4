//! Events -> the XML `thin_dump` prints, byte for byte as the established
//! C++ tool does.

use crate::tools::xml::XmlOut;
use std::io::Write;
use thin::ir::{PoolInfo, Run, Visitor};
use thin::{DeviceDetails, Result};

pub struct XmlWriter<W: Write> {
    out: XmlOut<W>,
}

impl<W: Write> XmlWriter<W> {
    pub fn new(out: W) -> Self {
        XmlWriter {
            out: XmlOut::new(out),
        }
    }
}

impl<W: Write> Visitor for XmlWriter<W> {
    fn superblock_begin(&mut self, p: &PoolInfo) -> Result<()> {
        let o = &mut self.out;
        o.markup(b"<superblock");
        o.text_attr(b"uuid", &p.uuid);
        o.num_attrs(&[
            (b"time", p.time.into()),
            (b"transaction", p.transaction_id),
            (b"flags", p.flags.into()),
            (b"version", p.version.into()),
            (b"data_block_size", p.data_block_size.into()),
            (b"nr_data_blocks", p.nr_data_blocks),
        ]);
        if let Some(s) = p.metadata_snap {
            o.num_attr(b"metadata_snap", s);
        }
        o.markup(b">\n");
        Ok(o.spill()?)
    }

    fn device_begin(&mut self, id: u64, d: &DeviceDetails) -> Result<()> {
        let o = &mut self.out;
        o.markup(b"  <device");
        o.num_attrs(&[
            (b"dev_id", id),
            (b"mapped_blocks", d.mapped_blocks),
            (b"transaction", d.transaction_id),
            (b"creation_time", d.creation_time.into()),
            (b"snap_time", d.snapshotted_time.into()),
        ]);
        o.markup(b">\n");
        Ok(o.spill()?)
    }

    #[inline]
    fn run(&mut self, r: &Run) -> Result<()> {
        let o = &mut self.out;
        if r.len == 1 {
            o.markup(b"    <single_mapping");
            o.num_attr(b"origin_block", r.origin);
            o.num_attr(b"data_block", r.data);
        } else {
            o.markup(b"    <range_mapping");
            o.num_attr(b"origin_begin", r.origin);
            o.num_attr(b"data_begin", r.data);
            o.num_attr(b"length", r.len);
        }
        o.num_attr(b"time", r.time);
        o.markup(b"/>\n");
        Ok(o.spill()?)
    }

    fn device_end(&mut self) -> Result<()> {
        self.out.markup(b"  </device>\n");
        Ok(self.out.spill()?)
    }

    fn superblock_end(&mut self) -> Result<()> {
        self.out.markup(b"</superblock>\n");
        Ok(self.out.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uuid_is_escaped_and_the_rest_is_as_before() {
        let mut text = Vec::new();
        let pool = PoolInfo {
            uuid: "a\"b&c".into(),
            time: 1,
            transaction_id: 2,
            flags: 0,
            version: 2,
            data_block_size: 128,
            nr_data_blocks: 1000,
            metadata_snap: None,
        };
        let mut w = XmlWriter::new(&mut text);
        w.superblock_begin(&pool).unwrap();
        w.superblock_end().unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "<superblock uuid=\"a&quot;b&amp;c\" time=\"1\" transaction=\"2\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"1000\">\n</superblock>\n"
        );
    }
}
