//! dm-log-writes logs, for the kernel log-writes test: parsing the log,
//! replaying it onto a zeroed metadata image (the flush intervals and the
//! commits), and the crash images drawn from it (subsets of the writes in
//! flight, torn writes).

use super::damage::le64;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use torture::rng::Rng;

pub const META_BLOCK: usize = 4096;
/// 128 metadata blocks: small enough for the kernel to reuse freed blocks.
pub const META_BYTES: usize = 512 << 10;
/// Proper subsets of the writes in flight tried per flush interval: all of
/// them when there are few enough, otherwise each write alone, all writes
/// but one, and random ones, up to this many.
const SUBSETS_PER_INTERVAL: usize = 32;
/// Torn-write images per flush interval.
const TORN_PER_INTERVAL: usize = 4;

// ---------------------------------------------------------------- the log

pub const LOG_MAGIC: u64 = 0x006a_7366_7773_6872;
pub const LOG_VERSION: u64 = 1;
pub const F_FLUSH: u64 = 1 << 0;
pub const F_FUA: u64 = 1 << 1;
pub const F_DISCARD: u64 = 1 << 2;
pub const F_MARK: u64 = 1 << 3;

/// One thing the log says happened to the metadata device, in log order.
#[derive(Clone, Debug)]
pub enum Event {
    /// `data` landed at byte `off`; `fua`: durable once logged.
    Write {
        off: u64,
        data: Vec<u8>,
        fua: bool,
    },
    /// Bytes `off..off + len` discarded (replayed as zeroes).
    Discard {
        off: u64,
        len: u64,
    },
    /// Everything logged before is durable.
    Flush,
    Mark(String),
}

/// Parses a dm-log-writes log: a super block (magic, version, number of
/// entries, sector size) in the first sector, then per entry a header sector
/// (sector, nr_sectors, flags, data_len; a mark's name follows the header)
/// and, unless it is a discard, nr_sectors sectors of written data.
/// Sectors and counts are in the device's sector size.
pub fn parse_log(log: &[u8]) -> Result<(u64, Vec<Event>), String> {
    if log.len() < 28 {
        return Err("log shorter than its super block".into());
    }
    let magic = le64(log, 0);
    let version = le64(log, 8);
    let nr = le64(log, 16);
    let ss = u32::from_le_bytes(log[24..28].try_into().unwrap()) as u64;
    if magic != LOG_MAGIC {
        return Err(format!("bad log magic {magic:#x}"));
    }
    if version != LOG_VERSION {
        return Err(format!("log version {version}, want {LOG_VERSION}"));
    }
    if !(512..=65536).contains(&ss) || !ss.is_power_of_two() {
        return Err(format!("bad log sector size {ss}"));
    }
    let mut events = vec![];
    let mut pos = ss;
    for i in 0..nr {
        let need = |from: u64, len: u64| -> Result<(), String> {
            if from
                .checked_add(len)
                .is_none_or(|end| end > log.len() as u64)
            {
                Err(format!(
                    "log entry {i} of {nr} runs past the end of the log ({} bytes)",
                    log.len()
                ))
            } else {
                Ok(())
            }
        };
        need(pos, ss)?;
        let h = &log[pos as usize..(pos + ss) as usize];
        let (sector, nr_sectors, flags, data_len) =
            (le64(h, 0), le64(h, 8), le64(h, 16), le64(h, 24));
        pos += ss;
        if flags & F_MARK != 0 {
            if data_len > ss - 32 {
                return Err(format!("log entry {i}: mark of {data_len} bytes"));
            }
            let name = &h[32..32 + data_len as usize];
            events.push(Event::Mark(String::from_utf8_lossy(name).into_owned()));
            continue;
        }
        let len = nr_sectors
            .checked_mul(ss)
            .ok_or_else(|| format!("log entry {i}: {nr_sectors} sectors"))?;
        if flags & F_FLUSH != 0 {
            // a flush with data: what came before is durable, then the write
            events.push(Event::Flush);
        }
        if flags & F_DISCARD != 0 {
            events.push(Event::Discard {
                off: sector * ss,
                len,
            });
        } else if len > 0 {
            need(pos, len)?;
            events.push(Event::Write {
                off: sector * ss,
                data: log[pos as usize..(pos + len) as usize].to_vec(),
                fua: flags & F_FUA != 0,
            });
            pos += len;
        }
    }
    Ok((ss, events))
}

// ---------------------------------------------------------------- replay

/// A write in flight between two flushes.
#[derive(Clone, Debug)]
pub struct Op {
    pub off: usize,
    /// None: a discard of `len` bytes
    pub data: Option<Vec<u8>>,
    pub len: usize,
    pub fua: bool,
    /// position in the event list, for messages
    pub event: usize,
}

impl Op {
    pub fn apply(&self, img: &mut [u8]) {
        self.apply_sectors(img, None);
    }

    /// Applies the op, or with `keep` only the 512-byte sectors it names.
    pub fn apply_sectors(&self, img: &mut [u8], keep: Option<&[bool]>) {
        for s in 0..self.len.div_ceil(512) {
            if keep.is_some_and(|k| !k[s]) {
                continue;
            }
            let from = s * 512;
            let to = (from + 512).min(self.len);
            let dst = &mut img[self.off + from..self.off + to];
            match &self.data {
                Some(d) => dst.copy_from_slice(&d[from..to]),
                None => dst.fill(0),
            }
        }
    }

    pub fn touches_superblock(&self) -> bool {
        self.off < META_BLOCK
    }
}

/// The writes logged between two flushes, over the image the first flush
/// left (or the zeroed device, or whatever preceded the end of the log).
pub struct Interval {
    pub base: Vec<u8>,
    pub ops: Vec<Op>,
    /// the last mark logged before the interval
    pub after_mark: String,
    pub ends_with_flush: bool,
}

/// A state the kernel committed: the metadata as it was when a superblock
/// write was logged (all writes before it were flushed by then).
pub struct Commit {
    pub superblock: Vec<u8>,
    pub image: Vec<u8>,
    pub event: usize,
}

pub struct Replay {
    pub intervals: Vec<Interval>,
    pub commits: Vec<Commit>,
    /// (mark, index in `commits` of the last commit logged before it)
    pub marks: Vec<(String, Option<usize>)>,
    /// everything replayed in log order
    pub last: Vec<u8>,
    pub counts: BTreeMap<&'static str, usize>,
}

pub fn replay(events: &[Event]) -> Replay {
    let mut durable = vec![0u8; META_BYTES];
    let mut prefix = vec![0u8; META_BYTES];
    let mut ops: Vec<Op> = vec![];
    let mut r = Replay {
        intervals: vec![],
        commits: vec![],
        marks: vec![],
        last: vec![],
        counts: BTreeMap::new(),
    };
    let mut last_mark = "(none)".to_string();
    for (i, ev) in events.iter().enumerate() {
        let op = match ev {
            Event::Write { off, data, fua } => {
                *r.counts
                    .entry(if *fua { "fua writes" } else { "writes" })
                    .or_default() += 1;
                Op {
                    off: *off as usize,
                    len: data.len(),
                    data: Some(data.clone()),
                    fua: *fua,
                    event: i,
                }
            }
            Event::Discard { off, len } => {
                *r.counts.entry("discards").or_default() += 1;
                Op {
                    off: *off as usize,
                    len: *len as usize,
                    data: None,
                    fua: false,
                    event: i,
                }
            }
            Event::Flush => {
                *r.counts.entry("flushes").or_default() += 1;
                let iv = Interval {
                    base: durable.clone(),
                    ops: std::mem::take(&mut ops),
                    after_mark: last_mark.clone(),
                    ends_with_flush: true,
                };
                for op in &iv.ops {
                    op.apply(&mut durable);
                }
                assert!(
                    durable == prefix,
                    "replay: the image at flush (event {i}) is not the log-order replay"
                );
                r.intervals.push(iv);
                continue;
            }
            Event::Mark(name) => {
                *r.counts.entry("marks").or_default() += 1;
                r.marks.push((name.clone(), r.commits.len().checked_sub(1)));
                last_mark = name.clone();
                continue;
            }
        };
        assert!(
            op.off + op.len <= META_BYTES,
            "log event {i} writes bytes {}..{} of a {META_BYTES}-byte metadata device",
            op.off,
            op.off + op.len
        );
        op.apply(&mut prefix);
        if op.touches_superblock() {
            assert!(
                op.off == 0 && op.len >= META_BLOCK && op.data.is_some(),
                "log event {i}: a write of bytes {}..{} covers part of the superblock only",
                op.off,
                op.off + op.len
            );
            *r.counts.entry("superblock writes").or_default() += 1;
            r.commits.push(Commit {
                superblock: prefix[..META_BLOCK].to_vec(),
                image: prefix.clone(),
                event: i,
            });
        }
        ops.push(op);
    }
    if !ops.is_empty() {
        r.intervals.push(Interval {
            base: durable,
            ops,
            after_mark: last_mark,
            ends_with_flush: false,
        });
    }
    r.last = prefix;
    r
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// all writes up to a flush (or the end of the log)
    FlushPoint,
    /// a proper subset of the writes in flight
    Subset,
    /// a subset plus one write of which only some sectors landed
    Torn,
}

/// A crash image to build: interval `interval`'s base plus the ops named.
pub struct Spec {
    pub interval: usize,
    pub kind: Kind,
    pub ops: Vec<usize>,
    pub torn: Option<(usize, Vec<bool>)>,
}

/// Subset of ops from a bit mask, closed so that a FUA write is kept only
/// with the FUA writes logged before it (FUA writes land in order).
pub fn subset_from_mask(ops: &[Op], mask: &[bool]) -> Vec<usize> {
    let last_fua = (0..ops.len()).rev().find(|&i| ops[i].fua && mask[i]);
    (0..ops.len())
        .filter(|&i| mask[i] || (ops[i].fua && last_fua.is_some_and(|l| i < l)))
        .collect()
}

pub fn crash_specs(intervals: &[Interval], rng: &mut Rng) -> Vec<Spec> {
    let mut specs = vec![];
    for (iv_no, iv) in intervals.iter().enumerate() {
        let n = iv.ops.len();
        specs.push(Spec {
            interval: iv_no,
            kind: Kind::FlushPoint,
            ops: (0..n).collect(),
            torn: None,
        });
        if n >= 2 {
            let mut seen: HashSet<Vec<usize>> = HashSet::new();
            seen.insert(vec![]);
            seen.insert((0..n).collect());
            let masks: Vec<Vec<bool>> = if n < 20 && (1usize << n) - 2 <= SUBSETS_PER_INTERVAL {
                (1..(1usize << n) - 1)
                    .map(|m| (0..n).map(|b| m >> b & 1 == 1).collect())
                    .collect()
            } else {
                let mut v: Vec<Vec<bool>> = vec![];
                for one in 0..n {
                    v.push((0..n).map(|b| b == one).collect());
                    v.push((0..n).map(|b| b != one).collect());
                }
                for _ in 0..SUBSETS_PER_INTERVAL * 4 {
                    v.push((0..n).map(|_| rng.next_u64() & 1 == 1).collect());
                }
                v
            };
            let mut taken = 0;
            for m in masks {
                if taken >= SUBSETS_PER_INTERVAL {
                    break;
                }
                let s = subset_from_mask(&iv.ops, &m);
                if seen.insert(s.clone()) {
                    taken += 1;
                    specs.push(Spec {
                        interval: iv_no,
                        kind: Kind::Subset,
                        ops: s,
                        torn: None,
                    });
                }
            }
        }
        // torn: ordinary writes of several sectors, never the superblock
        let tearable: Vec<usize> = (0..n)
            .filter(|&i| {
                let op = &iv.ops[i];
                op.data.is_some() && op.len > 512 && !op.touches_superblock() && !op.fua
            })
            .collect();
        for _ in 0..if tearable.is_empty() {
            0
        } else {
            TORN_PER_INTERVAL
        } {
            let t = tearable[rng.below(tearable.len() as u64) as usize];
            let mask: Vec<bool> = (0..n).map(|i| i != t && rng.next_u64() & 1 == 1).collect();
            let s = subset_from_mask(&iv.ops, &mask);
            let sectors = iv.ops[t].len / 512;
            let keep_mask = 1 + rng.below((1u64 << sectors.min(16)) - 2) as usize;
            let keep: Vec<bool> = (0..sectors)
                .map(|b| b < 16 && keep_mask >> b & 1 == 1)
                .collect();
            specs.push(Spec {
                interval: iv_no,
                kind: Kind::Torn,
                ops: s,
                torn: Some((t, keep)),
            });
        }
    }
    specs
}

pub fn build(intervals: &[Interval], spec: &Spec) -> Vec<u8> {
    let iv = &intervals[spec.interval];
    let mut img = iv.base.clone();
    // ops in log order; the torn one takes its place among them
    for (i, op) in iv.ops.iter().enumerate() {
        if spec.ops.contains(&i) {
            op.apply(&mut img);
        } else if let Some((t, keep)) = &spec.torn {
            if *t == i {
                op.apply_sectors(&mut img, Some(keep));
            }
        }
    }
    img
}

pub fn describe(intervals: &[Interval], spec: &Spec) -> String {
    let iv = &intervals[spec.interval];
    let events: Vec<usize> = iv.ops.iter().map(|o| o.event).collect();
    let mut s = format!(
        "{:?} image of interval {} (after mark '{}'; log events {:?}{}): ops {:?} of {}",
        spec.kind,
        spec.interval,
        iv.after_mark,
        events,
        if iv.ends_with_flush {
            ", then a flush"
        } else {
            ", end of log"
        },
        spec.ops,
        iv.ops.len()
    );
    if let Some((t, keep)) = &spec.torn {
        let bits: String = keep.iter().map(|&k| if k { '1' } else { '0' }).collect();
        let op = &iv.ops[*t];
        let _ = write!(
            s,
            ", op {t} (byte {} of the device, event {}) torn: sectors {bits}",
            op.off, op.event
        );
    }
    s
}

pub fn hash_of(img: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    img.hash(&mut h);
    h.finish()
}
