//! Entry points for the fuzz targets (fuzz/) and for the test that replays
//! their corpus (tests/fuzz_corpus.rs). Each takes arbitrary bytes and must
//! return, never panic, whatever they hold (the asserts below state
//! invariants the fuzzer should try to break).
//!
//! Metadata images reach the fuzzer in a sparse form, because a whole image
//! is mostly zeroes and because random bytes never pass a checksum: an input
//! is a list of records `index: u8, kind: u8, block: [u8; 4096]`, and each
//! record's block is sealed with the checksum of its kind before use, so that
//! mutations reach the code behind the checksums.

use crate::tools::cache::xml as cache_xml;
use crate::tools::era::xml as era_xml_mod;
use crate::tools::thin::xml as thin_xml;
use cache::ir::{CacheInfo, MappingEvent};
use pdata::checksum::{
    seal, SALT_ARRAY, SALT_BITMAP, SALT_BTREE_NODE, SALT_CACHE_SUPERBLOCK, SALT_ERA_SUPERBLOCK,
    SALT_INDEX, SALT_THIN_SUPERBLOCK,
};
use pdata::io::{BlockDevice, MemoryDevice};
use pdata::BLOCK_SIZE;
use std::sync::Arc;
use thin::ir::{PoolInfo, Run, Visitor};
use thin::DeviceDetails;

/// Blocks in a fuzzed metadata device.
pub const FUZZ_NR_BLOCKS: u64 = 256;
const RECORD: usize = 2 + BLOCK_SIZE;

/// How a record's block is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Raw = 0,
    Superblock = 1,
    Node = 2,
    Bitmap = 3,
    Index = 4,
    CacheSuperblock = 5,
    Array = 6,
}

const KINDS: [Kind; 6] = [
    Kind::Superblock,
    Kind::Node,
    Kind::Bitmap,
    Kind::Index,
    Kind::CacheSuperblock,
    Kind::Array,
];

impl Kind {
    fn salt(self) -> Option<u32> {
        match self {
            Kind::Raw => None,
            Kind::Superblock => Some(SALT_THIN_SUPERBLOCK),
            Kind::Node => Some(SALT_BTREE_NODE),
            Kind::Bitmap => Some(SALT_BITMAP),
            Kind::Index => Some(SALT_INDEX),
            Kind::CacheSuperblock => Some(SALT_CACHE_SUPERBLOCK),
            Kind::Array => Some(SALT_ARRAY),
        }
    }

    fn from_byte(b: u8) -> Kind {
        match b % 7 {
            0 => Kind::Raw,
            k => KINDS[k as usize - 1],
        }
    }

    /// The kind whose salt seals `block`, if any.
    pub fn of(block: &[u8]) -> Kind {
        for k in KINDS {
            if k.salt().is_some_and(|s| pdata::checksum::verify(block, s)) {
                return k;
            }
        }
        Kind::Raw
    }
}

/// A device from sparse records (later records win).
pub fn device_from_records(data: &[u8]) -> MemoryDevice {
    device_sealed_with(data, |kind| Kind::from_byte(kind).salt())
}

/// A device from sparse records, each block sealed with `salt(kind byte)`.
fn device_sealed_with(data: &[u8], salt: impl Fn(u8) -> Option<u32>) -> MemoryDevice {
    let mut image = vec![0u8; FUZZ_NR_BLOCKS as usize * BLOCK_SIZE];
    for rec in data.chunks_exact(RECORD) {
        let at = rec[0] as usize % FUZZ_NR_BLOCKS as usize * BLOCK_SIZE;
        let block = &mut image[at..at + BLOCK_SIZE];
        block.copy_from_slice(&rec[2..]);
        if let Some(salt) = salt(rec[1]) {
            seal(block, salt);
        }
    }
    MemoryDevice::from_image(image)
}

/// Era's record kinds: 0 raw, then the era superblock, B-tree node, space
/// map bitmap and index, array block.
const ERA_SALTS: [Option<u32>; 6] = [
    None,
    Some(SALT_ERA_SUPERBLOCK),
    Some(SALT_BTREE_NODE),
    Some(SALT_BITMAP),
    Some(SALT_INDEX),
    Some(SALT_ARRAY),
];

/// An era device from sparse records.
pub fn era_device_from_records(data: &[u8]) -> MemoryDevice {
    device_sealed_with(data, |k| ERA_SALTS[k as usize % ERA_SALTS.len()])
}

/// The sparse records of an era image's non-zero blocks.
pub fn era_records_from_image(image: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, block) in image.chunks_exact(BLOCK_SIZE).enumerate() {
        if i as u64 >= FUZZ_NR_BLOCKS || block.iter().all(|&b| b == 0) {
            continue;
        }
        let kind = ERA_SALTS
            .iter()
            .position(|s| s.is_some_and(|s| pdata::checksum::verify(block, s)))
            .unwrap_or(0);
        out.push(i as u8);
        out.push(kind as u8);
        out.extend_from_slice(block);
    }
    out
}

/// Drops every era event.
struct EraNull;

impl era::ir::Sink for EraNull {
    fn event(&mut self, _: &era::ir::Event) -> era::Result<()> {
        Ok(())
    }
}

/// Checks, dumps, answers era_invalidate and repairs the era metadata in
/// `data` (sparse records); what repair writes must check clean.
pub fn era_metadata(data: &[u8]) {
    let dev: Arc<dyn BlockDevice> = Arc::new(era_device_from_records(data));
    let opts = era::check::CheckOptions::default();
    let _ = era::check::check(dev.as_ref(), &opts, &pdata::progress::NoProgress);
    for logical in [false, true] {
        let _ = era::dump::dump(dev.clone(), logical, &mut EraNull);
    }
    if let Ok(sb) = era::check::read_superblock(dev.as_ref(), 0) {
        let bm = pdata::block_manager::BlockManager::new(dev.clone(), 64, false);
        for since in [0, 1, sb.current_era] {
            let _ = era::EraView::live(&sb).written_since(&bm, since);
        }
    }
    let out = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
    if let Ok(mut restorer) = era::restore::Restorer::new(out.clone()) {
        if era::repair::recover(dev, &mut restorer).is_ok() {
            let report = era::check::check(out.as_ref(), &opts, &pdata::progress::NoProgress);
            assert!(
                report.is_clean(),
                "era_repair wrote bad metadata: {:?}",
                report.errors
            );
        }
    }
}

/// Parses `data` as era XML and restores it onto a small device; what
/// restores must check clean.
pub fn era_xml(data: &[u8]) {
    let _ = era_xml_mod::parse(data, &mut EraNull);
    let out = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
    if let Ok(mut restorer) = era::restore::Restorer::new(out.clone()) {
        if era_xml_mod::parse(data, &mut restorer).is_ok() {
            let opts = era::check::CheckOptions::default();
            let report = era::check::check(out.as_ref(), &opts, &pdata::progress::NoProgress);
            assert!(
                report.is_clean(),
                "era_restore wrote bad metadata: {:?}",
                report.errors
            );
        }
    }
}

/// The sparse records of an image's non-zero blocks (for seeding the corpus).
pub fn records_from_image(image: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, block) in image.chunks_exact(BLOCK_SIZE).enumerate() {
        if i as u64 >= FUZZ_NR_BLOCKS || block.iter().all(|&b| b == 0) {
            continue;
        }
        out.push(i as u8);
        out.push(Kind::of(block) as u8);
        out.extend_from_slice(block);
    }
    out
}

/// Accepts every event and drops it.
struct Sink;

impl Visitor for Sink {
    fn superblock_begin(&mut self, _: &PoolInfo) -> thin::Result<()> {
        Ok(())
    }
    fn device_begin(&mut self, _: u64, _: &DeviceDetails) -> thin::Result<()> {
        Ok(())
    }
    fn run(&mut self, _: &Run) -> thin::Result<()> {
        Ok(())
    }
    fn device_end(&mut self) -> thin::Result<()> {
        Ok(())
    }
    fn superblock_end(&mut self) -> thin::Result<()> {
        Ok(())
    }
}

/// Checks, dumps and repairs the metadata in `data` (sparse records).
pub fn thin_metadata(data: &[u8]) {
    let dev: Arc<dyn BlockDevice> = Arc::new(device_from_records(data));
    let _ = thin::check::check(dev.clone());
    if let Ok(md) = thin::ThinMetadata::open_with_cache(dev.clone(), false, 64) {
        for metadata_snap in [false, true] {
            let opts = thin::dump::DumpOptions {
                metadata_snap,
                ..Default::default()
            };
            let _ = thin::dump::dump(&md, &opts, &mut Sink);
        }
    }
    // Repair writes what it recovers onto a fresh device, which must then
    // check clean: recovery may lose data, never produce bad metadata.
    let out = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
    let opts = thin::repair::RepairOptions::default();
    let mut restorer = thin::restore::Restorer::new(out.clone());
    if thin::repair::recover(dev, &opts, &mut restorer).is_ok() {
        let report = thin::check::check(out).expect("the repaired metadata reads back");
        assert!(
            report.is_clean(),
            "thin_repair wrote bad metadata: {report:?}"
        );
    }
}

/// Parses `data` as thin XML and restores it onto a small device.
pub fn thin_xml(data: &[u8]) {
    let _ = thin_xml::parse(data, &mut Sink);
    let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
    let _ = thin_xml::parse(data, &mut thin::restore::Restorer::new(dev));
}

/// Accepts every cache event and drops it.
struct CacheSink;

impl cache::ir::Visitor for CacheSink {
    fn superblock_begin(&mut self, _: &CacheInfo) -> cache::Result<()> {
        Ok(())
    }
    fn mapping(&mut self, _: &MappingEvent) -> cache::Result<()> {
        Ok(())
    }
    fn hint(&mut self, _: u32, _: &[u8]) -> cache::Result<()> {
        Ok(())
    }
    fn discard(&mut self, _: u64, _: u64) -> cache::Result<()> {
        Ok(())
    }
    fn superblock_end(&mut self) -> cache::Result<()> {
        Ok(())
    }
}

/// What cache_restore and cache_repair write must check clean.
fn assert_cache_clean(dev: &dyn BlockDevice, what: &str) {
    let report = cache::check::check(dev);
    assert!(report.is_clean(), "{what} wrote bad metadata: {report:?}");
}

/// Checks, dumps and repairs the cache metadata in `data` (sparse records).
pub fn cache_metadata(data: &[u8]) {
    let dev = device_from_records(data);
    let _ = cache::check::check(&dev);
    let _ = cache::dump::dump(&dev, false, &mut CacheSink);
    let out = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
    let mut restorer = cache::restore::Restorer::new(out.clone(), Default::default());
    if cache::dump::dump(&dev, true, &mut restorer).is_ok() {
        assert_cache_clean(out.as_ref(), "cache_repair");
    }
}

/// Parses `data` as cache XML and restores it onto a small device.
pub fn cache_xml(data: &[u8]) {
    let _ = cache_xml::parse(data, &mut CacheSink);
    let dev = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
    let mut restorer = cache::restore::Restorer::new(dev.clone(), Default::default());
    if cache_xml::parse(data, &mut restorer).is_ok() {
        assert_cache_clean(dev.as_ref(), "cache_restore");
    }
}
