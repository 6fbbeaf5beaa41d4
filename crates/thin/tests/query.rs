//! The read-side queries against brute force over `mappings()`, on random
//! pools whose snapshots share sub-trees and data blocks.

use pdata::io::{BlockDevice, MemoryDevice};
use pdata::live::LiveMetadata;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use thin::query::cursor::{Run, RunCursor};
use thin::query::free_space::{first_mapped_free, free_ranges};
use thin::query::rmap::{rmap, RmapRun, Sharers};
use thin::query::usage::{exclusive_mappings, highest_mapped};
use thin::query::{device_root, device_roots};
use thin::ThinMetadata;

const DATA_BLOCKS: u64 = 4000;
const DEVS: u64 = 5;

#[derive(Debug, Clone)]
enum Op {
    CreateThin(u64),
    CreateSnap(u64, u64),
    Delete(u64),
    /// Provision `n` blocks from `v` on.
    Provision(u64, u64, u64),
    /// Map (dev, v) to whatever (dev2, v2) maps.
    Share(u64, u64, u64, u64),
    RemoveRange(u64, u64, u64),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    let dev = 0..DEVS;
    let v = 0u64..1200;
    prop_oneof![
        2 => dev.clone().prop_map(Op::CreateThin),
        3 => (dev.clone(), dev.clone()).prop_map(|(a, b)| Op::CreateSnap(a, b)),
        1 => dev.clone().prop_map(Op::Delete),
        6 => (dev.clone(), v.clone(), 1u64..300).prop_map(|(d, v, n)| Op::Provision(d, v, n)),
        3 => (dev.clone(), v.clone(), dev.clone(), v.clone()).prop_map(|(a, b, c, d)| Op::Share(a, b, c, d)),
        1 => (dev.clone(), v.clone(), 1u64..400).prop_map(|(d, v, n)| Op::RemoveRange(d, v, n)),
        2 => Just(Op::Commit),
    ]
}

/// Applies the ops; errors (missing devices, full pool) are skipped.
fn build(ops: &[Op]) -> ThinMetadata {
    let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(2048));
    let mut md = ThinMetadata::format(dev, 128, DATA_BLOCKS, false).unwrap();
    for op in ops {
        let _ = match *op {
            Op::CreateThin(d) => md.create_thin(d),
            Op::CreateSnap(d, o) => md.create_snap(d, o),
            Op::Delete(d) => md.delete(d),
            Op::Provision(d, v, n) => (v..v + n).try_for_each(|b| md.provision(d, b).map(|_| ())),
            Op::Share(d, v, d2, v2) => match md.lookup(d2, v2) {
                Ok(Some((b, _))) => md.insert(d, v, b),
                _ => Ok(()),
            },
            Op::RemoveRange(d, v, n) => md.remove_range(d, v, v + n).map(|_| ()),
            Op::Commit => md.commit(),
        };
        if md.transaction_manager().poisoned().is_some() {
            md.abort().unwrap();
        }
    }
    md.commit().unwrap();
    md
}

fn all_mappings(md: &mut ThinMetadata) -> BTreeMap<u64, Vec<(u64, u64)>> {
    md.devices()
        .unwrap()
        .into_iter()
        .map(|d| {
            let m = md.mappings(d).unwrap();
            (d, m.into_iter().map(|(t, b, _)| (t, b)).collect())
        })
        .collect()
}

fn runs_of(m: &[(u64, u64)]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for &(t, d) in m {
        match out.last_mut() {
            Some(r) if r.thin_begin + r.len == t && r.data_begin + r.len == d => r.len += 1,
            _ => out.push(Run {
                thin_begin: t,
                data_begin: d,
                len: 1,
            }),
        }
    }
    out
}

fn check_queries(md: &mut ThinMetadata) {
    let maps = all_mappings(md);
    let sb = md.superblock().clone();
    let nr_data = md.nr_data_blocks();
    let mut refs: BTreeMap<u64, u64> = BTreeMap::new();
    for m in maps.values() {
        for &(_, b) in m {
            *refs.entry(b).or_default() += 1;
        }
    }
    let free: Vec<u64> = (0..nr_data)
        .filter(|&b| md.data_ref_count(b).unwrap() == 0)
        .collect();
    let tm = md.transaction_manager();

    // Runs and highest block of each device.
    for (&d, m) in &maps {
        let root = device_root(tm, sb.data_mapping_root, d).unwrap().unwrap();
        let mut c = RunCursor::new(tm, root);
        let mut got = Vec::new();
        while let Some(r) = c.next_run().unwrap() {
            got.push(r);
        }
        assert_eq!(got, runs_of(m), "runs of {d}");
        assert_eq!(highest_mapped(tm, root).unwrap(), m.last().map(|x| x.0));
    }

    // Exclusive mappings.
    let roots: Vec<u64> = device_roots(tm, sb.data_mapping_root)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let nr_meta = tm.bm().nr_blocks();
    let excl = exclusive_mappings(tm, &roots, nr_meta, nr_data, usize::MAX).unwrap();
    let want: Vec<u64> = maps
        .values()
        .map(|m| m.iter().filter(|(_, b)| refs[b] == 1).count() as u64)
        .collect();
    assert_eq!(excl, want, "exclusive");
    let want_excl = want;

    // Reverse map of a region, every device, in walk order.
    let region = 100..2500;
    let mut want: Vec<RmapRun> = Vec::new();
    for (&d, m) in &maps {
        for &(t, b) in m.iter().filter(|(_, b)| region.contains(b)) {
            match want.last_mut() {
                Some(r)
                    if r.dev == d
                        && r.data_end == b
                        && r.thin_begin + (r.data_end - r.data_begin) == t =>
                {
                    r.data_end += 1
                }
                _ => want.push(RmapRun {
                    data_begin: b,
                    data_end: b + 1,
                    dev: d,
                    thin_begin: t,
                }),
            }
        }
    }
    let got = rmap(
        tm,
        sb.data_mapping_root,
        std::slice::from_ref(&region),
        Sharers::All,
    )
    .unwrap();
    assert_eq!(got, want, "rmap");

    // Free runs, and every mapped block outside them.
    let mut got = Vec::new();
    free_ranges(tm, &sb.data_sm_root, &mut |r| {
        got.extend(r);
        Ok(())
    })
    .unwrap();
    assert_eq!(got, free, "free blocks");
    // The smallest budget gives the same (one window here: the tool tests
    // in tests/thin_query_windows.rs count many).
    for budget in [usize::MAX, 1] {
        let excl = exclusive_mappings(tm, &roots, nr_meta, nr_data, budget).unwrap();
        assert_eq!(excl, want_excl, "exclusive, budget {budget}");
        let mut runs = Vec::new();
        let sm = &sb.data_sm_root;
        let mapped = first_mapped_free(tm, sm, &roots, nr_meta, budget, &mut |r| {
            runs.extend(r);
            Ok(())
        })
        .unwrap();
        assert_eq!((mapped, &runs), (None, &free), "free runs, budget {budget}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn queries_match_brute_force(ops in prop::collection::vec(op(), 1..60)) {
        let mut md = build(&ops);
        check_queries(&mut md);
    }
}

#[test]
fn deep_shared_pool() {
    // One origin over several leaves and internal nodes, snapshots of
    // snapshots, some written to.
    let mut ops = vec![Op::CreateThin(0), Op::Provision(0, 0, 1200), Op::Commit];
    ops.extend([
        Op::CreateSnap(1, 0),
        Op::CreateSnap(2, 1),
        Op::Provision(2, 500, 20),
        Op::CreateSnap(3, 0),
        Op::Share(3, 1300, 2, 505),
        Op::RemoveRange(1, 100, 350),
        Op::CreateSnap(4, 2),
    ]);
    let mut md = build(&ops);
    let maps = all_mappings(&mut md);
    assert_eq!(maps.len(), 5);
    assert!(maps.values().map(Vec::len).sum::<usize>() > 5000);
    // Snapshots share nodes with their origins.
    let tm = md.transaction_manager();
    let root = device_root(tm, md.superblock().data_mapping_root, 4)
        .unwrap()
        .unwrap();
    assert!(tm.is_shared(root).unwrap());
    check_queries(&mut md);
}
