//! The dm-era workload: a seeded script of era target operations (writes,
//! checkpoints, digests whole and step by step, metadata snapshots, resizes,
//! aborts and reopenings) against a model of the era each origin block was
//! last written in. A disk is read back by folding, as a digest would, the
//! era array, the archived writesets and the current writeset: digests
//! change the layout, never the answer.

use crate::rng::Rng;
use crate::script::{e2s, Client, Scripted, Step};
use era::check::{check, CheckOptions};
use era::{EraMetadata, EraView};
use pdata::block_manager::BlockRead;
use pdata::io::BlockDevice;
use pdata::live::LiveMetadata;
use pdata::progress::NoProgress;
use std::sync::Arc;

/// A small cache, so dirty blocks are evicted (written back) mid-transaction.
const CACHE_BLOCKS: usize = 64;
/// Metadata device size (2 MiB).
pub const DEVICE_BLOCKS: u64 = 512;
/// Origin blocks at format time (the era array spans several blocks).
pub const NR_BLOCKS: u32 = 3000;
const BLOCK_SECTORS: u32 = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EraState {
    pub era: u32,
    /// The era each block was last written in (0: never).
    pub last: Vec<u32>,
    /// The metadata snapshot's `last`, if one is held.
    pub snapshot: Option<Vec<u32>>,
}

#[derive(Clone, Debug)]
pub enum Op {
    Write { begin: u64, end: u64 },
    Checkpoint,
    Digest(u64),
    DigestStep,
    TakeSnap,
    DropSnap,
    Resize(u32),
}

#[derive(Clone)]
pub struct GenModel {
    nr_blocks: u32,
    snap: bool,
}

/// The workload: the era client and its script.
pub type EraWorkload = Scripted<Era>;

/// The era client.
pub struct Era;

/// The fold of `view`: era array, then archived writesets by era, then the
/// current writeset (in `current_era`).
fn fold(r: &impl BlockRead, view: &EraView) -> Result<Vec<u32>, String> {
    let mut last = view.era_array(r).map_err(e2s)?;
    let limit = u64::from(view.nr_blocks);
    let mut sets = view.writesets(r).map_err(e2s)?;
    sets.extend(view.current_writeset.map(|ws| (view.current_era, ws)));
    for (era, ws) in sets {
        for run in view.writeset_runs(r, &ws, limit).map_err(e2s)? {
            for b in run {
                last[b as usize] = era;
            }
        }
    }
    Ok(last)
}

fn read_state(md: &EraMetadata) -> Result<EraState, String> {
    let tm = md.transaction_manager();
    let last = fold(tm, &md.view())?;
    let snapshot = match md.snapshot_view().map_err(e2s)? {
        Some(v) => Some(fold(tm, &v)?),
        None => None,
    };
    Ok(EraState {
        era: md.current_era(),
        last,
        snapshot,
    })
}

impl Client for Era {
    type Op = Op;
    type Gen = GenModel;
    type Model = EraState;
    type Handle = EraMetadata;
    const DEVICE_BLOCKS: u64 = DEVICE_BLOCKS;

    fn gen_start(&self) -> GenModel {
        GenModel {
            nr_blocks: NR_BLOCKS,
            snap: false,
        }
    }

    fn gen_step(&self, rng: &mut Rng, g: &GenModel, grown: &mut u32) -> Option<Step<Op>> {
        // Write, Checkpoint, Digest, DigestStep, snapshot, Resize, Abort, Reopen.
        const W: [u32; 8] = [40, 8, 5, 5, 3, 2, 1, 1];
        let n = u64::from(g.nr_blocks);
        let op = match rng.weighted(&W) {
            0 => {
                let begin = rng.below(n);
                let len = if rng.chance(0.2) {
                    rng.range(1, 400)
                } else {
                    1
                };
                Op::Write {
                    begin,
                    end: (begin + len).min(n),
                }
            }
            1 => Op::Checkpoint,
            2 => Op::Digest(rng.range(1, 3)),
            3 => Op::DigestStep,
            4 if g.snap => Op::DropSnap,
            4 => Op::TakeSnap,
            5 => {
                if *grown >= 2 {
                    return None;
                }
                *grown += 1;
                Op::Resize(g.nr_blocks + rng.range(1, 2000) as u32)
            }
            6 => return Some(Step::Abort),
            _ => return Some(Step::Reopen),
        };
        Some(Step::Op(op))
    }

    fn gen_apply(&self, g: &mut GenModel, committed: &mut GenModel, op: &Op) {
        match op {
            Op::TakeSnap => {
                *committed = g.clone();
                g.snap = true;
            }
            Op::DropSnap => g.snap = false,
            Op::Resize(n) => g.nr_blocks = *n,
            _ => {}
        }
    }

    fn formatted(&self) -> EraState {
        EraState {
            era: 1,
            last: vec![0; NR_BLOCKS as usize],
            snapshot: None,
        }
    }

    fn format(&self, dev: Arc<dyn BlockDevice>) -> Result<EraMetadata, String> {
        EraMetadata::format(dev.clone(), NR_BLOCKS, BLOCK_SECTORS, false).map_err(e2s)?;
        self.open(dev)
    }

    fn open(&self, dev: Arc<dyn BlockDevice>) -> Result<EraMetadata, String> {
        EraMetadata::open_with_cache(dev, true, CACHE_BLOCKS).map_err(e2s)
    }

    fn enable_mutation(&self, md: &mut EraMetadata) {
        md.enable_seed_bug_mutation();
    }

    fn apply(
        &self,
        md: &mut EraMetadata,
        model: &mut EraState,
        committed: &mut EraState,
        op: &Op,
    ) -> Result<(), String> {
        match *op {
            Op::Write { begin, end } => {
                md.write_range(begin, end).map_err(e2s)?;
                for b in begin..end {
                    model.last[b as usize] = model.era;
                }
            }
            Op::Checkpoint => {
                md.checkpoint().map_err(e2s)?;
                model.era += 1;
            }
            Op::Digest(n) => {
                md.digest(n).map_err(e2s)?;
            }
            Op::DigestStep => {
                md.digest_step().map_err(e2s)?;
            }
            Op::TakeSnap => {
                // The rollover is committed first; the snapshot itself is
                // durable at the next commit.
                md.take_metadata_snap().map_err(e2s)?;
                model.era += 1;
                *committed = model.clone();
                model.snapshot = Some(model.last.clone());
            }
            Op::DropSnap => {
                md.drop_metadata_snap().map_err(e2s)?;
                model.snapshot = None;
            }
            Op::Resize(n) => {
                md.resize(n).map_err(e2s)?;
                model.last.resize(n as usize, 0);
                model.era += 1;
            }
        }
        Ok(())
    }

    fn next_transaction(&self, model: &EraState) -> EraState {
        model.clone()
    }

    fn op_commit_target(&self, op: &Op, model: &EraState) -> Option<EraState> {
        matches!(op, Op::TakeSnap).then(|| EraState {
            era: model.era + 1,
            ..model.clone()
        })
    }

    fn commit(&self, md: &mut EraMetadata, _model: &mut EraState) -> Result<(), String> {
        md.commit().map_err(e2s)
    }

    fn abort(&self, md: &mut EraMetadata) -> Result<(), String> {
        md.abort().map_err(e2s)
    }

    fn read_handle(&self, md: &mut EraMetadata) -> Result<EraState, String> {
        read_state(md)
    }

    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<EraState, String> {
        let report = check(dev.as_ref(), &CheckOptions::default(), &NoProgress);
        if !report.errors.is_empty() {
            let n = report.errors.len();
            let first: Vec<&str> = report.errors.iter().take(3).map(|s| s.as_str()).collect();
            return Err(format!("check: {n} errors: {}", first.join("; ")));
        }
        if !report.leaks.is_empty() {
            let n = report.leaks.len();
            return Err(format!("check: {n} leaks: {}", report.leaks[0]));
        }
        let md = EraMetadata::open(dev, false).map_err(|e| format!("open: {e}"))?;
        read_state(&md)
    }

    fn extra(&self, md: &mut EraMetadata, model: &mut EraState) -> Result<(), String> {
        md.checkpoint().map_err(e2s)?;
        model.era += 1;
        md.write(0).map_err(e2s)?;
        model.last[0] = model.era;
        Ok(())
    }

    fn summary(&self, s: &EraState) -> String {
        let written = s.last.iter().filter(|&&e| e != 0).count();
        format!(
            "era {}: {} of {} blocks written{}",
            s.era,
            written,
            s.last.len(),
            match &s.snapshot {
                Some(l) => format!(
                    ", metadata snapshot of {} written",
                    l.iter().filter(|&&e| e != 0).count()
                ),
                None => String::new(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::check_script;

    #[test]
    fn script_runs_and_matches_the_model() {
        for seed in 1..=4 {
            let last = check_script(&Scripted::new(Era, seed, 12, 8));
            assert!(last.era > 1);
        }
    }
}
