//! Property test: random pool operations against an in-memory model, with
//! commits, aborts and reopenings. After every commit the metadata must pass
//! the full consistency walk (every reference count right, no leaks) and hold
//! exactly the model's devices and mappings.

use pdata::io::{BlockDevice, MemoryDevice};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use thin::check::check;
use thin::{ThinError, ThinMetadata};

const DATA_BLOCKS: u64 = 6000;
const DEVS: u64 = 6;

#[derive(Debug, Clone)]
enum Op {
    CreateThin(u64),
    CreateSnap(u64, u64),
    Delete(u64),
    Provision(u64, u64, u64),
    Share(u64, u64, u64, u64),
    Remove(u64, u64),
    RemoveRange(u64, u64, u64),
    ReserveSnap,
    ReleaseSnap,
    ResizeData(u64),
    Commit,
    Abort,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let dev = 0..DEVS;
    let vblock = 0u64..1500;
    prop_oneof![
        3 => dev.clone().prop_map(Op::CreateThin),
        2 => (dev.clone(), dev.clone()).prop_map(|(a, b)| Op::CreateSnap(a, b)),
        1 => dev.clone().prop_map(Op::Delete),
        8 => (dev.clone(), vblock.clone(), 1u64..400).prop_map(|(d, v, n)| Op::Provision(d, v, n)),
        2 => (dev.clone(), vblock.clone(), dev.clone(), vblock.clone()).prop_map(|(a, b, c, d)| Op::Share(a, b, c, d)),
        2 => (dev.clone(), vblock.clone()).prop_map(|(d, v)| Op::Remove(d, v)),
        2 => (dev.clone(), vblock.clone(), 1u64..600).prop_map(|(d, v, n)| Op::RemoveRange(d, v, n)),
        1 => Just(Op::ReserveSnap),
        1 => Just(Op::ReleaseSnap),
        1 => (0u64..2000).prop_map(Op::ResizeData),
        3 => Just(Op::Commit),
        1 => Just(Op::Abort),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Default, Debug)]
struct Model {
    devs: BTreeMap<u64, BTreeMap<u64, u64>>,
    snap_held: bool,
    nr_data: u64,
}

fn verify(dev: &Arc<MemoryDevice>, md: &mut ThinMetadata, model: &Model) {
    let report = check(dev.clone() as Arc<dyn BlockDevice>).expect("check runs");
    assert!(
        report.errors.is_empty(),
        "check errors: {:#?}",
        report.errors
    );
    assert!(report.leaks.is_empty(), "leaks: {:#?}", report.leaks);
    let ids: Vec<u64> = report.devices.keys().copied().collect();
    let want: Vec<u64> = model.devs.keys().copied().collect();
    assert_eq!(ids, want, "devices on disk");
    assert_eq!(md.devices().unwrap(), want);
    for (d, m) in &model.devs {
        let got: BTreeMap<u64, u64> = md
            .mappings(*d)
            .unwrap()
            .into_iter()
            .map(|(v, b, _)| (v, b))
            .collect();
        assert_eq!(&got, m, "mappings of device {d}");
        assert_eq!(md.device_details(*d).unwrap().mapped_blocks, m.len() as u64);
    }
    assert_eq!(md.nr_data_blocks(), model.nr_data);
}

fn run(ops: Vec<Op>) {
    let dev = Arc::new(MemoryDevice::new(2048));
    let mut md = ThinMetadata::format(dev.clone(), 128, DATA_BLOCKS, false).unwrap();
    let mut model = Model {
        nr_data: DATA_BLOCKS,
        ..Model::default()
    };
    let mut committed = model.clone();
    for op in ops {
        match op {
            Op::CreateThin(d) => {
                let r = md.create_thin(d);
                assert_eq!(r.is_ok(), !model.devs.contains_key(&d), "{r:?}");
                model.devs.entry(d).or_default();
            }
            Op::CreateSnap(d, o) => {
                let r = md.create_snap(d, o);
                let ok = !model.devs.contains_key(&d) && model.devs.contains_key(&o);
                assert_eq!(r.is_ok(), ok, "{r:?}");
                if ok {
                    let m = model.devs[&o].clone();
                    model.devs.insert(d, m);
                }
            }
            Op::Delete(d) => {
                let r = md.delete(d);
                assert_eq!(r.is_ok(), model.devs.remove(&d).is_some(), "{r:?}");
            }
            Op::Provision(d, v, n) => {
                for v in v..v + n {
                    let r = md.provision(d, v);
                    match model.devs.get_mut(&d) {
                        None => {
                            assert!(matches!(r, Err(ThinError::NoSuchDevice(_))), "{r:?}");
                            break;
                        }
                        Some(m) => match r {
                            Ok(b) => {
                                let in_use = model
                                    .devs
                                    .values()
                                    .chain(committed.devs.values())
                                    .any(|m| m.values().any(|&x| x == b));
                                assert!(
                                    !in_use,
                                    "provision returned data block {b}, which is in use"
                                );
                                model.devs.get_mut(&d).unwrap().insert(v, b);
                            }
                            Err(e) => {
                                // Only a full pool may refuse.
                                let _ = m;
                                assert!(e.to_string().contains("no free space"), "{e}");
                                md.abort().unwrap();
                                model = committed.clone();
                                break;
                            }
                        },
                    }
                }
            }
            Op::Share(d, v, from, fv) => {
                let src = model.devs.get(&from).and_then(|m| m.get(&fv)).copied();
                match (model.devs.contains_key(&d), src) {
                    (true, Some(b)) => {
                        md.insert(d, v, b).unwrap();
                        model.devs.get_mut(&d).unwrap().insert(v, b);
                    }
                    (false, _) => assert!(md.insert(d, v, 0).is_err()),
                    (true, None) => {}
                }
            }
            Op::Remove(d, v) => {
                let r = md.remove(d, v);
                let ok = model
                    .devs
                    .get_mut(&d)
                    .map(|m| m.remove(&v).is_some())
                    .unwrap_or(false);
                assert_eq!(r.is_ok(), ok, "{r:?}");
            }
            Op::RemoveRange(d, b, n) => {
                let r = md.remove_range(d, b, b + n);
                match model.devs.get_mut(&d) {
                    Some(m) => {
                        let gone: Vec<u64> = m.range(b..b + n).map(|(k, _)| *k).collect();
                        for k in &gone {
                            m.remove(k);
                        }
                        assert_eq!(r.unwrap(), gone.len() as u64);
                    }
                    None => assert!(r.is_err()),
                }
            }
            Op::ReserveSnap => {
                let r = md.reserve_metadata_snap();
                assert_eq!(r.is_ok(), !model.snap_held, "{r:?}");
                if r.is_ok() {
                    // Reserving commits first.
                    committed = model.clone();
                    model.snap_held = true;
                }
            }
            Op::ReleaseSnap => {
                let r = md.release_metadata_snap();
                assert_eq!(r.is_ok(), model.snap_held, "{r:?}");
                model.snap_held = false;
            }
            Op::ResizeData(extra) => {
                let new = model.nr_data + extra;
                md.resize_data(new).unwrap();
                model.nr_data = new;
            }
            Op::Commit => {
                md.commit().unwrap();
                committed = model.clone();
                verify(&dev, &mut md, &model);
            }
            Op::Abort => {
                md.abort().unwrap();
                model = committed.clone();
            }
            Op::Reopen => {
                drop(md);
                md = ThinMetadata::open(dev.clone(), true).unwrap();
                model = committed.clone();
            }
        }
    }
    md.commit().unwrap();
    verify(&dev, &mut md, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(200), ..ProptestConfig::default() })]
    #[test]
    fn pool_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

#[test]
fn many_devices_and_snapshot_chains() {
    let mut ops = Vec::new();
    for d in 0..4 {
        ops.push(Op::CreateThin(d));
        ops.push(Op::Provision(d, d * 100, 700));
    }
    ops.push(Op::Commit);
    ops.push(Op::CreateSnap(4, 0));
    ops.push(Op::CreateSnap(5, 4));
    ops.push(Op::Provision(4, 50, 300));
    ops.push(Op::ReserveSnap);
    ops.push(Op::Provision(5, 0, 500));
    ops.push(Op::RemoveRange(0, 0, 1000));
    ops.push(Op::Commit);
    ops.push(Op::Delete(4));
    ops.push(Op::ReleaseSnap);
    ops.push(Op::Commit);
    ops.push(Op::Abort);
    ops.push(Op::Reopen);
    run(ops);
}
