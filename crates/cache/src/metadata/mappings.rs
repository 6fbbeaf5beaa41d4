//! Mappings and their dirty state; resizing the cache.

use super::CacheMetadata;
use crate::error::{CacheError, Result};
use crate::format::mapping::{
    self, Mapping, FLAG_DIRTY, FLAG_VALID, MAPPING_VALUE_SIZE, MAX_OBLOCK,
};
use pdata::block_manager::le64;
use pdata::live::LiveMetadata;
use pdata::{array, bitset};
use rustc_hash::FxHashMap;

/// A stored mapping value: (origin block, flags).
type Stored = (u64, u64);

impl CacheMetadata {
    fn stored(&self, cblock: u32) -> Result<Stored> {
        let mut v = [0u8; MAPPING_VALUE_SIZE];
        array::get(
            &self.tm,
            self.sb.mapping_root,
            MAPPING_VALUE_SIZE,
            u64::from(cblock),
            &mut v,
        )?;
        Ok(mapping::unpack(le64(&v, 0)))
    }

    /// The dirty state as stored: the v1 flag or the v2 bit.
    fn stored_dirty(&self, cblock: u32, flags: u64) -> Result<bool> {
        if self.sb.separate_dirty_bits() {
            Ok(bitset::test(
                &self.tm,
                self.sb.dirty_root,
                u64::from(cblock),
            )?)
        } else {
            Ok(flags & FLAG_DIRTY != 0)
        }
    }

    /// What the kernel would load: stored dirtiness if it can be trusted or
    /// this session set it, dirty otherwise.
    pub(super) fn effective_dirty(&self, cblock: u32, stored_dirty: bool) -> bool {
        if self.trusted || self.dirty_touched.contains(&cblock) {
            stored_dirty
        } else {
            true
        }
    }

    /// The mapping of `cblock`, if it is mapped.
    pub fn lookup(&self, cblock: u64) -> Result<Option<Mapping>> {
        self.tm.check_alive()?;
        let c = self.check_cblock(cblock)?;
        let (oblock, flags) = self.stored(c)?;
        if flags & FLAG_VALID == 0 {
            return Ok(None);
        }
        let dirty = self.stored_dirty(c, flags)?;
        Ok(Some(Mapping {
            oblock,
            dirty: self.effective_dirty(c, dirty),
        }))
    }

    /// Calls `f(cblock, oblock, flags)` for every stored value, in order.
    pub(super) fn walk_stored(&self, mut f: impl FnMut(u32, u64, u64)) -> Result<()> {
        array::walk(
            &self.tm,
            self.sb.mapping_root,
            MAPPING_VALUE_SIZE,
            |i, v| {
                let (oblock, flags) = mapping::unpack(le64(v, 0));
                f(i as u32, oblock, flags);
                Ok(())
            },
        )?;
        Ok(())
    }

    /// The stored v2 dirty bits, one per cache block (empty in v1).
    pub(super) fn stored_dirty_bits(&self) -> Result<Vec<bool>> {
        let mut bits = Vec::new();
        if self.sb.separate_dirty_bits() {
            let nr = u64::from(self.sb.cache_blocks);
            bits.reserve(nr as usize);
            bitset::walk(&self.tm, self.sb.dirty_root, nr, |_, v| {
                bits.push(v);
                Ok(())
            })?;
        }
        Ok(bits)
    }

    /// Every mapping, in cache-block order, as the kernel would load them.
    pub fn mappings(&self) -> Result<Vec<(u32, Mapping)>> {
        self.tm.check_alive()?;
        let dirty_bits = self.stored_dirty_bits()?;
        let mut out = Vec::new();
        self.walk_stored(|c, oblock, flags| {
            if flags & FLAG_VALID != 0 {
                let stored = match dirty_bits.get(c as usize) {
                    Some(&d) => d,
                    None => flags & FLAG_DIRTY != 0,
                };
                let dirty = self.effective_dirty(c, stored);
                out.push((c, Mapping { oblock, dirty }));
            }
        })?;
        Ok(out)
    }

    fn reverse_map(&mut self) -> Result<&mut FxHashMap<u64, u32>> {
        if self.by_oblock.is_none() {
            let mut m = FxHashMap::default();
            self.walk_stored(|c, oblock, flags| {
                if flags & FLAG_VALID != 0 {
                    m.insert(oblock, c);
                }
            })?;
            self.by_oblock = Some(m);
        }
        Ok(self.by_oblock.get_or_insert_with(FxHashMap::default))
    }

    /// Stores the value and the dirty state of `cblock` (the v2 bit apart).
    fn store(&mut self, c: u32, value: u64, dirty: bool) -> Result<()> {
        self.sb.mapping_root = array::set(
            &mut self.tm,
            self.sb.mapping_root,
            MAPPING_VALUE_SIZE,
            u64::from(c),
            &value.to_le_bytes(),
        )?;
        if self.sb.separate_dirty_bits() {
            self.sb.dirty_root =
                bitset::set(&mut self.tm, self.sb.dirty_root, u64::from(c), dirty)?;
        }
        self.dirty_touched.insert(c);
        Ok(())
    }

    /// Maps `cblock` to `oblock`, clean (as the kernel's insert), replacing
    /// any mapping `cblock` had. An origin block is cached at most once.
    pub fn insert(&mut self, cblock: u64, oblock: u64) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let c = self.check_cblock(cblock)?;
        if oblock > MAX_OBLOCK {
            return Err(CacheError::OblockOutOfRange(oblock));
        }
        if let Some(&other) = self.reverse_map()?.get(&oblock) {
            if other != c {
                return Err(CacheError::OblockMapped {
                    oblock,
                    cblock: other,
                });
            }
        }
        let (old, flags) = self.stored(c)?;
        self.mutate(|md| {
            md.store(c, mapping::valid(oblock, false), false)?;
            let map = md.reverse_map()?;
            if flags & FLAG_VALID != 0 {
                map.remove(&old);
            }
            map.insert(oblock, c);
            Ok(())
        })
    }

    /// Before changing a mapping: (cache block, origin block) of a mapped
    /// block of a writable, live transaction.
    fn require_mapped(&self, cblock: u64) -> Result<(u32, u64)> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let c = self.check_cblock(cblock)?;
        let (oblock, flags) = self.stored(c)?;
        if flags & FLAG_VALID == 0 {
            return Err(CacheError::NotMapped(c));
        }
        Ok((c, oblock))
    }

    /// Unmaps `cblock` (its value becomes 0, its dirty bit clear).
    pub fn remove(&mut self, cblock: u64) -> Result<()> {
        let (c, oblock) = self.require_mapped(cblock)?;
        self.mutate(|md| {
            md.store(c, mapping::pack(0, 0), false)?;
            if let Some(m) = md.by_oblock.as_mut() {
                m.remove(&oblock);
            }
            Ok(())
        })
    }

    /// Marks a mapped block dirty or clean: the v1 flag or the v2 bit.
    pub fn set_dirty(&mut self, cblock: u64, dirty: bool) -> Result<()> {
        let (c, oblock) = self.require_mapped(cblock)?;
        let value = if self.sb.separate_dirty_bits() {
            mapping::valid(oblock, false)
        } else {
            mapping::valid(oblock, dirty)
        };
        self.mutate(|md| md.store(c, value, dirty))
    }

    /// Changes the number of cache blocks. Shrinking is refused while a
    /// dropped block is mapped and dirty; dropped clean mappings vanish.
    pub fn resize(&mut self, nr_cache_blocks: u32) -> Result<()> {
        self.require_writable()?;
        self.tm.check_alive()?;
        let old = self.sb.cache_blocks;
        if nr_cache_blocks < old {
            let dropped: Vec<(u32, Mapping)> = self
                .mappings()?
                .into_iter()
                .filter(|(c, _)| *c >= nr_cache_blocks)
                .collect();
            if let Some((c, _)) = dropped.iter().find(|(_, m)| m.dirty) {
                return Err(CacheError::DirtyBlock(*c));
            }
            if let Some(map) = self.by_oblock.as_mut() {
                for (_, m) in &dropped {
                    map.remove(&m.oblock);
                }
            }
        }
        let (old64, new64) = (u64::from(old), u64::from(nr_cache_blocks));
        self.mutate(|md| {
            md.sb.mapping_root = array::resize(
                &mut md.tm,
                md.sb.mapping_root,
                MAPPING_VALUE_SIZE,
                old64,
                new64,
                &mapping::pack(0, 0).to_le_bytes(),
            )?;
            if md.sb.separate_dirty_bits() {
                md.sb.dirty_root =
                    bitset::resize(&mut md.tm, md.sb.dirty_root, old64, new64, false)?;
            }
            md.sb.cache_blocks = nr_cache_blocks;
            md.dirty_touched.retain(|&c| c < nr_cache_blocks);
            md.resize_hints(old, nr_cache_blocks)
        })
    }
}
