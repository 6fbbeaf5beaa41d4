//! The metadata as an event stream ([`crate::ir`]): the dump (every
//! structure must read) and recovery (`repair`: whatever reads is kept,
//! never a clean claim that cannot be backed).
//!
//! Recovery's rules: spine leaves cut off by a lost node are found by
//! scanning (`crate::scan`); a lost mapping array block loses its mappings (the
//! cache blocks come back unmapped, so their cached data is not trusted);
//! a lost part of the version 2 dirty bitset, or an unclean shutdown,
//! brings every mapping it covers back dirty; lost hints come back as
//! none (zero), lost discard bits as not discarded.

use crate::check::{read_superblock, superblock_problems};
use crate::format::mapping::{unpack, FLAG_DIRTY, FLAG_VALID, MAX_OBLOCK};
use crate::format::superblock::{
    Superblock, CACHE_MAGIC, HINT_SIZE, MAGIC, MAX_VERSION, MIN_VERSION, SUPERBLOCK_LOCATION,
};
use crate::ir::{CacheInfo, MappingEvent, Visitor};
use crate::lost_sb::rebuild;
pub use crate::lost_sb::LostSuperblock;
use crate::read::{read_array, read_entries, spine, Lost};
use crate::scan::orphan_entries;
use crate::{CacheError, Result};
use pdata::array::max_entries;
use pdata::bitset::{nr_words, BITS_PER_WORD, WORD_SIZE};
use pdata::block_manager::le64;
use pdata::io::BlockDevice;
use rustc_hash::FxHashSet;

/// What recovery had to give up or change.
#[derive(Debug, Default)]
pub struct DumpReport {
    pub warnings: Vec<String>,
}

/// Walks the metadata on `dev` into `out`; with `repair`, damage is
/// worked around (and told in the report) instead of failing the dump.
pub fn dump(dev: &dyn BlockDevice, repair: bool, out: &mut dyn Visitor) -> Result<DumpReport> {
    dump_with(dev, repair, &LostSuperblock::default(), out)
}

/// As [`dump`]; when repairing a superblock that is wholly lost, `lost`
/// stands in for its fields (see `crate::lost_sb`).
pub fn dump_with(
    dev: &dyn BlockDevice,
    repair: bool,
    lost: &LostSuperblock,
    out: &mut dyn Visitor,
) -> Result<DumpReport> {
    let mut report = DumpReport::default();
    let mut sb_damaged = false;
    let mut found = None;
    let mut disputed = FxHashSet::default();
    let sb = match read_superblock(dev) {
        Ok(sb) => sb,
        Err(e) if repair => {
            sb_damaged = true;
            if let Some(sb) = damaged_superblock(dev) {
                report.warnings.push(format!(
                    "superblock: {e}; its fields are used as they read, every mapping dirty"
                ));
                sb
            } else {
                let r = rebuild(dev, lost)
                    .map_err(|x| CacheError::Invalid(format!("superblock: {e}; {x}")))?;
                report.warnings.extend(r.warnings);
                found = Some(r.entries);
                disputed = r.disputed;
                r.sb
            }
        }
        Err(e) => return Err(CacheError::Invalid(format!("superblock: {e}"))),
    };
    let problems = superblock_problems(&sb);
    if let (Some(p), None) = (problems.first(), &found) {
        if !repair || sb.mapping_root == 0 || sb.incompat_flags != 0 {
            return Err(CacheError::Invalid(format!("superblock: {p}")));
        }
        report.warnings.extend(problems);
    }
    let mut d = Dumper {
        dev,
        sb: &sb,
        repair,
        all_dirty: repair && (sb_damaged || !sb.clean_shutdown()),
        found,
        disputed,
        report: &mut report,
    };
    d.run(out)?;
    Ok(report)
}

/// A superblock that fails validation but still holds its magic and a
/// known version where they belong (a bad checksum, a torn write): its
/// fields are the best guess there is.
fn damaged_superblock(dev: &dyn BlockDevice) -> Option<Superblock> {
    let mut b = [0u8; pdata::BLOCK_SIZE];
    dev.read_block(SUPERBLOCK_LOCATION, &mut b).ok()?;
    let sb = Superblock::unpack(&b);
    (le64(&b, MAGIC) == CACHE_MAGIC && (MIN_VERSION..=MAX_VERSION).contains(&sb.version))
        .then_some(sb)
}

struct Dumper<'a> {
    dev: &'a dyn BlockDevice,
    sb: &'a Superblock,
    repair: bool,
    /// The dirty bits cannot be trusted: every mapping comes back dirty.
    all_dirty: bool,
    /// The mapping array's spine entries, found by scanning for a lost
    /// superblock.
    found: Option<Vec<(u64, u64)>>,
    /// Cache blocks recovery leaves unmapped (see `crate::lost_sb`).
    disputed: FxHashSet<u64>,
    report: &'a mut DumpReport,
}

impl Dumper<'_> {
    /// Fails on `lost` unless repairing, else tells what was lost.
    fn lost(&mut self, what: &str, lost: Vec<Lost>, consequence: &str) -> Result<()> {
        for l in lost {
            let text = format!(
                "{what} entries {}..{} lost ({}): {consequence}",
                l.begin, l.end, l.why
            );
            if !self.repair {
                return Err(CacheError::Invalid(text));
            }
            self.report.warnings.push(text);
        }
        Ok(())
    }

    /// The mapping array's spine entries and the problems met; when
    /// recovering from lost spine nodes, completed from the orphaned
    /// leaves a scan finds (see `crate::scan`), as long as the spines of
    /// the other arrays of 8-byte values read (so their leaves are known
    /// and cannot pass for the mapping array's).
    fn mapping_spine(&mut self) -> (Vec<(u64, u64)>, Vec<String>) {
        if let Some(entries) = self.found.take() {
            return (entries, Vec::new());
        }
        let sb = self.sb;
        let (mut problems, mut leaves) = (Vec::new(), Vec::new());
        let mut entries = spine(self.dev, sb.mapping_root, &mut problems, &mut leaves);
        if !self.repair || problems.is_empty() {
            return (entries, problems);
        }
        let mut others = Vec::new();
        for root in [sb.hint_root, sb.discard_root, sb.dirty_root] {
            if root != 0 {
                spine(self.dev, root, &mut others, &mut leaves);
            }
        }
        if !others.is_empty() {
            return (entries, problems);
        }
        let known: FxHashSet<u64> = leaves.into_iter().collect();
        let have: FxHashSet<u64> = entries.iter().map(|e| e.0).collect();
        let want = u64::from(sb.cache_blocks).div_ceil(max_entries(8) as u64);
        let found: Vec<(u64, u64)> = orphan_entries(self.dev, &sb.metadata_sm_root, &known)
            .into_iter()
            .filter(|(k, _)| *k < want && !have.contains(k))
            .collect();
        if !found.is_empty() {
            self.report.warnings.push(format!(
                "{} mapping array blocks found by scanning for the spine's lost leaves",
                found.len()
            ));
        }
        entries.extend(found);
        (entries, problems)
    }

    fn run(&mut self, out: &mut dyn Visitor) -> Result<()> {
        let sb = self.sb;
        let n = u64::from(sb.cache_blocks);
        let hint_width = if sb.hint_root != 0 && sb.policy_hint_size == 0 {
            HINT_SIZE
        } else {
            sb.policy_hint_size
        };
        out.superblock_begin(&CacheInfo {
            uuid: String::new(),
            block_size: sb.data_block_size,
            nr_cache_blocks: sb.cache_blocks,
            policy: sb.policy().name,
            hint_width,
            version: Some(sb.version),
        })?;

        // Version 2's dirty bits first: the mappings carry them.
        let all_dirty = self.all_dirty;
        if all_dirty && !sb.clean_shutdown() && self.found.is_none() {
            self.report.warnings.push(
                "the cache was not shut down cleanly: every mapping is taken as dirty".into(),
            );
        }
        let mut dirty = Vec::new();
        if sb.separate_dirty_bits() && !all_dirty {
            dirty = vec![u64::MAX; nr_words(n) as usize];
            let lost = read_array(
                self.dev,
                sb.dirty_root,
                WORD_SIZE,
                nr_words(n),
                |first, vals| {
                    for (i, v) in vals.chunks_exact(WORD_SIZE).enumerate() {
                        if let Some(w) = dirty.get_mut(first as usize + i) {
                            *w = le64(v, 0);
                        }
                    }
                },
            );
            let lost = lost
                .into_iter()
                .map(|l| Lost {
                    begin: l.begin * BITS_PER_WORD,
                    end: (l.end * BITS_PER_WORD).min(n),
                    ..l
                })
                .collect();
            self.lost("dirty bitset", lost, "their mappings come back dirty")?;
        }
        let is_dirty = |c: u64, flags: u64| {
            all_dirty
                || if sb.separate_dirty_bits() {
                    dirty[(c / BITS_PER_WORD) as usize] >> (c % BITS_PER_WORD) & 1 == 1
                } else {
                    flags & FLAG_DIRTY != 0
                }
        };

        let mut mapped = vec![0u64; nr_words(n) as usize];
        let mut failed = None;
        let mut junk = 0u64;
        // Recovery drops an origin block's later cache blocks.
        let mut seen = FxHashSet::default();
        let mut twice = 0u64;
        let entries = self.mapping_spine();
        let (entries, problems) = entries;
        let lost = read_entries(self.dev, entries, problems, 8, n, |first, vals| {
            if failed.is_some() {
                return;
            }
            for (i, v) in vals.chunks_exact(8).enumerate() {
                let c = first + i as u64;
                let (oblock, flags) = unpack(le64(v, 0));
                if flags & FLAG_VALID == 0 || c >= n {
                    junk += u64::from(flags != 0 || oblock != 0);
                    continue;
                }
                junk += u64::from(flags & !(FLAG_VALID | FLAG_DIRTY) != 0);
                if self.disputed.contains(&c) {
                    continue;
                }
                if self.repair && !seen.insert(oblock) {
                    twice += 1;
                    continue;
                }
                mapped[(c / BITS_PER_WORD) as usize] |= 1 << (c % BITS_PER_WORD);
                let m = MappingEvent {
                    cblock: c as u32,
                    oblock: oblock.min(MAX_OBLOCK),
                    // Unknown flags: not a clean claim.
                    dirty: is_dirty(c, flags) || (self.repair && flags > FLAG_VALID | FLAG_DIRTY),
                };
                if let Err(e) = out.mapping(&m) {
                    failed = Some(e);
                    return;
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if twice > 0 {
            self.report.warnings.push(format!(
                "{twice} cache blocks hold an origin block an earlier one holds: dropped"
            ));
        }
        if junk > 0 && self.repair {
            self.report.warnings.push(format!(
                "{junk} mapping entries hold unknown flags or junk: unmapped ones dropped, mapped ones kept dirty"
            ));
        }
        let read_some = lost.iter().map(|l| l.end - l.begin).sum::<u64>() < n;
        if !lost.is_empty() && !read_some {
            return Err(CacheError::Invalid(format!(
                "nothing of the mapping array can be read ({}): refusing to write an empty cache",
                lost[0].why
            )));
        }
        self.lost(
            "mapping array",
            lost,
            "those cache blocks come back unmapped",
        )?;

        if sb.hint_root != 0 && hint_width > 0 {
            let mut failed = None;
            let lost = read_array(
                self.dev,
                sb.hint_root,
                hint_width as usize,
                n,
                |first, vals| {
                    for (i, v) in vals.chunks_exact(hint_width as usize).enumerate() {
                        let c = first + i as u64;
                        let m = mapped
                            .get((c / BITS_PER_WORD) as usize)
                            .copied()
                            .unwrap_or(0);
                        if failed.is_none() && m >> (c % BITS_PER_WORD) & 1 == 1 {
                            failed = out.hint(c as u32, v).err();
                        }
                    }
                },
            );
            if let Some(e) = failed {
                return Err(e);
            }
            self.lost("hint array", lost, "their hints are dropped")?;
        }

        if sb.discard_root != 0 && sb.discard_nr_blocks > 0 {
            let nr = sb.discard_nr_blocks;
            let mut run: Option<(u64, u64)> = None;
            let mut failed = None;
            let lost = read_array(
                self.dev,
                sb.discard_root,
                WORD_SIZE,
                nr_words(nr),
                |first, vals| {
                    for (i, v) in vals.chunks_exact(WORD_SIZE).enumerate() {
                        let base = (first + i as u64) * BITS_PER_WORD;
                        let w = le64(v, 0);
                        for j in 0..BITS_PER_WORD.min(nr.saturating_sub(base)) {
                            let b = base + j;
                            if w >> j & 1 == 1 {
                                match &mut run {
                                    Some((_, end)) if *end == b => *end = b + 1,
                                    _ => {
                                        if let Some((s, e)) = run.replace((b, b + 1)) {
                                            if failed.is_none() {
                                                failed = out.discard(s, e).err();
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            );
            if let (Some((s, e)), None) = (run, &failed) {
                failed = out.discard(s, e).err();
            }
            if let Some(e) = failed {
                return Err(e);
            }
            self.lost(
                "discard bitset",
                lost,
                "those blocks are not taken as discarded",
            )?;
        }
        out.superblock_end()
    }
}
