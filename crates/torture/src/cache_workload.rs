//! The dm-cache workload: a seeded script of cache metadata operations
//! (runs of inserts, removals, dirty and clean, hints, discards, resizes
//! both ways, statistics) over several transactions committed clean and
//! unclean, with aborts and reopenings, against a model of what the kernel
//! would load.
//!
//! Trust is part of the model: after an unclean shutdown (the last commit
//! without CLEAN_SHUTDOWN, or the flag cleared when the metadata was opened
//! for writing) every mapped block counts dirty, there are no hints and
//! nothing is discarded. Two models are therefore the same transaction when
//! both are clean and equal, or when what an unclean opening sees of them
//! (mappings, sizes, statistics) is equal.

use crate::rng::Rng;
use crate::script::{e2s, Client, Scripted, Step};
use cache::format::superblock::{Policy, Stats};
use cache::CacheMetadata;
use pdata::io::BlockDevice;
use pdata::live::LiveMetadata;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A small block cache, so dirty blocks are evicted mid-transaction.
const CACHE_BLOCKS: usize = 64;
/// Metadata device size (4 MiB).
pub const DEVICE_BLOCKS: u64 = 1024;
/// Cache blocks the first resize gives (a new cache has none, as the
/// kernel formats it, until the target sizes it): six mapping-array
/// blocks, three of hints.
pub const NR_CACHE_BLOCKS: u32 = 3000;
/// The script never grows the cache beyond this.
const MAX_CACHE_BLOCKS: u32 = 6000;
const BLOCK_SECTORS: u32 = 128;
/// Origin blocks the script maps.
const OBLOCKS: u64 = 1 << 20;
/// Origin blocks of the harness's extra operation (never scripted).
const EXTRA_OBLOCK: u64 = OBLOCKS;

/// What an opening of the metadata would see.
#[derive(Clone, Debug)]
pub struct CacheModel {
    pub version: u32,
    pub nr_cache_blocks: u32,
    /// Cache block -> (origin block, dirty).
    pub mappings: BTreeMap<u32, (u64, bool)>,
    /// The non-zero hints, or None when there are none to trust.
    pub hints: Option<BTreeMap<u32, u32>>,
    /// Discard block size (sectors) and number of discard blocks.
    pub discard_geometry: (u64, u64),
    pub discards: BTreeSet<u64>,
    pub stats: [u32; 4],
    /// The transaction was committed with CLEAN_SHUTDOWN (and the flag is
    /// still set): dirty bits, hints and discards are to be trusted.
    pub clean: bool,
}

impl CacheModel {
    /// What an opening after an unclean shutdown sees of this transaction.
    pub fn unclean_view(&self) -> CacheModel {
        CacheModel {
            mappings: self
                .mappings
                .iter()
                .map(|(&c, &(o, _))| (c, (o, true)))
                .collect(),
            hints: None,
            discards: BTreeSet::new(),
            clean: false,
            ..self.clone()
        }
    }

    fn same_contents(&self, o: &CacheModel) -> bool {
        self.version == o.version
            && self.nr_cache_blocks == o.nr_cache_blocks
            && self.mappings == o.mappings
            && self.hints == o.hints
            && self.discard_geometry == o.discard_geometry
            && self.discards == o.discards
            && self.stats == o.stats
    }

    fn nr_dirty(&self) -> usize {
        self.mappings.values().filter(|(_, d)| *d).count()
    }
}

/// The same transaction, as an opening would see it (see the module doc).
impl PartialEq for CacheModel {
    fn eq(&self, o: &CacheModel) -> bool {
        if self.clean && o.clean {
            self.same_contents(o)
        } else {
            self.unclean_view().same_contents(&o.unclean_view())
        }
    }
}

#[derive(Clone, Debug)]
pub enum Op {
    /// Maps cache blocks `cblock..cblock + n` to origin blocks `oblock..`,
    /// clean, replacing what they mapped.
    Insert {
        cblock: u32,
        n: u32,
        oblock: u64,
    },
    Remove(u32),
    SetDirty {
        cblocks: Vec<u32>,
        dirty: bool,
    },
    Hint {
        cblock: u32,
        value: u32,
    },
    DiscardSize {
        block_sectors: u64,
        nr_blocks: u64,
    },
    Discard {
        block: u64,
        discarded: bool,
    },
    /// Removes every mapping of a block at or above the new size, then
    /// resizes the cache.
    Resize(u32),
    Stats(u32),
    /// A commit with CLEAN_SHUTDOWN, as on suspend.
    CommitClean,
}

/// What the generator knows: the mappings and sizes, not the dirty state.
#[derive(Clone, Default)]
pub struct GenModel {
    by_cblock: BTreeMap<u32, u64>,
    by_oblock: BTreeMap<u64, u32>,
    nr_cache_blocks: u32,
    discard_blocks: u64,
}

impl GenModel {
    fn unmap(&mut self, c: u32) {
        if let Some(o) = self.by_cblock.remove(&c) {
            self.by_oblock.remove(&o);
        }
    }

    fn map(&mut self, c: u32, o: u64) {
        self.unmap(c);
        self.by_cblock.insert(c, o);
        self.by_oblock.insert(o, c);
    }
}

/// The dm-cache client, for one metadata version.
pub struct Cache {
    pub version: u32,
}

/// The workload: the cache client and its script.
pub type CacheWorkload = Scripted<Cache>;

fn stats_of(n: u32) -> Stats {
    Stats {
        read_hits: n,
        read_misses: n.wrapping_add(1),
        write_hits: n.wrapping_add(2),
        write_misses: n.wrapping_add(3),
    }
}

/// Everything `md` sees; `clean` says whether its view is a clean one.
fn read_model(md: &CacheMetadata, clean: bool) -> Result<CacheModel, String> {
    let mappings = md
        .mappings()
        .map_err(e2s)?
        .into_iter()
        .map(|(c, m)| (c, (m.oblock, m.dirty)))
        .collect();
    let hints = md.hints().map_err(e2s)?.map(|h| {
        h.iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(c, &v)| (c as u32, v))
            .collect()
    });
    let discards = md
        .discards()
        .map_err(e2s)?
        .iter()
        .enumerate()
        .filter(|(_, &d)| d)
        .map(|(b, _)| b as u64)
        .collect();
    let s = md.stats();
    Ok(CacheModel {
        version: md.version(),
        nr_cache_blocks: md.nr_cache_blocks(),
        mappings,
        hints,
        discard_geometry: md.discard_geometry(),
        discards,
        stats: [s.read_hits, s.read_misses, s.write_hits, s.write_misses],
        clean,
    })
}

/// The session's hint table once it is touched: the trusted hints, or zeros.
fn hint_table(model: &mut CacheModel) -> &mut BTreeMap<u32, u32> {
    model.hints.get_or_insert_with(BTreeMap::new)
}

impl Cache {
    fn open_handle(&self, dev: Arc<dyn BlockDevice>) -> Result<CacheMetadata, String> {
        CacheMetadata::open_with_cache(dev, true, CACHE_BLOCKS).map_err(e2s)
    }

    /// What a clean commit makes durable of the session's view.
    fn clean_target(&self, model: &CacheModel) -> CacheModel {
        let mut m = model.clone();
        // Untrusted hints are written as zeros.
        hint_table(&mut m);
        m.clean = true;
        m
    }
}

impl Client for Cache {
    type Op = Op;
    type Gen = GenModel;
    type Model = CacheModel;
    type Handle = CacheMetadata;
    const DEVICE_BLOCKS: u64 = DEVICE_BLOCKS;

    fn gen_start(&self) -> GenModel {
        GenModel::default()
    }

    fn gen_step(&self, rng: &mut Rng, g: &GenModel, _grown: &mut u32) -> Option<Step<Op>> {
        let nr = g.nr_cache_blocks;
        if nr == 0 {
            // The kernel sizes a new cache when it first activates it.
            return Some(Step::Op(Op::Resize(NR_CACHE_BLOCKS)));
        }
        let mapped = |rng: &mut Rng| rng.pick(g.by_cblock.keys().copied());
        // Insert, Remove, SetDirty, Hint, DiscardSize, Discard, Resize,
        // Stats, CommitClean, Abort, Reopen.
        const W: [u32; 11] = [30, 8, 20, 10, 2, 8, 4, 3, 4, 2, 2];
        let op = match rng.weighted(&W) {
            0 => {
                let n = rng.range(1, 16) as u32;
                let cblock = rng.below(u64::from(nr - n.min(nr))) as u32;
                let n = n.min(nr - cblock);
                let oblock = rng.below(OBLOCKS - u64::from(n));
                // Each origin block unmapped, or mapped by the block taking it.
                let free = (0..n).all(|i| match g.by_oblock.get(&(oblock + u64::from(i))) {
                    None => true,
                    Some(&c) => c == cblock + i,
                });
                free.then_some(Op::Insert { cblock, n, oblock })?
            }
            1 => Op::Remove(mapped(rng)?),
            2 => {
                let k = rng.range(1, 8);
                let cblocks: BTreeSet<u32> = (0..k).filter_map(|_| mapped(rng)).collect();
                if cblocks.is_empty() {
                    return None;
                }
                Op::SetDirty {
                    cblocks: cblocks.into_iter().collect(),
                    dirty: rng.chance(0.6),
                }
            }
            3 => Op::Hint {
                cblock: rng.below(u64::from(nr)) as u32,
                value: rng.next_u64() as u32 | 1,
            },
            4 => Op::DiscardSize {
                block_sectors: 1024 << rng.below(3),
                nr_blocks: rng.range(1, 40_000),
            },
            5 => {
                if g.discard_blocks == 0 {
                    return None;
                }
                Op::Discard {
                    block: rng.below(g.discard_blocks),
                    discarded: rng.chance(0.7),
                }
            }
            6 => {
                let n = if rng.chance(0.5) {
                    rng.range(u64::from(nr / 2).max(1), u64::from(nr))
                } else {
                    rng.range(u64::from(nr), u64::from(MAX_CACHE_BLOCKS))
                };
                Op::Resize(n as u32)
            }
            7 => Op::Stats(rng.next_u64() as u32),
            8 => Op::CommitClean,
            9 => return Some(Step::Abort),
            _ => return Some(Step::Reopen),
        };
        Some(Step::Op(op))
    }

    fn gen_apply(&self, g: &mut GenModel, committed: &mut GenModel, op: &Op) {
        match op {
            Op::Insert { cblock, n, oblock } => {
                for i in 0..*n {
                    g.map(cblock + i, oblock + u64::from(i));
                }
            }
            Op::Remove(c) => g.unmap(*c),
            Op::DiscardSize { nr_blocks, .. } => g.discard_blocks = *nr_blocks,
            Op::Resize(n) => {
                let gone: Vec<u32> = g.by_cblock.range(n..).map(|(c, _)| *c).collect();
                for c in gone {
                    g.unmap(c);
                }
                g.nr_cache_blocks = *n;
            }
            Op::CommitClean => *committed = g.clone(),
            Op::SetDirty { .. } | Op::Hint { .. } | Op::Discard { .. } | Op::Stats(_) => {}
        }
    }

    fn formatted(&self) -> CacheModel {
        CacheModel {
            version: self.version,
            nr_cache_blocks: 0,
            mappings: BTreeMap::new(),
            hints: None,
            discard_geometry: (0, 0),
            discards: BTreeSet::new(),
            stats: [0; 4],
            clean: false,
        }
    }

    fn format(&self, dev: Arc<dyn BlockDevice>) -> Result<CacheMetadata, String> {
        let md = CacheMetadata::format(
            dev.clone(),
            self.version,
            BLOCK_SECTORS,
            0,
            &Policy::smq(),
            false,
        )
        .map_err(e2s)?;
        // Format commits twice (an empty cache, then the policy), both
        // times without CLEAN_SHUTDOWN, so reopening writes nothing; the
        // handle gets the small cache.
        drop(md);
        self.open_handle(dev)
    }

    fn open(&self, dev: Arc<dyn BlockDevice>) -> Result<CacheMetadata, String> {
        self.open_handle(dev)
    }

    fn recovered(&self, committed: &CacheModel) -> CacheModel {
        if committed.clean {
            committed.clone()
        } else {
            committed.unclean_view()
        }
    }

    fn opened(&self, committed: &mut CacheModel) {
        committed.clean = false;
    }

    fn enable_mutation(&self, md: &mut CacheMetadata) {
        md.enable_seed_bug_mutation();
    }

    fn apply(
        &self,
        md: &mut CacheMetadata,
        model: &mut CacheModel,
        committed: &mut CacheModel,
        op: &Op,
    ) -> Result<(), String> {
        match op {
            Op::Insert { cblock, n, oblock } => {
                for i in 0..*n {
                    let (c, o) = (cblock + i, oblock + u64::from(i));
                    md.insert(u64::from(c), o).map_err(e2s)?;
                    model.mappings.insert(c, (o, false));
                }
            }
            Op::Remove(c) => {
                md.remove(u64::from(*c)).map_err(e2s)?;
                model.mappings.remove(c);
            }
            Op::SetDirty { cblocks, dirty } => {
                for &c in cblocks {
                    md.set_dirty(u64::from(c), *dirty).map_err(e2s)?;
                    let m = model
                        .mappings
                        .get_mut(&c)
                        .ok_or("script error: dirtying an unmapped block")?;
                    m.1 = *dirty;
                }
            }
            Op::Hint { cblock, value } => {
                md.set_hint(u64::from(*cblock), *value).map_err(e2s)?;
                hint_table(model).insert(*cblock, *value);
            }
            Op::DiscardSize {
                block_sectors,
                nr_blocks,
            } => {
                md.discard_size(*block_sectors, *nr_blocks).map_err(e2s)?;
                model.discard_geometry = (*block_sectors, *nr_blocks);
                model.discards.retain(|&b| b < *nr_blocks);
            }
            Op::Discard { block, discarded } => {
                md.set_discard(*block, *discarded).map_err(e2s)?;
                if *discarded {
                    model.discards.insert(*block);
                } else {
                    model.discards.remove(block);
                }
            }
            Op::Resize(n) => {
                let gone: Vec<u32> = model.mappings.range(n..).map(|(c, _)| *c).collect();
                for c in gone {
                    md.remove(u64::from(c)).map_err(e2s)?;
                    model.mappings.remove(&c);
                }
                md.resize(*n).map_err(e2s)?;
                // The hint table is rebuilt at the new size (new blocks 0).
                hint_table(model).retain(|&c, _| c < *n);
                model.nr_cache_blocks = *n;
            }
            Op::Stats(n) => {
                md.set_stats(stats_of(*n)).map_err(e2s)?;
                let s = stats_of(*n);
                model.stats = [s.read_hits, s.read_misses, s.write_hits, s.write_misses];
            }
            Op::CommitClean => {
                md.commit(true).map_err(e2s)?;
                *model = self.clean_target(model);
                *committed = model.clone();
            }
        }
        Ok(())
    }

    fn next_transaction(&self, model: &CacheModel) -> CacheModel {
        CacheModel {
            clean: false,
            ..model.clone()
        }
    }

    fn op_commit_target(&self, op: &Op, model: &CacheModel) -> Option<CacheModel> {
        matches!(op, Op::CommitClean).then(|| self.clean_target(model))
    }

    fn commit(&self, md: &mut CacheMetadata, model: &mut CacheModel) -> Result<(), String> {
        md.commit(false).map_err(e2s)?;
        model.clean = false;
        Ok(())
    }

    fn abort(&self, md: &mut CacheMetadata) -> Result<(), String> {
        md.abort().map_err(e2s)
    }

    fn read_handle(&self, md: &mut CacheMetadata) -> Result<CacheModel, String> {
        let clean = md.clean_when_opened();
        read_model(md, clean)
    }

    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<CacheModel, String> {
        cache::audit::audit(dev.clone()).map_err(|e| format!("audit: {e}"))?;
        let md = CacheMetadata::open(dev, false).map_err(|e| format!("open: {e}"))?;
        if md.needs_check() {
            return Err("the superblock asks for a check".into());
        }
        read_model(&md, md.clean_when_opened())
    }

    fn extra(&self, md: &mut CacheMetadata, model: &mut CacheModel) -> Result<(), String> {
        if model.nr_cache_blocks == 0 {
            md.resize(1).map_err(e2s)?;
            model.nr_cache_blocks = 1;
            hint_table(model);
        }
        let c = (0..model.nr_cache_blocks)
            .find(|c| !model.mappings.contains_key(c))
            .unwrap_or(0);
        let o = EXTRA_OBLOCK + u64::from(c);
        md.insert(u64::from(c), o).map_err(e2s)?;
        md.set_dirty(u64::from(c), true).map_err(e2s)?;
        model.mappings.insert(c, (o, true));
        Ok(())
    }

    fn summary(&self, m: &CacheModel) -> String {
        format!(
            "v{} {}: {} cache blocks, {} mapped ({} dirty), {}, {} of {} discard blocks discarded, stats {:?}",
            m.version,
            if m.clean { "clean" } else { "unclean" },
            m.nr_cache_blocks,
            m.mappings.len(),
            m.nr_dirty(),
            match &m.hints {
                Some(h) => format!("{} hints set", h.len()),
                None => "no hints".into(),
            },
            m.discards.len(),
            m.discard_geometry.1,
            m.stats
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::check_script;

    #[test]
    fn script_runs_and_matches_the_model() {
        for version in [1, 2] {
            for seed in 1..4 {
                check_script(&Scripted::new(Cache { version }, seed, 12, 8));
            }
        }
    }

    #[test]
    fn unclean_views_compare_equal() {
        let c = Cache { version: 2 };
        let mut a = c.formatted();
        a.mappings.insert(3, (7, false));
        a.hints = Some(BTreeMap::from([(3, 9)]));
        let mut b = a.clone();
        b.mappings.insert(3, (7, true));
        b.hints = None;
        assert_eq!(a, b);
        a.clean = true;
        b.clean = true;
        assert_ne!(a, b);
    }
}
