//! The bulk restorer: random pools restore to metadata that passes the full
//! check and dumps back to the same events; odd event streams give errors,
//! never panics; the size it asks for on a too-small device is exact.

use pdata::io::{BlockDevice, MemoryDevice};
use proptest::prelude::*;
use std::sync::Arc;
use thin::check::check;
use thin::dump::{dump, DumpOptions};
use thin::ir::{PoolInfo, Run, RunJoiner, Visitor};
use thin::restore::{Overrides, Restorer};
use thin::{DeviceDetails, Result, ThinMetadata};

/// A pool as plain data: what a dump says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pool {
    info: PoolInfo,
    devices: Vec<(u64, DeviceDetails, Vec<Run>)>,
}

/// Collects a dump.
#[derive(Default)]
struct Collect {
    info: Option<PoolInfo>,
    devices: Vec<(u64, DeviceDetails, Vec<Run>)>,
}

impl Visitor for Collect {
    fn superblock_begin(&mut self, pool: &PoolInfo) -> Result<()> {
        self.info = Some(pool.clone());
        Ok(())
    }
    fn device_begin(&mut self, id: u64, d: &DeviceDetails) -> Result<()> {
        self.devices.push((id, *d, Vec::new()));
        Ok(())
    }
    fn run(&mut self, r: &Run) -> Result<()> {
        self.devices.last_mut().expect("in a device").2.push(*r);
        Ok(())
    }
    fn device_end(&mut self) -> Result<()> {
        Ok(())
    }
    fn superblock_end(&mut self) -> Result<()> {
        Ok(())
    }
}

fn feed(pool: &Pool, out: &mut dyn Visitor) -> Result<()> {
    out.superblock_begin(&pool.info)?;
    for (id, d, runs) in &pool.devices {
        out.device_begin(*id, d)?;
        for r in runs {
            out.run(r)?;
        }
        out.device_end()?;
    }
    out.superblock_end()
}

fn restore(pool: &Pool, nr_blocks: u64) -> (Arc<MemoryDevice>, Result<()>) {
    let mem = Arc::new(MemoryDevice::new(nr_blocks));
    let r = feed(pool, &mut Restorer::new(mem.clone()));
    (mem, r)
}

fn dumped(mem: Arc<MemoryDevice>) -> Pool {
    let md = ThinMetadata::open(mem, false).expect("opens");
    let mut c = Collect::default();
    dump(&md, &DumpOptions::default(), &mut c).expect("dumps");
    Pool {
        info: c.info.expect("a superblock"),
        devices: c.devices,
    }
}

/// The pool as a restore then a dump give it back: devices in id order,
/// runs joined maximally.
fn normalised(pool: &Pool) -> Pool {
    let mut devices = pool.devices.clone();
    devices.sort_by_key(|d| d.0);
    for (_, _, runs) in &mut devices {
        let mut j = RunJoiner::new();
        let mut out = Vec::new();
        for r in runs.iter() {
            for k in 0..r.len {
                out.extend(j.push(r.origin + k, r.data + k, r.time));
            }
        }
        out.extend(j.finish());
        *runs = out;
    }
    let mut info = pool.info.clone();
    info.flags = 0;
    info.version = 2;
    info.metadata_snap = None;
    Pool { info, devices }
}

fn assert_clean(mem: &Arc<MemoryDevice>) {
    let dev: Arc<dyn BlockDevice> = mem.clone();
    let report = check(dev).expect("check runs");
    assert!(report.is_clean(), "{:?} {:?}", report.errors, report.leaks);
}

/// A random pool: devices in any id order, sorted disjoint runs, data
/// blocks shared between devices at random.
fn pool() -> impl Strategy<Value = Pool> {
    let device = (
        0u64..40,
        prop::collection::vec((0u64..50, 1u64..700, 0u64..3000, 0u32..5), 0..12),
    );
    (prop::collection::vec(device, 0..6), 0u32..4, 0u64..10).prop_map(|(devs, time, trans)| {
        let mut seen = std::collections::HashSet::new();
        let devices = devs
            .into_iter()
            .filter(|(id, _)| seen.insert(*id))
            .map(|(id, gaps)| {
                let mut origin = 0;
                let mut runs = Vec::new();
                for (gap, len, data, time) in gaps {
                    origin += gap;
                    runs.push(Run {
                        origin,
                        data,
                        len,
                        time,
                    });
                    origin += len;
                }
                let mapped: u64 = runs.iter().map(|r| r.len).sum();
                let details = DeviceDetails {
                    mapped_blocks: mapped,
                    transaction_id: id,
                    creation_time: time,
                    snapshotted_time: time / 2,
                };
                (id, details, runs)
            })
            .collect();
        Pool {
            info: PoolInfo {
                uuid: String::new(),
                time,
                transaction_id: trans,
                flags: 0,
                version: 2,
                data_block_size: 128,
                nr_data_blocks: 4000,
                metadata_snap: None,
            },
            devices,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64), ..ProptestConfig::default() })]

    #[test]
    fn random_pools_round_trip(pool in pool()) {
        let (mem, r) = restore(&pool, 1200);
        r.expect("restores");
        assert_clean(&mem);
        prop_assert_eq!(dumped(mem), normalised(&pool));
    }

    /// Any sequence of events: an answer, never a panic.
    #[test]
    fn odd_streams_do_not_panic(events in prop::collection::vec((0u8..6, 0u64..5, 0u64..50, 0u64..4500, 0u64..3), 0..30)) {
        let mem = Arc::new(MemoryDevice::new(300));
        let mut r = Restorer::new(mem);
        let info = PoolInfo { data_block_size: 128, nr_data_blocks: 4000, ..PoolInfo::default() };
        for (kind, id, origin, data, len) in events {
            let _ = match kind {
                0 => r.superblock_begin(&info),
                1 => r.device_begin(id, &DeviceDetails::default()),
                2 | 3 => r.run(&Run { origin, data, len, time: 0 }),
                4 => r.device_end(),
                _ => r.superblock_end(),
            };
        }
    }
}

fn info(nr_data_blocks: u64) -> PoolInfo {
    PoolInfo {
        data_block_size: 128,
        nr_data_blocks,
        time: 1,
        transaction_id: 2,
        ..PoolInfo::default()
    }
}

fn device(id: u64, runs: Vec<Run>) -> (u64, DeviceDetails, Vec<Run>) {
    let mapped = runs.iter().map(|r| r.len).sum();
    let d = DeviceDetails {
        mapped_blocks: mapped,
        ..DeviceDetails::default()
    };
    (id, d, runs)
}

fn run(origin: u64, data: u64, len: u64) -> Run {
    Run {
        origin,
        data,
        len,
        time: 0,
    }
}

fn error_of(pool: &Pool, nr_blocks: u64) -> String {
    restore(pool, nr_blocks).1.unwrap_err().to_string()
}

#[test]
fn bad_input_is_an_error() {
    let overlap = Pool {
        info: info(100),
        devices: vec![device(1, vec![run(0, 0, 10), run(5, 50, 1)])],
    };
    assert!(error_of(&overlap, 100).contains("overlapping at block 5"));
    let past_end = Pool {
        info: info(100),
        devices: vec![device(1, vec![run(0, 95, 10)])],
    };
    let e = error_of(&past_end, 100);
    assert!(e.contains("100") && e.contains("beyond the end"), "{e}");
    let twice = Pool {
        info: info(100),
        devices: vec![device(1, vec![]), device(1, vec![])],
    };
    assert!(error_of(&twice, 100).contains("appears twice"));
    let late_time = Pool {
        info: info(100),
        devices: vec![device(
            1,
            vec![Run {
                origin: 0,
                data: 0,
                len: 1,
                time: 1 << 24,
            }],
        )],
    };
    assert!(error_of(&late_time, 100).contains("24 bits"));
    // Nothing valid was left behind: block 0 is zero.
    let (mem, r) = restore(&overlap, 100);
    assert!(r.is_err());
    assert!(mem.image()[..4096].iter().all(|&b| b == 0));
}

#[test]
fn too_small_names_the_exact_size() {
    let pool = Pool {
        info: info(40_000),
        devices: (0..4)
            .map(|d| device(d, vec![run(0, d * 3000, 3000), run(5000, 20_000, 2000)]))
            .collect(),
    };
    let e = error_of(&pool, 20);
    let needed: u64 = e
        .split("metadata: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {e}"));
    assert!(e.contains("blocks needed, 20 available"), "{e}");
    assert!(error_of(&pool, needed - 1).contains(&format!("{needed} blocks needed")));
    let (mem, r) = restore(&pool, needed);
    r.expect("fits exactly");
    assert_clean(&mem);
    assert_eq!(dumped(mem), normalised(&pool));
    // Even an empty device gets an answer.
    assert!(error_of(&pool, 0).contains("blocks needed, 0 available"));
}

#[test]
fn out_of_order_devices_and_overrides() {
    let pool = Pool {
        info: info(100),
        devices: vec![device(9, vec![run(3, 1, 2)]), device(2, vec![run(0, 1, 2)])],
    };
    let mem = Arc::new(MemoryDevice::new(64));
    let o = Overrides {
        transaction_id: Some(77),
        data_block_size: Some(256),
        nr_data_blocks: Some(500),
    };
    feed(&pool, &mut Restorer::new(mem.clone()).with_overrides(o)).unwrap();
    assert_clean(&mem);
    let got = dumped(mem);
    assert_eq!(got.devices[0].0, 2);
    assert_eq!(got.devices[1].0, 9);
    assert_eq!(
        (
            got.info.transaction_id,
            got.info.data_block_size,
            got.info.nr_data_blocks
        ),
        (77, 256, 500)
    );
}

#[test]
fn large_pool_with_many_leaves_and_bitmaps() {
    // Several bitmaps of data, a three-level device tree, counts past 255.
    let nr_data = 5 * 16_320 + 77;
    let mut devices = vec![device(0, vec![run(0, 0, 70_000)])];
    for d in 1..300 {
        devices.push(device(d, vec![run(10, 5, 3)]));
    }
    let pool = Pool {
        info: info(nr_data),
        devices,
    };
    let (mem, r) = restore(&pool, 2000);
    r.unwrap();
    assert_clean(&mem);
    assert_eq!(dumped(mem), normalised(&pool));
}
