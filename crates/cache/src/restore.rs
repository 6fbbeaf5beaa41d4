//! Building cache metadata in bulk from an event stream ([`crate::ir`]),
//! without the transaction manager: the engine's build frame
//! (`pdata::build::MetadataBuild`: block 0 zeroed first, the superblock
//! last between two flushes, the metadata space map of what was written),
//! the mapping and hint arrays built as their events arrive
//! (`pdata::array::ArrayBuilder`), then the dirty bitset (version 2) and
//! an empty discard bitset (`pdata::bitset::BitsetBuilder`).
//!
//! Input the kernel would accept but that is odd is taken with a warning:
//! a hint width of 0 (no hint array is written), discards (the XML does
//! not give their block size; the kernel starts without).

use crate::check::block_size_problem;
use crate::format::mapping::{valid, MAX_OBLOCK};
use crate::format::superblock::{
    Policy, Stats, Superblock, FLAG_CLEAN_SHUTDOWN, HINT_SIZE, MAX_VERSION, MIN_VERSION,
    SUPERBLOCK_VALIDATOR, UUID_SIZE,
};
use crate::ir::{CacheInfo, MappingEvent, Visitor};
use crate::oblocks::Oblocks;
use crate::{CacheError, Result};
use pdata::array::ArrayBuilder;
use pdata::bitset::{BitsetBuilder, BITS_PER_WORD};
use pdata::build::{BuildError, MetadataBuild};
use pdata::io::BlockDevice;
use std::sync::Arc;

/// The version written when neither the options nor the input say.
pub const DEFAULT_VERSION: u32 = 2;

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The metadata version to write (else the input's, else 2).
    pub version: Option<u32>,
    /// Leave CLEAN_SHUTDOWN clear (the kernel then takes every mapping
    /// as dirty and ignores the hints).
    pub omit_clean_shutdown: bool,
}

fn invalid(e: impl std::fmt::Display) -> CacheError {
    CacheError::Invalid(e.to_string())
}

fn build_error(e: BuildError) -> CacheError {
    match e {
        BuildError::Pdata(e) => CacheError::Pdata(e),
        e => invalid(e),
    }
}

/// Where the stream is.
enum Stage {
    Mappings,
    Hints,
    Rest,
}

struct Building {
    build: MetadataBuild,
    info: CacheInfo,
    version: u32,
    stage: Stage,
    mappings: Option<ArrayBuilder>,
    mapping_root: u64,
    hints: Option<ArrayBuilder>,
    hint_root: u64,
    /// One bit per cache block (version 2's bitset).
    dirty: Vec<u64>,
    /// Bits per cache block: mapped (for hints on unmapped blocks).
    mapped: Vec<u64>,
    oblocks: Oblocks,
}

pub struct Restorer {
    dev: Arc<dyn BlockDevice>,
    opts: RestoreOptions,
    b: Option<Building>,
    pub warnings: Vec<String>,
    discards_warned: bool,
}

impl Restorer {
    pub fn new(dev: Arc<dyn BlockDevice>, opts: RestoreOptions) -> Self {
        Restorer {
            dev,
            opts,
            b: None,
            warnings: Vec::new(),
            discards_warned: false,
        }
    }

    fn building(&mut self) -> Result<&mut Building> {
        self.b
            .as_mut()
            .ok_or_else(|| invalid("no superblock before the mappings"))
    }
}

impl Building {
    /// Pads the mapping array with unmapped entries up to `to`.
    fn pad_mappings(&mut self, to: u64) -> Result<()> {
        let a = self
            .mappings
            .as_mut()
            .ok_or_else(|| invalid("mappings after the hints"))?;
        while a.len() < to {
            a.push_u64(self.build.writer(), 0)?;
        }
        Ok(())
    }

    fn finish_mappings(&mut self) -> Result<()> {
        if let Some(a) = self.mappings.take() {
            self.mappings = Some(a);
            self.pad_mappings(u64::from(self.info.nr_cache_blocks))?;
            let a = self
                .mappings
                .take()
                .ok_or_else(|| invalid("no mapping array"))?;
            self.mapping_root = a.finish(self.build.writer())?;
            if self.info.hint_width > 0 {
                self.hints = Some(ArrayBuilder::new(self.info.hint_width as usize)?);
            }
            self.stage = Stage::Hints;
        }
        Ok(())
    }

    fn pad_hints(&mut self, to: u64) -> Result<()> {
        if let Some(a) = self.hints.as_mut() {
            let zero = [0u8; HINT_SIZE as usize];
            while a.len() < to {
                a.push(self.build.writer(), &zero)?;
            }
        }
        Ok(())
    }

    fn finish_hints(&mut self) -> Result<()> {
        self.finish_mappings()?;
        if let Stage::Hints = self.stage {
            self.pad_hints(u64::from(self.info.nr_cache_blocks))?;
            if let Some(a) = self.hints.take() {
                self.hint_root = a.finish(self.build.writer())?;
            }
            self.stage = Stage::Rest;
        }
        Ok(())
    }

    fn cblock_ok(&self, c: u32, what: &str) -> Result<()> {
        if c >= self.info.nr_cache_blocks {
            return Err(invalid(format!(
                "{what} of cache block {c}: the cache has {} blocks",
                self.info.nr_cache_blocks
            )));
        }
        Ok(())
    }
}

fn bit(v: &[u64], c: u64) -> bool {
    v[(c / BITS_PER_WORD) as usize] >> (c % BITS_PER_WORD) & 1 == 1
}

fn set_bit(v: &mut [u64], c: u64) {
    v[(c / BITS_PER_WORD) as usize] |= 1 << (c % BITS_PER_WORD);
}

impl Visitor for Restorer {
    fn superblock_begin(&mut self, info: &CacheInfo) -> Result<()> {
        if self.b.is_some() {
            return Err(invalid("a second superblock"));
        }
        let version = self
            .opts
            .version
            .or(info.version)
            .unwrap_or(DEFAULT_VERSION);
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(invalid(format!(
                "metadata version {version}: only 1 and 2 exist"
            )));
        }
        if let Some(p) = block_size_problem(info.block_size) {
            return Err(invalid(p));
        }
        let mut info = info.clone();
        match info.hint_width {
            0 => self.warnings.push(
                "hint width 0: no hints are kept (the kernel's policies use 4-byte hints)".into(),
            ),
            HINT_SIZE => {}
            w => return Err(invalid(format!("hint width {w}: only 4-byte hints exist"))),
        }
        Policy {
            name: info.policy.clone(),
            version: [0; 3],
            hint_size: info.hint_width,
        }
        .check()
        .map_err(invalid)?;
        info.version = Some(version);
        let words = u64::from(info.nr_cache_blocks).div_ceil(BITS_PER_WORD) as usize;
        let build = MetadataBuild::start(self.dev.clone())?;
        self.b = Some(Building {
            build,
            info,
            version,
            stage: Stage::Mappings,
            mappings: Some(ArrayBuilder::new(8)?),
            mapping_root: 0,
            hints: None,
            hint_root: 0,
            dirty: vec![0; if version >= 2 { words } else { 0 }],
            mapped: vec![0; words],
            oblocks: Oblocks::new(words as u64 * BITS_PER_WORD),
        });
        Ok(())
    }

    #[inline]
    fn mapping(&mut self, m: &MappingEvent) -> Result<()> {
        let b = self.building()?;
        b.cblock_ok(m.cblock, "mapping")?;
        if !matches!(b.stage, Stage::Mappings) {
            return Err(invalid(format!(
                "mapping of cache block {} after the hints",
                m.cblock
            )));
        }
        let c = u64::from(m.cblock);
        let len = b.mappings.as_ref().map_or(0, |a| a.len());
        if c < len {
            return Err(invalid(format!(
                "mapping of cache block {c} out of order (or twice): mappings must come in increasing cache block"
            )));
        }
        if m.oblock > MAX_OBLOCK {
            return Err(invalid(format!(
                "origin block {} does not fit in 48 bits",
                m.oblock
            )));
        }
        b.pad_mappings(c)?;
        let v2 = b.version >= 2;
        let value = valid(m.oblock, m.dirty && !v2);
        if let Some(a) = b.mappings.as_mut() {
            a.push_u64(b.build.writer(), value)?;
        }
        set_bit(&mut b.mapped, c);
        b.oblocks.push(m.oblock);
        if v2 && m.dirty {
            set_bit(&mut b.dirty, c);
        }
        Ok(())
    }

    fn hint(&mut self, cblock: u32, data: &[u8]) -> Result<()> {
        let b = self.building()?;
        b.cblock_ok(cblock, "hint")?;
        b.finish_mappings()?;
        if !matches!(b.stage, Stage::Hints) {
            return Err(invalid(format!(
                "hint of cache block {cblock} after the discards"
            )));
        }
        let width = b.info.hint_width as usize;
        if width == 0 {
            return Ok(());
        }
        if data.len() != width {
            return Err(invalid(format!(
                "hint of cache block {cblock}: {} bytes where the hint width is {width}",
                data.len()
            )));
        }
        let c = u64::from(cblock);
        if !bit(&b.mapped, c) {
            return Err(invalid(format!(
                "hint of cache block {cblock}, which is not mapped"
            )));
        }
        let len = b.hints.as_ref().map_or(0, |a| a.len());
        if c < len {
            return Err(invalid(format!(
                "hint of cache block {c} out of order (or twice): hints must come in increasing cache block"
            )));
        }
        b.pad_hints(c)?;
        if let Some(a) = b.hints.as_mut() {
            a.push(b.build.writer(), data)?;
        }
        Ok(())
    }

    fn discard(&mut self, _: u64, _: u64) -> Result<()> {
        self.building()?.finish_hints()?;
        if !self.discards_warned {
            self.discards_warned = true;
            self.warnings.push(
                "discards are not restored (the XML does not give their block size; the kernel sets them anew)".into(),
            );
        }
        Ok(())
    }

    fn superblock_end(&mut self) -> Result<()> {
        let mut b = self.b.take().ok_or_else(|| invalid("no superblock"))?;
        b.finish_hints()?;
        if let Some(o) = b.oblocks.take().duplicates().first() {
            return Err(invalid(format!(
                "origin block {o} is mapped by more than one cache block"
            )));
        }
        let n = u64::from(b.info.nr_cache_blocks);
        let dirty_root = if b.version >= 2 {
            let mut bits = BitsetBuilder::new();
            for c in 0..n {
                bits.push(b.build.writer(), bit(&b.dirty, c))?;
            }
            bits.finish(b.build.writer())?
        } else {
            0
        };
        let discard_root = BitsetBuilder::new().finish(b.build.writer())?;
        let info = &b.info;
        let policy = Policy {
            name: info.policy.clone(),
            version: [2, 0, 0],
            hint_size: info.hint_width,
        };
        let mut sb = Superblock {
            flags: if self.opts.omit_clean_shutdown {
                0
            } else {
                FLAG_CLEAN_SHUTDOWN
            },
            uuid: [0; UUID_SIZE],
            version: b.version,
            policy_name: policy.name_bytes().map_err(invalid)?,
            policy_hint_size: info.hint_width,
            metadata_sm_root: Default::default(),
            mapping_root: b.mapping_root,
            hint_root: b.hint_root,
            discard_root,
            discard_block_size: 0,
            discard_nr_blocks: 0,
            data_block_size: info.block_size,
            cache_blocks: info.nr_cache_blocks,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
            stats: Stats::default(),
            policy_version: policy.version,
            dirty_root,
        };
        b.build
            .finish(&SUPERBLOCK_VALIDATOR, |root| {
                sb.metadata_sm_root = root;
                sb.pack()
            })
            .map_err(build_error)
    }
}
