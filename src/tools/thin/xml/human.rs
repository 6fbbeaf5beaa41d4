//! Events -> the text `thin_dump --format human_readable` prints, as the
//! established C++ tool does.

use std::io::Write;
use thin::ir::{PoolInfo, Run, Visitor};
use thin::{DeviceDetails, Result};

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
