//! A cache, as the tools see it: a stream of events (DESIGN.md "The tools
//! as event streams"). Readers produce it (the metadata walk and recovery
//! in [`crate::dump`], the XML parser of the tools); writers consume it
//! (the XML writer, the bulk [`crate::restore::Restorer`]).
//!
//! Order: `superblock_begin`, the mappings in increasing cache block, the
//! hints in increasing cache block, the discards, `superblock_end`.

use crate::Result;

/// The superblock's fields the XML carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    pub uuid: String,
    /// Cache block size in sectors.
    pub block_size: u32,
    pub nr_cache_blocks: u32,
    pub policy: String,
    /// Bytes per hint (0 or 4).
    pub hint_width: u32,
    /// The metadata version read (None from XML, which does not say).
    pub version: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingEvent {
    pub cblock: u32,
    pub oblock: u64,
    pub dirty: bool,
}

pub trait Visitor {
    fn superblock_begin(&mut self, info: &CacheInfo) -> Result<()>;
    fn mapping(&mut self, m: &MappingEvent) -> Result<()>;
    /// `data`: `hint_width` bytes.
    fn hint(&mut self, cblock: u32, data: &[u8]) -> Result<()>;
    /// Discard blocks `begin..end` are discarded.
    fn discard(&mut self, begin: u64, end: u64) -> Result<()>;
    fn superblock_end(&mut self) -> Result<()>;
}
