//! Property test: random cache operations against an in-memory model, with
//! clean and unclean commits, aborts and reopenings. After every commit a
//! copy of the device is opened read-only and must hold exactly what the
//! model says the next open sees, and every block's reference count must
//! be right (the audit). Each case ends with Debian's cache_check.

mod common;

use cache::{CacheError, CacheMetadata, Mapping, Policy, Stats};
use pdata::io::{BlockDevice, MemoryDevice};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

const META_BLOCKS: u64 = 1024;
const MAX_CBLOCKS: u32 = 1500;
const MAX_OBLOCK: u64 = 2000;

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u64, u32),
    Remove(u64),
    Dirty(u64, bool),
    Hint(u64, u32),
    DiscardSize(u64, u64),
    Discard(u64, bool),
    Resize(u32),
    Stats(u32),
    NeedsCheck,
    ClearNeedsCheck,
    Commit(bool),
    Abort,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let cblock = 0u64..(MAX_CBLOCKS as u64 + 20);
    prop_oneof![
        10 => (cblock.clone(), 0..MAX_OBLOCK, 1u32..40).prop_map(|(c, o, n)| Op::Insert(c, o, n)),
        3 => cblock.clone().prop_map(Op::Remove),
        6 => (cblock.clone(), any::<bool>()).prop_map(|(c, d)| Op::Dirty(c, d)),
        3 => (cblock.clone(), any::<u32>()).prop_map(|(c, v)| Op::Hint(c, v)),
        1 => (prop_oneof![Just(128u64), Just(1024)], 0u64..5000).prop_map(|(s, n)| Op::DiscardSize(s, n)),
        3 => (0u64..5000, any::<bool>()).prop_map(|(b, v)| Op::Discard(b, v)),
        2 => (0u32..MAX_CBLOCKS).prop_map(Op::Resize),
        1 => any::<u32>().prop_map(Op::Stats),
        1 => Just(Op::NeedsCheck),
        1 => Just(Op::ClearNeedsCheck),
        4 => any::<bool>().prop_map(Op::Commit),
        1 => Just(Op::Abort),
        1 => Just(Op::Reopen),
    ]
}

/// What the metadata holds, as the kernel would load it.
#[derive(Clone, Debug, PartialEq)]
struct State {
    nr: u32,
    maps: BTreeMap<u32, Mapping>,
    hints: Option<Vec<u32>>,
    discard_block_size: u64,
    discards: Vec<bool>,
    stats: Stats,
    needs_check: bool,
}

impl State {
    /// What an open sees of this committed state: after an unclean
    /// shutdown every mapped block is dirty, no hints, nothing discarded.
    fn as_opened(&self, clean: bool) -> State {
        let mut s = self.clone();
        if !clean {
            s.maps.values_mut().for_each(|m| m.dirty = true);
            s.hints = None;
            s.discards.iter_mut().for_each(|d| *d = false);
        }
        s
    }

    fn owner_of(&self, oblock: u64) -> Option<u32> {
        self.maps
            .iter()
            .find(|(_, m)| m.oblock == oblock)
            .map(|(c, _)| *c)
    }
}

fn observe(md: &CacheMetadata) -> State {
    State {
        nr: md.nr_cache_blocks(),
        maps: md.mappings().unwrap().into_iter().collect(),
        hints: md.hints().unwrap(),
        discard_block_size: md.discard_geometry().0,
        discards: md.discards().unwrap(),
        stats: md.stats(),
        needs_check: md.needs_check(),
    }
}

fn check_result<T: std::fmt::Debug>(r: Result<T, CacheError>, ok: bool, what: &str) {
    assert_eq!(r.is_ok(), ok, "{what}: {r:?}");
}

fn run(version: u32, nr: u32, ops: Vec<Op>) {
    let dev = Arc::new(MemoryDevice::new(META_BLOCKS));
    let d = || dev.clone() as Arc<dyn BlockDevice>;
    let mut md = CacheMetadata::format(d(), version, 128, nr, &Policy::smq(), false).unwrap();
    let mut cur = State {
        nr,
        maps: BTreeMap::new(),
        hints: Some(vec![0; nr as usize]),
        discard_block_size: 0,
        discards: Vec::new(),
        stats: Stats::default(),
        needs_check: false,
    };
    let mut committed = cur.clone();
    // CLEAN_SHUTDOWN as on disk: format leaves it clear but trusts itself.
    let mut disk_clean = false;
    assert_eq!(observe(&md), cur);
    for op in ops {
        match op {
            Op::Insert(c, o, n) => {
                for i in 0..u64::from(n) {
                    let (c, o) = (c + i, (o + i) % MAX_OBLOCK);
                    let ok = c < u64::from(cur.nr)
                        && cur.owner_of(o).is_none_or(|owner| u64::from(owner) == c);
                    check_result(md.insert(c, o), ok, "insert");
                    if ok {
                        cur.maps.insert(
                            c as u32,
                            Mapping {
                                oblock: o,
                                dirty: false,
                            },
                        );
                    }
                }
            }
            Op::Remove(c) => {
                let ok = c < u64::from(cur.nr) && cur.maps.contains_key(&(c as u32));
                check_result(md.remove(c), ok, "remove");
                if ok {
                    cur.maps.remove(&(c as u32));
                }
            }
            Op::Dirty(c, dirty) => {
                let ok = c < u64::from(cur.nr) && cur.maps.contains_key(&(c as u32));
                check_result(md.set_dirty(c, dirty), ok, "set_dirty");
                if ok {
                    cur.maps.get_mut(&(c as u32)).unwrap().dirty = dirty;
                }
            }
            Op::Hint(c, v) => {
                let ok = c < u64::from(cur.nr);
                check_result(md.set_hint(c, v), ok, "set_hint");
                if ok {
                    let n = cur.nr as usize;
                    cur.hints.get_or_insert_with(|| vec![0; n])[c as usize] = v;
                }
            }
            Op::DiscardSize(size, n) => {
                md.discard_size(size, n).unwrap();
                cur.discard_block_size = size;
                cur.discards.resize(n as usize, false);
            }
            Op::Discard(b, v) => {
                let ok = b < cur.discards.len() as u64;
                check_result(md.set_discard(b, v), ok, "set_discard");
                if ok {
                    cur.discards[b as usize] = v;
                }
            }
            Op::Resize(n) => {
                let dirty_dropped = cur.maps.range(n..).find(|(_, m)| m.dirty).map(|(c, _)| *c);
                let r = md.resize(n);
                match dirty_dropped {
                    Some(c) => assert!(
                        matches!(r, Err(CacheError::DirtyBlock(x)) if x == c),
                        "{r:?}"
                    ),
                    None => {
                        r.unwrap();
                        cur.maps.retain(|c, _| *c < n);
                        // Our format always writes a hint array.
                        let old = cur.nr as usize;
                        let mut h = cur.hints.take().unwrap_or_else(|| vec![0; old]);
                        h.resize(n as usize, 0);
                        cur.hints = Some(h);
                        cur.nr = n;
                    }
                }
            }
            Op::Stats(x) => {
                let s = Stats {
                    read_hits: x,
                    read_misses: x / 2,
                    write_hits: x / 3,
                    write_misses: 7,
                };
                md.set_stats(s).unwrap();
                cur.stats = s;
            }
            Op::NeedsCheck => {
                md.set_needs_check().unwrap();
                cur.needs_check = true;
                committed.needs_check = true;
            }
            Op::ClearNeedsCheck => {
                md.clear_needs_check();
                cur.needs_check = false;
            }
            Op::Commit(clean) => {
                md.commit(clean).unwrap();
                if clean && cur.hints.is_none() {
                    cur.hints = Some(vec![0; cur.nr as usize]);
                }
                committed = cur.clone();
                disk_clean = clean;
                // A copy opened read-only sees the committed state as the
                // next open will.
                let copy = Arc::new(MemoryDevice::from_image(dev.image()));
                common::audit::audit(copy.clone());
                let ro = CacheMetadata::open(copy, false).unwrap();
                assert_eq!(ro.clean_when_opened(), clean);
                assert_eq!(observe(&ro), committed.as_opened(clean), "reopened copy");
            }
            Op::Abort => {
                md.abort().unwrap();
                cur = committed.as_opened(disk_clean);
            }
            Op::Reopen => {
                drop(md);
                md = CacheMetadata::open(d(), true).unwrap();
                cur = committed.as_opened(disk_clean);
                disk_clean = false;
            }
        }
        assert_eq!(observe(&md), cur, "after {op:?}");
    }
    md.commit(true).unwrap();
    common::audit::audit(dev.clone());
    // Debian's 0.9.0 cache_check refuses empty arrays ("missing mappings
    // [1, 0]"), which the kernel writes for a cache of no blocks: only a
    // cache with blocks goes to it.
    if md.nr_cache_blocks() > 0 {
        debian_check(&dev);
    }
}

fn debian_check(dev: &MemoryDevice) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.img");
    std::fs::write(&path, dev.image()).unwrap();
    let o = std::process::Command::new("/usr/sbin/cache_check")
        .arg(&path)
        .output()
        .expect("cache_check runs");
    assert!(
        o.status.success(),
        "cache_check: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn model(
        version in 1u32..=2,
        nr in 0u32..MAX_CBLOCKS,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(version, nr, ops);
    }
}
