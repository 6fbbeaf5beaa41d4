//! Events -> the text `thin_dump` prints, byte for byte as the established
//! C++ tool does.

use crate::tools::progress::Progress;
use std::io::Write;
use thin::ir::{PoolInfo, Run, Visitor};
use thin::{DeviceDetails, Result};

/// Flush the text buffer to the output past this many bytes.
const FLUSH_AT: usize = 256 * 1024;

pub struct XmlWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    num: itoa::Buffer,
}

impl<W: Write> XmlWriter<W> {
    pub fn new(out: W) -> Self {
        XmlWriter {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            num: itoa::Buffer::new(),
        }
    }

    /// ` name="value"`
    #[inline]
    fn attr(&mut self, name: &[u8], value: impl itoa::Integer) {
        self.buf.push(b' ');
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b"=\"");
        self.buf
            .extend_from_slice(self.num.format(value).as_bytes());
        self.buf.push(b'"');
    }

    fn spill(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Visitor for XmlWriter<W> {
    fn superblock_begin(&mut self, p: &PoolInfo) -> Result<()> {
        self.buf.extend_from_slice(b"<superblock uuid=\"");
        self.buf.extend_from_slice(p.uuid.as_bytes());
        self.buf.push(b'"');
        self.attr(b"time", p.time);
        self.attr(b"transaction", p.transaction_id);
        self.attr(b"flags", p.flags);
        self.attr(b"version", p.version);
        self.attr(b"data_block_size", p.data_block_size);
        self.attr(b"nr_data_blocks", p.nr_data_blocks);
        if let Some(s) = p.metadata_snap {
            self.attr(b"metadata_snap", s);
        }
        self.buf.extend_from_slice(b">\n");
        self.spill()
    }

    fn device_begin(&mut self, id: u64, d: &DeviceDetails) -> Result<()> {
        self.buf.extend_from_slice(b"  <device");
        self.attr(b"dev_id", id);
        self.attr(b"mapped_blocks", d.mapped_blocks);
        self.attr(b"transaction", d.transaction_id);
        self.attr(b"creation_time", d.creation_time);
        self.attr(b"snap_time", d.snapshotted_time);
        self.buf.extend_from_slice(b">\n");
        self.spill()
    }

    #[inline]
    fn run(&mut self, r: &Run) -> Result<()> {
        if r.len == 1 {
            self.buf.extend_from_slice(b"    <single_mapping");
            self.attr(b"origin_block", r.origin);
            self.attr(b"data_block", r.data);
        } else {
            self.buf.extend_from_slice(b"    <range_mapping");
            self.attr(b"origin_begin", r.origin);
            self.attr(b"data_begin", r.data);
            self.attr(b"length", r.len);
        }
        self.attr(b"time", r.time);
        self.buf.extend_from_slice(b"/>\n");
        self.spill()
    }

    fn device_end(&mut self) -> Result<()> {
        self.buf.extend_from_slice(b"  </device>\n");
        self.spill()
    }

    fn superblock_end(&mut self) -> Result<()> {
        self.buf.extend_from_slice(b"</superblock>\n");
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()?;
        Ok(())
    }
}

pub struct HumanWriter<W: Write> {
    out: W,
}

impl<W: Write> HumanWriter<W> {
    pub fn new(out: W) -> Self {
        HumanWriter { out }
    }
}

impl<W: Write> Visitor for HumanWriter<W> {
    fn superblock_begin(&mut self, p: &PoolInfo) -> Result<()> {
        writeln!(
            self.out,
            "begin superblock: \"{}\", {}, {}, {}, {}, {}, {}",
            p.uuid,
            p.time,
            p.transaction_id,
            p.flags,
            p.version,
            p.data_block_size,
            p.nr_data_blocks
        )?;
        Ok(())
    }

    fn device_begin(&mut self, id: u64, d: &DeviceDetails) -> Result<()> {
        writeln!(
            self.out,
            "device: {}\nmapped_blocks: {}\ntransaction: {}\ncreation time: {}\nsnap time: {}",
            id, d.mapped_blocks, d.transaction_id, d.creation_time, d.snapshotted_time
        )?;
        Ok(())
    }

    fn run(&mut self, r: &Run) -> Result<()> {
        if r.len == 1 {
            writeln!(self.out, "    {} -> {}, {}", r.origin, r.data, r.time)?;
        } else {
            writeln!(
                self.out,
                "    ({}..{}) -> ({}..{}), {}",
                r.origin,
                r.origin + r.len - 1,
                r.data,
                r.data + r.len - 1,
                r.time
            )?;
        }
        Ok(())
    }

    fn device_end(&mut self) -> Result<()> {
        writeln!(self.out)?;
        Ok(())
    }

    fn superblock_end(&mut self) -> Result<()> {
        writeln!(self.out, "end superblock")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Passes events on, counting mappings into a progress bar.
pub struct Counted<'a, V: Visitor> {
    pub inner: V,
    pub progress: &'a Progress,
}

impl<V: Visitor> Visitor for Counted<'_, V> {
    fn superblock_begin(&mut self, p: &PoolInfo) -> Result<()> {
        self.inner.superblock_begin(p)
    }
    fn device_begin(&mut self, id: u64, d: &DeviceDetails) -> Result<()> {
        self.inner.device_begin(id, d)
    }
    #[inline]
    fn run(&mut self, r: &Run) -> Result<()> {
        self.progress.add(r.len);
        self.inner.run(r)
    }
    fn device_end(&mut self) -> Result<()> {
        self.inner.device_end()
    }
    fn superblock_end(&mut self) -> Result<()> {
        self.inner.superblock_end()
    }
}
