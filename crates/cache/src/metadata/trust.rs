//! Before a clean commit: make the stored dirty bits, discard bits and
//! hints say what this session believes, so that the next clean open may
//! trust them. The kernel does the same on suspend, before its clean
//! commit: it writes its in-core dirty bits (v2: the whole bitset, so a
//! bit left on an unmapped block is cleared), discards and hints.

use super::CacheMetadata;
use crate::error::Result;
use crate::format::mapping::{self, FLAG_DIRTY, FLAG_VALID, MAPPING_VALUE_SIZE};
use pdata::{array, bitset};

impl CacheMetadata {
    pub(super) fn prepare_clean_shutdown(&mut self) -> Result<()> {
        if self.sb.separate_dirty_bits() {
            self.rewrite_dirty_bitset()?;
        } else if !self.trusted {
            self.mark_untouched_mappings_dirty()?;
        }
        if self.trusted {
            return Ok(());
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
            self.hints = Some(vec![0; self.sb.cache_blocks as usize]);
            self.hints_dirty = true;
        }
        Ok(())
    }

    /// v2: the dirty bitset as the session sees it (every mapped block's
    /// effective state, unmapped blocks clear), rebuilt whole if it differs.
    fn rewrite_dirty_bitset(&mut self) -> Result<()> {
        let stored = self.stored_dirty_bits()?;
        let mut want = vec![false; stored.len()];
        self.walk_stored(|c, _, flags| {
            // An array longer than the cache (damage) is not ours to fix.
            if let (Some(w), Some(&s)) = (want.get_mut(c as usize), stored.get(c as usize)) {
                *w = flags & FLAG_VALID != 0 && self.effective_dirty(c, s);
            }
        })?;
        if want == stored {
            return Ok(());
        }
        bitset::delete(&mut self.tm, self.sb.dirty_root)?;
        let nr = u64::from(self.sb.cache_blocks);
        self.sb.dirty_root = bitset::new_with(&mut self.tm, nr, |b| want[b as usize])?;
        Ok(())
    }

    /// v1: every mapped block this session did not set is dirty.
    fn mark_untouched_mappings_dirty(&mut self) -> Result<()> {
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
        Ok(())
    }
}
