use super::*;
use crate::dump::{dump, DumpOptions};
use crate::ir::{PoolInfo, Visitor};
use crate::restore::Restorer;
use crate::DeviceDetails;
use pdata::io::{BlockDevice, MemoryDevice};
use std::sync::Arc;

/// (device id, [(origin, data)]) of single mappings.
type Pool = Vec<(u64, Vec<(u64, u64)>)>;

fn build(dev: Arc<dyn BlockDevice>, nr_blocks: u64, pool: &Pool) {
    let mut r = Restorer::new(dev);
    r.superblock_begin(&PoolInfo {
        data_block_size: 128,
        nr_data_blocks: nr_blocks,
        transaction_id: 7,
        time: 3,
        ..Default::default()
    })
    .unwrap();
    for (id, maps) in pool {
        let details = DeviceDetails {
            mapped_blocks: maps.len() as u64,
            ..Default::default()
        };
        r.device_begin(*id, &details).unwrap();
        for &(o, d) in maps {
            r.run(&Run {
                origin: o,
                data: d,
                len: 1,
                time: 1,
            })
            .unwrap();
        }
        r.device_end().unwrap();
    }
    r.superblock_end().unwrap();
}

fn open(pool: &Pool, nr_blocks: u64) -> ThinMetadata {
    let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(1024));
    build(dev.clone(), nr_blocks, pool);
    ThinMetadata::open(dev, false).unwrap()
}

fn mappings(md: &mut ThinMetadata) -> Vec<(u64, Vec<(u64, u64)>)> {
    md.devices()
        .unwrap()
        .into_iter()
        .map(|id| {
            let m = md.mappings(id).unwrap();
            (id, m.into_iter().map(|(o, d, _)| (o, d)).collect())
        })
        .collect()
}

#[test]
fn moves_go_to_the_lowest_free_blocks_in_order() {
    let pool = vec![
        (1, vec![(0, 0), (1, 1), (2, 90), (3, 91), (4, 95)]),
        // A snapshot sharing 90 and 95, with one block of its own.
        (2, vec![(2, 90), (4, 95), (5, 60)]),
    ];
    let md = open(&pool, 100);
    let p = plan(&md, 50).unwrap();
    assert_eq!(
        p.moves,
        vec![
            Move {
                from: 60,
                to: 2,
                len: 1
            },
            Move {
                from: 90,
                to: 3,
                len: 2
            },
            Move {
                from: 95,
                to: 5,
                len: 1
            },
        ]
    );
    assert_eq!(p.blocks_moved(), 4);
    assert_eq!(p.new_location(1), Some(1));
    assert_eq!(p.new_location(91), Some(4));
    assert_eq!(p.new_location(92), None);
}

#[test]
fn refuses_with_the_number_of_blocks_missing() {
    let pool = vec![(1, (0..10).map(|i| (i, i * 10)).collect())];
    let md = open(&pool, 100);
    // 10 distinct blocks; below 5, one is mapped (0) and 4 are free; 9 move.
    match plan(&md, 5) {
        Err(ShrinkError::DoesNotFit {
            moved: 9,
            free: 4,
            missing: 5,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(plan(&md, 10).is_ok());
    assert!(matches!(
        plan(&md, 9),
        Err(ShrinkError::DoesNotFit { missing: 1, .. })
    ));
}

#[test]
fn growing_or_nothing_above_moves_nothing() {
    let pool = vec![(1, vec![(0, 3), (1, 4)])];
    let md = open(&pool, 100);
    assert!(plan(&md, 200).unwrap().moves.is_empty());
    assert!(plan(&md, 5).unwrap().moves.is_empty());
}

#[test]
fn the_rewritten_metadata_maps_the_new_places_and_checks_clean() {
    let pool = vec![
        (1, vec![(0, 0), (1, 1), (2, 90), (3, 91), (4, 95)]),
        (2, vec![(2, 90), (4, 95), (5, 60)]),
        (5, vec![]),
    ];
    let mut md = open(&pool, 100);
    let p = plan(&md, 50).unwrap();
    let out: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(1024));
    let mut w = Remapped {
        plan: &p,
        inner: Restorer::new(out.clone()),
    };
    dump(&md, &DumpOptions::default(), &mut w).unwrap();
    let report = crate::check::check(out.clone()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let mut new = ThinMetadata::open(out, false).unwrap();
    assert_eq!(new.nr_data_blocks(), 50);
    assert_eq!(new.transaction_id(), 7);
    assert_eq!(new.time(), 3);
    let expect: Vec<_> = mappings(&mut md)
        .into_iter()
        .map(|(id, m)| {
            let moved = m
                .into_iter()
                .map(|(o, d)| (o, p.new_location(d).unwrap()))
                .collect();
            (id, moved)
        })
        .collect();
    assert_eq!(mappings(&mut new), expect);
    // Shared stays shared: 90 -> 3 in both devices.
    assert_eq!(new.data_ref_count(3).unwrap(), 2);
}

#[test]
fn runs_split_where_the_moves_do() {
    let p = Plan {
        old_nr_blocks: 100,
        new_nr_blocks: 10,
        moves: vec![
            Move {
                from: 10,
                to: 2,
                len: 2,
            },
            Move {
                from: 12,
                to: 7,
                len: 1,
            },
        ],
    };
    let mut out = Vec::new();
    p.remap_run(
        &Run {
            origin: 100,
            data: 8,
            len: 5,
            time: 4,
        },
        &mut |r| {
            out.push((r.origin, r.data, r.len));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(out, vec![(100, 8, 2), (102, 2, 2), (104, 7, 1)]);
    let unplanned = Run {
        origin: 0,
        data: 13,
        len: 1,
        time: 0,
    };
    assert!(p.remap_run(&unplanned, &mut |_| Ok(())).is_err());
}

/// Planning from the event stream (XML) gives the plan the space map gives
/// on metadata restored from the same stream.
#[test]
fn a_stream_plans_as_the_space_map_does() {
    let pool = vec![
        (1, vec![(0, 0), (1, 1), (2, 90), (3, 91), (4, 95), (9, 3)]),
        (2, vec![(2, 90), (4, 95), (5, 60), (6, 5), (7, 6)]),
    ];
    let md = open(&pool, 100);
    let mut seen = MappedBlocks::default();
    dump(&md, &DumpOptions::default(), &mut seen).unwrap();
    for n in [1, 4, 8, 9, 10, 50, 96, 100, 200] {
        match (plan(&md, n), seen.plan(n)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{n}"),
            (
                Err(ShrinkError::DoesNotFit { missing: a, .. }),
                Err(ShrinkError::DoesNotFit { missing: b, .. }),
            ) => assert_eq!(a, b, "{n}"),
            other => panic!("{n}: {other:?}"),
        }
    }
}

/// A pool over several space-map bitmaps (16320 blocks each), free space
/// split by mapped blocks on both sides of a bitmap boundary.
#[test]
fn plans_across_bitmaps() {
    let mut maps: Vec<(u64, u64)> = (0..16330).map(|i| (i, i)).collect();
    maps.retain(|&(_, d)| d % 100 != 7 && !(16310..16325).contains(&d));
    maps.extend((0..40).map(|i| (20_000 + i, 39_000 + i * 3)));
    let mapped: Vec<u64> = maps.iter().map(|m| m.1).collect();
    let pool = vec![(1, maps)];
    let md = open(&pool, 40_000);
    let mut seen = MappedBlocks::default();
    dump(&md, &DumpOptions::default(), &mut seen).unwrap();
    for n in [1_000, 16_300, 16_315, 16_340, 16_400, 30_000] {
        let above = mapped.iter().filter(|&&d| d >= n).count() as u64;
        let free = n - (mapped.len() as u64 - above);
        if above > free {
            for r in [plan(&md, n), seen.plan(n)] {
                assert!(
                    matches!(r, Err(ShrinkError::DoesNotFit { missing, .. }) if missing == above - free),
                    "{n}: {r:?}"
                );
            }
            continue;
        }
        let p = plan(&md, n).unwrap();
        assert_eq!(p, seen.plan(n).unwrap(), "{n}");
        assert_eq!(p.blocks_moved(), above, "{n}");
        let targets: Vec<u64> = p.moves.iter().flat_map(|m| m.to..m.to + m.len).collect();
        let free_below: Vec<u64> = (0..n)
            .filter(|b| !mapped.contains(b))
            .take(targets.len())
            .collect();
        assert_eq!(targets, free_below, "{n}");
    }
}
