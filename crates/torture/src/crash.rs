//! Crash-state enumeration.
//!
//! A reference run records every write and flush, and notes, as positions in
//! the log, which transactions a crash may show at each moment: the last
//! committed one, plus the one whose commit is in flight. The log splits at
//! the flushes into windows; a crash inside a window leaves every write
//! before the window plus any subset of the window's writes, in any order,
//! each possibly torn. Small windows are enumerated exhaustively; larger
//! ones are sampled with a seeded generator.

use crate::image::{BlockMap, ImageDevice, Log};
use crate::rng::Rng;
use crate::workload::{accepts, add_state, Session, Workload};
use crate::{for_each_parallel, Findings, ProgressFn};
use pdata::io::{BlockDevice, FlakeyDevice, IoCounts, MemoryDevice, RecordingDevice, WHOLE_BLOCK};
use rustc_hash::FxHashSet;
use std::sync::Arc;

/// Windows with at most this many block writes are enumerated exhaustively.
pub const EXHAUSTIVE_LIMIT: usize = 12;
/// Sector masks tried for torn writes in exhaustive windows.
const TORN_MASKS: [u8; 6] = [0x01, 0x0f, 0xf0, 0xfe, 0x80, 0x55];

/// Which states a crash may show, by log position: an entry (p, S) holds
/// from the moment the log had p events until the next entry.
pub struct Timeline<S> {
    entries: Vec<(usize, Vec<S>)>,
}

impl<S: Clone + PartialEq> Default for Timeline<S> {
    fn default() -> Self {
        Timeline {
            entries: Vec::new(),
        }
    }
}

impl<S: Clone + PartialEq> Timeline<S> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, pos: usize, states: Vec<S>) {
        self.entries.push((pos, states));
    }

    /// Every state acceptable for a crash while the log length is in
    /// [from, to].
    pub fn accepted(&self, from: usize, to: usize) -> Vec<S> {
        let mut out = Vec::new();
        if let Some((_, s)) = self.entries.iter().rev().find(|(p, _)| *p < from) {
            for x in s {
                add_state(&mut out, x);
            }
        }
        for (_, s) in self.entries.iter().filter(|(p, _)| (from..=to).contains(p)) {
            for x in s {
                add_state(&mut out, x);
            }
        }
        out
    }
}

/// A clean run of the whole script, recorded.
pub struct Reference<S> {
    pub log: Log,
    pub timeline: Timeline<S>,
    pub counts: IoCounts,
    /// Log position of each write call, in order.
    pub write_positions: Vec<usize>,
}

/// Runs the script once without faults, recording it. Steps that fail,
/// and commits whose result on disk differs from the model, are violations.
pub fn reference_run<W: Workload>(
    w: &W,
    mutation: bool,
    findings: &Findings,
) -> Reference<W::State> {
    let mem = Arc::new(MemoryDevice::new(w.device_blocks()));
    let rec = Arc::new(RecordingDevice::new(mem.clone()));
    let fl = Arc::new(FlakeyDevice::new(rec.clone()));
    let mut timeline = Timeline::new();
    timeline.push(0, vec![w.unformatted(), w.formatted()]);
    let disk_is = |want: &W::State, when: &str| match w.read_disk(mem.clone()) {
        Ok(s) if &s == want => {}
        Ok(s) => findings.add(format!(
            "reference run, {when}: the disk holds {}, the model {}",
            w.summary(&s),
            w.summary(want)
        )),
        Err(e) => findings.add(format!("reference run, {when}: {e}")),
    };
    match w.format(fl.clone(), mutation) {
        Ok(mut s) => {
            timeline.push(rec.len(), vec![s.committed()]);
            disk_is(&s.committed(), "after format");
            for i in 0..w.nr_steps() {
                let target = s.commit_target(i);
                if let Some(t) = &target {
                    timeline.push(rec.len(), vec![s.committed(), t.clone()]);
                }
                if let Err(e) = s.step(i) {
                    findings.add(format!(
                        "reference run: {} failed with no fault injected: {e}",
                        w.describe_step(i)
                    ));
                    break;
                }
                if target.is_some() {
                    timeline.push(rec.len(), vec![s.committed()]);
                    disk_is(&s.committed(), &format!("after {}", w.describe_step(i)));
                }
            }
        }
        Err(e) => findings.add(format!("reference run: format failed: {e}")),
    }
    let events = rec.events();
    let write_positions = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, pdata::io::Event::Write { .. }))
        .map(|(i, _)| i)
        .collect();
    Reference {
        log: Log::new(events, w.device_blocks()),
        timeline,
        counts: fl.counts(),
        write_positions,
    }
}

/// Events between two flushes.
struct Window<S> {
    /// First event of the window and the position of its closing flush
    /// (or the end of the log).
    start: usize,
    end: usize,
    /// Its writes: indices in `log.writes`.
    first_write: usize,
    nr_writes: usize,
    durable: Arc<BlockMap>,
    nr_blocks: u64,
    accepted: Vec<S>,
}

/// One crash state: which of the window's writes landed (indices relative
/// to the window), with their sector masks, in the order they landed.
struct CrashState {
    window: u32,
    chosen: Vec<(u32, u8)>,
}

fn windows<S: Clone + PartialEq>(r: &Reference<S>) -> Vec<Window<S>> {
    let log = &r.log;
    let mut ends = log.flushes();
    if ends.last().is_none_or(|&f| f + 1 < log.events.len()) {
        ends.push(log.events.len());
    }
    let mut out = Vec::new();
    let mut durable = BlockMap::default();
    let mut start = 0;
    for end in ends {
        let first_write = log.write_index(start);
        let last_write = log.write_index(end);
        out.push(Window {
            start,
            end,
            first_write,
            nr_writes: last_write - first_write,
            durable: Arc::new(durable.clone()),
            nr_blocks: log.nr_blocks_at(end),
            accepted: r.timeline.accepted(start, end),
        });
        log.apply(&mut durable, first_write..last_write, &FxHashSet::default());
        start = end + 1;
    }
    out
}

fn exhaustive_count(n: usize) -> usize {
    (1 << n) + 2 * n * TORN_MASKS.len() + n * n / 2
}

fn exhaustive(n: usize, blocks: &[u64], out: &mut Vec<Vec<(u32, u8)>>) {
    for set in 0u32..(1 << n) {
        out.push(
            (0..n as u32)
                .filter(|i| set & (1 << i) != 0)
                .map(|i| (i, WHOLE_BLOCK))
                .collect(),
        );
    }
    // Two writes of one block, the older landing last.
    for j in 0..n {
        for i in 0..j {
            if blocks[i] == blocks[j] {
                out.push(vec![(j as u32, WHOLE_BLOCK), (i as u32, WHOLE_BLOCK)]);
            }
        }
    }
    // Each write torn, alone or with all the others landed.
    for i in 0..n as u32 {
        for &m in &TORN_MASKS {
            out.push(vec![(i, m)]);
            out.push(
                (0..n as u32)
                    .map(|j| (j, if j == i { m } else { WHOLE_BLOCK }))
                    .collect(),
            );
        }
    }
}

fn sample(n: usize, count: usize, rng: &mut Rng, out: &mut Vec<Vec<(u32, u8)>>) {
    let mut seen: FxHashSet<Vec<(u32, u8)>> = FxHashSet::default();
    let mut push = |v: Vec<(u32, u8)>, out: &mut Vec<Vec<(u32, u8)>>| {
        if seen.insert(v.clone()) {
            out.push(v);
        }
    };
    push(Vec::new(), out);
    push((0..n as u32).map(|i| (i, WHOLE_BLOCK)).collect(), out);
    // In-order write-back cut short at evenly spaced points.
    let prefixes = (count / 4).min(n.saturating_sub(1));
    for p in 1..=prefixes {
        let j = p * n / (prefixes + 1);
        push((0..j as u32).map(|i| (i, WHOLE_BLOCK)).collect(), out);
    }
    let want = out.len() + count.saturating_sub(2 + prefixes);
    let mut attempts = 0;
    while out.len() < want && attempts < 4 * count {
        attempts += 1;
        let all: Vec<u32> = (0..n as u32).collect();
        push(random_landing(rng, &all), out);
    }
}

/// A random crash: each write lands with a probability drawn per state,
/// one in ten of those landed is torn, and three states in ten land out of
/// issue order.
pub fn random_landing<T: Copy>(rng: &mut Rng, writes: &[T]) -> Vec<(T, u8)> {
    let p = [0.5, 0.2, 0.8, 0.95][rng.below(4) as usize];
    let mut v = Vec::new();
    for &x in writes {
        if rng.chance(p) {
            let mask = if rng.chance(0.1) {
                rng.range(1, 0xfe) as u8
            } else {
                WHOLE_BLOCK
            };
            v.push((x, mask));
        }
    }
    if rng.chance(0.3) {
        rng.shuffle(&mut v);
    }
    v
}

fn describe(log: &Log, w: &Window<impl Sized>, chosen: &[(u32, u8)]) -> String {
    let mut parts: Vec<String> = chosen
        .iter()
        .take(8)
        .map(|&(i, m)| {
            let b = log.writes[w.first_write + i as usize].block;
            if m == WHOLE_BLOCK {
                format!("#{i}:blk{b}")
            } else {
                format!("#{i}:blk{b}(sectors {m:#04x})")
            }
        })
        .collect();
    if chosen.len() > 8 {
        parts.push(format!("… {} more", chosen.len() - 8));
    }
    format!(
        "events {}..{}, {} of {} in-flight block writes landed [{}]",
        w.start,
        w.end,
        chosen.len(),
        w.nr_writes,
        parts.join(" ")
    )
}

/// What the enumeration covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Coverage {
    /// Crash states checked.
    pub states: u64,
    /// Windows between flushes, and how many were enumerated exhaustively.
    pub windows: usize,
    pub exhaustive_windows: usize,
    /// Most block writes in flight at once.
    pub largest_window: usize,
}

/// Enumerates and checks the crash states of a reference run.
pub fn enumerate<W: Workload>(
    w: &W,
    r: &Reference<W::State>,
    max_states: usize,
    seed: u64,
    threads: usize,
    findings: &Findings,
    progress: &ProgressFn<'_>,
) -> Coverage {
    let wins = windows(r);
    let mut coverage = Coverage {
        windows: wins.len(),
        largest_window: wins.iter().map(|x| x.nr_writes).max().unwrap_or(0),
        ..Coverage::default()
    };
    // Budget: each window gets min(its exhaustive count, cap), with the cap
    // as large as max_states allows; a window under the cap is enumerated
    // exhaustively, the others are sampled `cap` times.
    let demand: Vec<usize> = wins
        .iter()
        .map(|x| {
            if x.nr_writes <= EXHAUSTIVE_LIMIT {
                exhaustive_count(x.nr_writes)
            } else {
                usize::MAX
            }
        })
        .collect();
    let used = |cap: usize| demand.iter().map(|&d| d.min(cap)).sum::<usize>();
    let (mut lo, mut hi) = (2, max_states.max(2));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if used(mid) <= max_states {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let cap = lo;
    let mut rng = Rng::new(seed).fork(0xc4a5);
    let mut states = Vec::new();
    for (wi, win) in wins.iter().enumerate() {
        let n = win.nr_writes;
        let mut chosen = Vec::new();
        if n <= EXHAUSTIVE_LIMIT && exhaustive_count(n) <= cap {
            let blocks: Vec<u64> = (0..n)
                .map(|i| r.log.writes[win.first_write + i].block)
                .collect();
            exhaustive(n, &blocks, &mut chosen);
            coverage.exhaustive_windows += 1;
        } else {
            sample(n, cap, &mut rng, &mut chosen);
        }
        states.extend(chosen.into_iter().map(|c| CrashState {
            window: wi as u32,
            chosen: c,
        }));
    }
    let total = states.len() as u64;
    coverage.states = total;
    for_each_parallel(&states, threads, "crash states", 64, progress, |st| {
        let win = &wins[st.window as usize];
        let dev = ImageDevice::build(
            &r.log,
            &win.durable,
            win.nr_blocks,
            st.chosen
                .iter()
                .map(|&(j, m)| (win.first_write + j as usize, m)),
        );
        let dev: Arc<dyn BlockDevice> = Arc::new(dev);
        match w.read_disk(dev) {
            Ok(s) if accepts(&win.accepted, &s) => {}
            Ok(s) => findings.add(format!(
                "crash state ({}): holds {}, expected {}",
                describe(&r.log, win, &st.chosen),
                w.summary(&s),
                win.accepted
                    .iter()
                    .map(|a| w.summary(a))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
            Err(e) => findings.add(format!(
                "crash state ({}): {e}",
                describe(&r.log, win, &st.chosen)
            )),
        }
    });
    coverage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_unions_the_states_of_an_interval() {
        let mut t = Timeline::new();
        t.push(0, vec![0]);
        t.push(5, vec![0, 1]);
        t.push(9, vec![1]);
        assert_eq!(t.accepted(0, 4), vec![0]);
        assert_eq!(t.accepted(1, 5), vec![0, 1]);
        assert_eq!(t.accepted(6, 8), vec![0, 1]);
        assert_eq!(t.accepted(10, 12), vec![1]);
    }

    #[test]
    fn exhaustive_and_sampled_sets() {
        let mut v = Vec::new();
        exhaustive(3, &[1, 2, 1], &mut v);
        assert_eq!(v.len(), 8 + 1 + 2 * 3 * TORN_MASKS.len());
        let mut s = Vec::new();
        sample(40, 100, &mut Rng::new(1), &mut s);
        assert_eq!(s.len(), 100);
        let distinct: FxHashSet<_> = s.iter().collect();
        assert_eq!(distinct.len(), 100);
    }
}
