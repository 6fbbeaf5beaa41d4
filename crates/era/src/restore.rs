//! Building era metadata in bulk from the event stream (era_restore,
//! era_repair), on the engine's frame (`pdata::build`): each writeset's
//! bitset as its bits arrive, then the writeset tree, then the era array,
//! the superblock last. Like Debian's era_restore, the result has no
//! current writeset (the target's resume starts one).

use crate::error::{EraError, Result};
use crate::format::superblock::*;
use crate::format::writeset::{WritesetDisk, WRITESET_DISK_SIZE};
use crate::ir::{Event, Sink};
use crate::metadata::ERA_VALUE_SIZE;
use pdata::array::ArrayBuilder;
use pdata::bitset::BitsetBuilder;
use pdata::btree::TreeBuilder;
use pdata::build::{BuildError, MetadataBuild};
use pdata::io::BlockDevice;
use std::sync::Arc;

pub struct Restorer {
    build: Option<MetadataBuild>,
    sb: Option<(u32, u32, u32)>,
    writesets: Vec<(u32, WritesetDisk)>,
    ws: Option<(u32, u32, BitsetBuilder)>,
    eras: Option<ArrayBuilder>,
    done: bool,
}

fn built(e: BuildError) -> EraError {
    match e {
        BuildError::Pdata(e) => EraError::Pdata(e),
        other => EraError::Invalid(other.to_string()),
    }
}

fn invalid(s: impl Into<String>) -> EraError {
    EraError::Invalid(s.into())
}

impl Restorer {
    pub fn new(dev: Arc<dyn BlockDevice>) -> Result<Self> {
        Ok(Restorer {
            build: Some(MetadataBuild::start(dev)?),
            sb: None,
            writesets: Vec::new(),
            ws: None,
            eras: None,
            done: false,
        })
    }

    fn nr_blocks(&self) -> Result<u32> {
        self.sb
            .map(|s| s.1)
            .ok_or_else(|| invalid("the superblock must come first"))
    }

    fn build(&mut self) -> &mut MetadataBuild {
        self.build.as_mut().expect("taken only at the end")
    }

    /// Pads the era array with 0 up to `to` entries.
    fn pad_eras(&mut self, to: u64) -> Result<()> {
        let mut a = self
            .eras
            .take()
            .ok_or_else(|| invalid("an era outside <era_array>"))?;
        if a.len() > to {
            return Err(invalid(format!("era array entry {to} out of order")));
        }
        while a.len() < to {
            a.push(self.build().writer(), &[0; ERA_VALUE_SIZE])?;
        }
        self.eras = Some(a);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let (block_size, nr_blocks, current_era) =
            self.sb.ok_or_else(|| invalid("no superblock"))?;
        if self.ws.is_some() {
            return Err(invalid("the input ends inside a writeset"));
        }
        if self.eras.is_none() {
            self.eras = Some(ArrayBuilder::new(ERA_VALUE_SIZE)?);
        }
        self.pad_eras(u64::from(nr_blocks))?;
        let eras = self.eras.take().expect("set above");
        let mut build = self.build.take().expect("finished once");
        let era_array_root = eras.finish(build.writer())?;
        let mut tree = TreeBuilder::new(WRITESET_DISK_SIZE);
        for (era, ws) in &self.writesets {
            tree.push(build.writer(), u64::from(*era), &ws.to_bytes())?;
        }
        let writeset_tree_root = tree.finish(build.writer())?;
        build
            .finish(&SUPERBLOCK_VALIDATOR, |metadata_sm_root| {
                Superblock {
                    flags: 0,
                    uuid: [0; UUID_SIZE],
                    version: ERA_VERSION,
                    metadata_sm_root,
                    data_block_size: block_size,
                    nr_blocks,
                    current_era,
                    current_writeset: WritesetDisk::default(),
                    writeset_tree_root,
                    era_array_root,
                    metadata_snap: 0,
                }
                .pack()
            })
            .map_err(built)?;
        self.done = true;
        Ok(())
    }
}

impl Sink for Restorer {
    fn event(&mut self, ev: &Event) -> Result<()> {
        if self.done {
            return Err(invalid("more input after the end"));
        }
        match *ev {
            Event::Superblock {
                block_size,
                nr_blocks,
                current_era,
            } => {
                if self.sb.is_some() {
                    return Err(invalid("a second superblock"));
                }
                if block_size < MIN_DATA_BLOCK_SIZE || nr_blocks > MAX_NR_BLOCKS {
                    return Err(invalid(format!(
                        "block_size {block_size} (at least {MIN_DATA_BLOCK_SIZE}) or nr_blocks {nr_blocks} (at most {MAX_NR_BLOCKS}) out of range"
                    )));
                }
                self.sb = Some((block_size, nr_blocks, current_era));
            }
            Event::WritesetBegin { era, nr_bits } => {
                let current = self
                    .sb
                    .ok_or_else(|| invalid("the superblock must come first"))?
                    .2;
                if self.ws.is_some() || self.eras.is_some() {
                    return Err(invalid("a writeset inside another element"));
                }
                if era > current {
                    return Err(invalid(format!(
                        "writeset era {era} is newer than the current era {current}"
                    )));
                }
                if self.writesets.last().is_some_and(|&(e, _)| e >= era) {
                    return Err(invalid(format!("writeset era {era} out of order")));
                }
                if nr_bits > MAX_NR_BLOCKS {
                    return Err(invalid(format!("writeset of {nr_bits} bits")));
                }
                self.ws = Some((era, nr_bits, BitsetBuilder::new()));
            }
            Event::Bits { begin, end, value } => {
                let (era, nr_bits, mut b) = self
                    .ws
                    .take()
                    .ok_or_else(|| invalid("a bit outside a writeset"))?;
                if begin < b.len() || end > u64::from(nr_bits) || begin > end {
                    return Err(invalid(format!(
                        "writeset {era}: bits {begin}..{end} out of order or past its {nr_bits} bits"
                    )));
                }
                let w = self.build().writer();
                while b.len() < begin {
                    b.push(w, false)?;
                }
                while b.len() < end {
                    b.push(w, value)?;
                }
                self.ws = Some((era, nr_bits, b));
            }
            Event::WritesetEnd => {
                let (era, nr_bits, mut b) = self
                    .ws
                    .take()
                    .ok_or_else(|| invalid("</writeset> without <writeset>"))?;
                let w = self.build().writer();
                while b.len() < u64::from(nr_bits) {
                    b.push(w, false)?;
                }
                let root = b.finish(w)?;
                self.writesets.push((era, WritesetDisk { nr_bits, root }));
            }
            Event::EraArrayBegin => {
                self.nr_blocks()?;
                if self.ws.is_some() || self.eras.is_some() {
                    return Err(invalid("a second era array"));
                }
                self.eras = Some(ArrayBuilder::new(ERA_VALUE_SIZE)?);
            }
            Event::Eras { begin, end, era } => {
                let (nr_blocks, current) = (self.nr_blocks()?, self.sb.map_or(0, |s| s.2));
                if end > u64::from(nr_blocks) || begin > end {
                    return Err(invalid(format!(
                        "era array entries {begin}..{end} past nr_blocks {nr_blocks}"
                    )));
                }
                if era > current {
                    return Err(invalid(format!(
                        "block {begin}: era {era} is newer than the current era {current}"
                    )));
                }
                self.pad_eras(begin)?;
                let mut a = self.eras.take().expect("padded");
                let w = self.build().writer();
                while a.len() < end {
                    a.push(w, &era.to_le_bytes())?;
                }
                self.eras = Some(a);
            }
            Event::EraArrayEnd => {
                if self.eras.is_none() {
                    return Err(invalid("</era_array> without <era_array>"));
                }
            }
            Event::End => self.finish()?,
        }
        Ok(())
    }
}
