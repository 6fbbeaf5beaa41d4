//! Before a clean commit after an unclean open: make the stored dirty bits,
//! discard bits and hints say what this session believes, so that the next
//! clean open may trust them (the kernel writes its in-core dirty bits,
//! discards and hints on suspend, before its clean commit).

use super::CacheMetadata;
use crate::error::Result;
use crate::format::mapping::{self, FLAG_DIRTY, FLAG_VALID, MAPPING_VALUE_SIZE};
use pdata::{array, bitset};

impl CacheMetadata {
    pub(super) fn make_stored_state_exact(&mut self) -> Result<()> {
        let nr = u64::from(self.sb.cache_blocks);
        // Dirty: every untouched mapped block.
        if self.sb.separate_dirty_bits() {
            let mut dirty = self.stored_dirty_bits()?;
            self.walk_stored(|c, _, flags| {
                // An array longer than the cache (damage) is not ours to fix.
                if let Some(d) = dirty.get_mut(c as usize) {
                    if flags & FLAG_VALID == 0 {
                        *d = false;
                    } else if !self.dirty_touched.contains(&c) {
                        *d = true;
                    }
                }
            })?;
            // Rebuilt whole, as the kernel's dm_cache_set_dirty_bits.
            bitset::delete(&mut self.tm, self.sb.dirty_root)?;
            self.sb.dirty_root = bitset::new_with(&mut self.tm, nr, |b| dirty[b as usize])?;
        } else {
            let mut to_mark = Vec::new();
            self.walk_stored(|c, oblock, flags| {
                let valid = flags & FLAG_VALID != 0;
                if valid && flags & FLAG_DIRTY == 0 && !self.dirty_touched.contains(&c) {
                    to_mark.push((u64::from(c), oblock));
                }
            })?;
            for (i, oblock) in to_mark {
                self.sb.mapping_root = array::set(
                    &mut self.tm,
                    self.sb.mapping_root,
                    MAPPING_VALUE_SIZE,
                    i,
                    &mapping::valid(oblock, true).to_le_bytes(),
                )?;
            }
        }
        // Discards: nothing untouched is discarded.
        let mut to_clear = Vec::new();
        bitset::walk(
            &self.tm,
            self.sb.discard_root,
            self.sb.discard_nr_blocks,
            |b, v| {
                if v && !self.discard_touched.contains(&b) {
                    to_clear.push(b);
                }
                Ok(())
            },
        )?;
        for b in to_clear {
            self.sb.discard_root = bitset::set(&mut self.tm, self.sb.discard_root, b, false)?;
        }
        // Hints: untrusted ones are replaced by zeros.
        if self.hints.is_none() && self.has_hint_array() {
            self.hints = Some(vec![0; nr as usize]);
            self.hints_dirty = true;
        }
        Ok(())
    }
}
