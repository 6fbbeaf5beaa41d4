//! The rules of cache's values (CACHE.md §3-5): each mapping's flags and
//! origin block, no origin block cached twice, the dirty bits of version
//! 2 only on mapped blocks.

use super::report::{CheckReport, Section};
use super::trees::Walker;
use super::CheckOptions;
use crate::format::mapping::{unpack, FLAG_DIRTY, FLAG_VALID};
use crate::format::superblock::Superblock;
use crate::oblocks::Oblocks;
use pdata::bitset::BITS_PER_WORD;
use pdata::block_manager::le64;

/// Oddities told one by one, the rest counted.
const MAX_ODD_TOLD: u64 = 10;

pub struct Values {
    v2: bool,
    nr_cache_blocks: u64,
    /// Apply the rules (not with --skip-mappings, nor to dirty bits when
    /// the mappings are damaged).
    pub rules: bool,
    /// Origin blocks are below this when the origin's size is known (a
    /// clean shutdown and a discard bitset, which covers the origin).
    origin_limit: Option<u64>,
    /// One bit per cache block: mapped.
    mapped: Vec<u64>,
    oblocks: Oblocks,
    nr_dirty: u64,
    /// Dirty bits on unmapped blocks (version 2), and a few of them.
    dirty_unmapped: u64,
    told: Vec<u64>,
    /// Mappings with the version 1 DIRTY flag in version 2 metadata.
    v1_flag_in_v2: u64,
}

impl Values {
    pub fn new(sb: &Superblock, opts: &CheckOptions) -> Self {
        let n = u64::from(sb.cache_blocks);
        let origin_limit = (sb.clean_shutdown()
            && sb.discard_nr_blocks > 0
            && sb.data_block_size > 0)
            .then(|| {
                sb.discard_block_size.saturating_mul(sb.discard_nr_blocks)
                    / u64::from(sb.data_block_size)
            });
        Values {
            v2: sb.separate_dirty_bits(),
            nr_cache_blocks: n,
            rules: !opts.skip_mappings,
            origin_limit,
            mapped: vec![0; n.div_ceil(BITS_PER_WORD) as usize],
            oblocks: Oblocks::new(n),
            nr_dirty: 0,
            dirty_unmapped: 0,
            told: Vec::new(),
            v1_flag_in_v2: 0,
        }
    }

    /// The values of a mapping array block, from cache block `first`.
    pub fn mappings(&mut self, w: &mut Walker<'_>, first: u64, values: &[u8]) {
        for (i, v) in values.chunks_exact(8).enumerate() {
            let c = first + i as u64;
            let value = le64(v, 0);
            if value == 0 {
                // Unmapped, as it should be.
                continue;
            }
            let (oblock, flags) = unpack(value);
            if flags & FLAG_VALID != 0 && c < self.nr_cache_blocks {
                self.mapped[(c / BITS_PER_WORD) as usize] |= 1 << (c % BITS_PER_WORD);
            }
            if !self.rules {
                continue;
            }
            let fatal = |w: &mut Walker<'_>, what: String| {
                w.problems
                    .fatal(Section::Mappings, format!("cache block {c}: {what}"))
            };
            if flags & !(FLAG_VALID | FLAG_DIRTY) != 0 {
                fatal(w, format!("unknown flags {flags:#x}"));
            }
            if flags & FLAG_VALID == 0 {
                if flags & FLAG_DIRTY != 0 {
                    fatal(w, "dirty but not mapped".into());
                }
                if oblock != 0 {
                    fatal(w, format!("not mapped, but holds origin block {oblock}"));
                }
                continue;
            }
            if let Some(limit) = self.origin_limit.filter(|&l| oblock >= l) {
                fatal(
                    w,
                    format!("origin block {oblock} is beyond the origin ({limit} blocks)"),
                );
            }
            if flags & FLAG_DIRTY != 0 {
                if self.v2 {
                    self.v1_flag_in_v2 += 1;
                } else {
                    self.nr_dirty += 1;
                }
            }
            self.oblocks.push(oblock);
        }
    }

    /// Origin blocks cached twice.
    pub fn finish_mappings(&mut self, w: &mut Walker<'_>) {
        for o in self.oblocks.take().duplicates() {
            w.problems.fatal(
                Section::Mappings,
                format!("origin block {o} is held by more than one cache block"),
            );
        }
    }

    /// Word `i` of the dirty bitset.
    pub fn dirty_word(&mut self, i: u64, word: u64) {
        let Some(&mapped) = self.mapped.get(i as usize) else {
            return;
        };
        // Bits past the last cache block mean nothing.
        let first = i * BITS_PER_WORD;
        let valid = match self.nr_cache_blocks - first {
            n if n >= BITS_PER_WORD => u64::MAX,
            n => (1u64 << n) - 1,
        };
        let word = word & valid;
        self.nr_dirty += u64::from((word & mapped).count_ones());
        let mut odd = word & !mapped;
        if self.rules && odd != 0 {
            self.dirty_unmapped += u64::from(odd.count_ones());
            while odd != 0 && (self.told.len() as u64) < MAX_ODD_TOLD {
                self.told.push(first + u64::from(odd.trailing_zeros()));
                odd &= odd - 1;
            }
        }
    }

    pub fn finish(self, r: &mut CheckReport) {
        r.nr_mapped = self.mapped.iter().map(|w| u64::from(w.count_ones())).sum();
        r.nr_dirty = self.nr_dirty;
        if self.dirty_unmapped > 0 {
            let told: Vec<String> = self.told.iter().map(u64::to_string).collect();
            let more = if self.dirty_unmapped > self.told.len() as u64 {
                ", ..."
            } else {
                ""
            };
            let n = self.dirty_unmapped;
            r.odd(|| {
                format!(
                    "dirty bitset: {n} unmapped cache blocks marked dirty (cache blocks {}{more}); the kernel ignores them",
                    told.join(", ")
                )
            });
            r.nr_odd += n - 1;
        }
        if self.v1_flag_in_v2 > 0 {
            let n = self.v1_flag_in_v2;
            r.odd(|| {
                format!("mapping array: {n} mappings carry version 1's DIRTY flag in version 2 metadata; the kernel ignores it")
            });
        }
    }
}
