//! Unit tests of the live era metadata: formatting and opening rules,
//! marking, rollover, digest, resize, the metadata snapshot, refusals, and
//! what a failed or cut commit leaves on disk (with and without the seed bug).
// Lists of runs: a one-run list is meant.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use era::format::superblock::{SUPERBLOCK_LOCATION, VERSION};
use era::{EraError, EraMetadata, Run};
use pdata::block_manager::{le32, put_le32, Validator};
use pdata::io::{BlockDevice, FlakeyDevice, IoKinds, MemoryDevice, Rule, Trigger};
use pdata::live::LiveMetadata;
use std::sync::Arc;

fn new_era(nr: u32) -> (Arc<MemoryDevice>, EraMetadata) {
    let dev = Arc::new(MemoryDevice::new(512));
    let md = EraMetadata::format(dev.clone(), nr, 128, false).unwrap();
    (dev, md)
}

fn reopen(dev: &MemoryDevice) -> EraMetadata {
    EraMetadata::open(Arc::new(MemoryDevice::from_image(dev.image())), false).unwrap()
}

#[test]
fn format_and_open_rules() {
    let dev = Arc::new(MemoryDevice::new(64));
    assert!(matches!(
        EraMetadata::open(dev.clone(), true),
        Err(EraError::Unformatted)
    ));
    assert!(matches!(
        EraMetadata::format(dev.clone(), 10, 4, false),
        Err(EraError::Invalid(_))
    ));
    assert!(matches!(
        EraMetadata::format(dev.clone(), 1 << 31, 8, false),
        Err(EraError::Invalid(_))
    ));
    let md = EraMetadata::format(dev.clone(), 10, 8, false).unwrap();
    // The first resume's rollover started era 1 with an empty writeset.
    assert_eq!(md.current_era(), 1);
    assert_eq!(md.current_writeset().unwrap().nr_bits, 10);
    assert!(md.writesets().unwrap().is_empty());
    assert_eq!(md.era_array().unwrap(), vec![0; 10]);
    drop(md);
    assert!(matches!(
        EraMetadata::format(dev.clone(), 10, 8, false),
        Err(EraError::AlreadyFormatted)
    ));
    // Another version is refused by the validator.
    let mut img = dev.image();
    let b: &mut [u8; 4096] = (&mut img[..4096]).try_into().unwrap();
    put_le32(b, VERSION, 2);
    era::format::superblock::SUPERBLOCK_VALIDATOR
        .prepare_for_write(SUPERBLOCK_LOCATION, b)
        .unwrap();
    assert!(EraMetadata::open(Arc::new(MemoryDevice::from_image(img)), false).is_err());
    common::audit::audit(dev);
}

#[test]
fn writes_rollover_digest() {
    let (dev, mut md) = new_era(1000);
    md.write(5).unwrap();
    md.write_range(60, 140).unwrap();
    assert!(md.written_in_current_era(70).unwrap());
    assert!(!md.written_in_current_era(140).unwrap());
    assert!(matches!(
        md.write(1000),
        Err(EraError::BlockOutOfRange { .. })
    ));
    assert_eq!(md.written_since(1).unwrap(), vec![5..6, 60..140]);
    assert!(md.written_since(2).unwrap().is_empty());
    md.checkpoint().unwrap();
    assert_eq!(md.current_era(), 2);
    md.write(999).unwrap();
    md.write(5).unwrap();
    md.checkpoint().unwrap();
    let ws = md.writesets().unwrap();
    assert_eq!(ws.iter().map(|w| w.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(md.writeset_runs(&ws[1].1).unwrap(), vec![5..6, 999..1000]);
    md.commit().unwrap();
    common::audit::audit(dev.clone());
    // Step by step: lookup, one step per 100 bits, remove.
    let mut steps = 0;
    while md.writesets().unwrap().len() == 2 {
        assert!(md.digest_step().unwrap());
        steps += 1;
    }
    assert_eq!(steps, 1 + 10 + 1);
    assert_eq!(md.digest(5).unwrap(), 1);
    assert!(!md.digest_step().unwrap());
    let arr = md.era_array().unwrap();
    assert_eq!(
        (arr[5], arr[60], arr[139], arr[140], arr[999]),
        (2, 1, 1, 0, 2)
    );
    let want: Vec<Run> = vec![5..6, 60..140, 999..1000];
    assert_eq!(md.written_since(1).unwrap(), want);
    assert_eq!(md.written_since(2).unwrap(), vec![5..6, 999..1000]);
    assert!(md.written_since(3).unwrap().is_empty());
    md.commit().unwrap();
    assert_eq!(reopen(&dev).written_since(1).unwrap(), want);
    common::audit::audit(dev);
}

#[test]
fn resize_rolls_over() {
    let (dev, mut md) = new_era(100);
    md.write(99).unwrap();
    md.resize(50).unwrap();
    assert_eq!(md.current_era(), 2);
    // The archived writeset keeps 100 bits; the queries stop at 50.
    assert_eq!(md.writesets().unwrap()[0].1.nr_bits, 100);
    assert!(md.written_since(1).unwrap().is_empty());
    md.write(49).unwrap();
    md.resize(200).unwrap();
    md.write(199).unwrap();
    // Block 99's bit in era 1's writeset counts again once the origin is
    // that large: the kernel's digest would fold it (min(nr_bits,
    // nr_blocks)), and an extra block is what a backup can afford.
    let want: Vec<Run> = vec![49..50, 99..100, 199..200];
    assert_eq!(md.written_since(0).unwrap(), want);
    md.digest(10).unwrap();
    assert_eq!(md.era_array().unwrap()[49], 2);
    assert_eq!(md.era_array().unwrap()[99], 1);
    assert_eq!(md.written_since(0).unwrap(), want);
    md.commit().unwrap();
    common::audit::audit(dev);
}

#[test]
fn metadata_snapshot() {
    let (dev, mut md) = new_era(3000);
    md.write_range(0, 10).unwrap();
    assert!(matches!(md.drop_metadata_snap(), Err(EraError::NoSnapshot)));
    let snap = md.take_metadata_snap().unwrap();
    assert!(matches!(
        md.take_metadata_snap(),
        Err(EraError::SnapshotExists)
    ));
    md.commit().unwrap();
    common::audit::audit(dev.clone());
    // The live state moves on; the snapshot keeps era 1's writeset.
    md.write_range(2000, 2100).unwrap();
    md.checkpoint().unwrap();
    md.digest(10).unwrap();
    md.commit().unwrap();
    common::audit::audit(dev.clone());
    assert_eq!(md.snapshot_written_since(1).unwrap(), vec![0..10]);
    assert_eq!(md.written_since(1).unwrap(), vec![0..10, 2000..2100]);
    assert!(md.writesets().unwrap().is_empty());
    let copy = reopen(&dev);
    assert_eq!(copy.metadata_snap(), Some(snap));
    assert_eq!(copy.snapshot_written_since(0).unwrap(), vec![0..10]);
    md.drop_metadata_snap().unwrap();
    md.commit().unwrap();
    common::audit::audit(dev.clone());
    assert!(reopen(&dev).metadata_snap().is_none());
    // Take and drop inside one transaction.
    md.take_metadata_snap().unwrap();
    md.drop_metadata_snap().unwrap();
    md.commit().unwrap();
    common::audit::audit(dev);
}

#[test]
fn refusals() {
    let (dev, mut md) = new_era(10);
    md.commit().unwrap();
    let mut ro = EraMetadata::open(dev.clone(), false).unwrap();
    assert!(ro.write(1).is_err());
    assert!(ro.checkpoint().is_err());
    assert!(ro.commit().is_err());
    assert_eq!(ro.written_since(0).unwrap(), Vec::<Run>::new());
    assert!(matches!(md.resize(1 << 31), Err(EraError::Invalid(_))));
}

fn on_disk(below: &Arc<MemoryDevice>) -> Vec<Run> {
    reopen(below).written_since(0).unwrap()
}

/// Metadata over a flakey device with block 1 committed, and block 500
/// written and a checkpoint made in the open transaction.
fn flakey_era(mutation: bool) -> (Arc<MemoryDevice>, Arc<FlakeyDevice>, EraMetadata) {
    let below = Arc::new(MemoryDevice::new(256));
    let fl = Arc::new(FlakeyDevice::new(below.clone() as Arc<dyn BlockDevice>));
    let mut md = EraMetadata::format(fl.clone(), 600, 8, false).unwrap();
    if mutation {
        md.enable_seed_bug_mutation();
    }
    md.write(1).unwrap();
    md.commit().unwrap();
    md.write(500).unwrap();
    md.checkpoint().unwrap();
    (below, fl, md)
}

#[test]
fn a_failed_commit_leaves_the_last_one() {
    for rule in [
        Rule::fail(IoKinds::FLUSH, Trigger::Nth(0)),
        Rule::fail(
            IoKinds::WRITE,
            Trigger::Blocks([SUPERBLOCK_LOCATION].into_iter().collect()),
        ),
    ] {
        let (below, fl, mut md) = flakey_era(false);
        fl.add_rule(rule);
        assert!(md.commit().is_err());
        assert!(md.write(2).is_err(), "the transaction is dead");
        assert_eq!(on_disk(&below), vec![1..2]);
        fl.clear_rules();
        md.abort().unwrap();
        assert_eq!(md.current_era(), 1);
        assert_eq!(md.written_since(0).unwrap(), vec![1..2]);
        md.write(2).unwrap();
        md.commit().unwrap();
        assert_eq!(on_disk(&below), vec![1..3]);
        common::audit::audit(below);
    }
}

#[test]
fn seed_bug_mutation_writes_the_superblock_despite_a_failed_flush() {
    let (below, fl, mut md) = flakey_era(true);
    fl.add_rule(Rule::fail(IoKinds::FLUSH, Trigger::Nth(0)));
    assert!(md.commit().is_err());
    // The pre-fix commit dirtied the superblock with the other blocks: it
    // reached the disk although the commit failed.
    let era = le32(&below.image()[..4096], era::format::superblock::CURRENT_ERA);
    assert_eq!(era, 2, "the new superblock is on disk");
}

fn crash_cuts(mutation: bool) -> Vec<bool> {
    let mut results = Vec::new();
    for k in 0.. {
        let (below, fl, mut md) = flakey_era(mutation);
        let writes_before = fl.counts().writes;
        fl.add_rule(Rule::drop_writes(Trigger::From(k)));
        md.commit().unwrap();
        let total = fl.counts().writes - writes_before;
        let copy = Arc::new(MemoryDevice::from_image(below.image()));
        let intact = EraMetadata::open(copy.clone(), false)
            .and_then(|m| Ok((m.current_era(), m.written_since(0)?)))
            .is_ok_and(|s| s == (1, vec![1..2]) || s == (2, vec![1..2, 500..501]))
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                common::audit::audit(copy)
            }))
            .is_ok();
        results.push(intact);
        if k >= total {
            break;
        }
    }
    results
}

#[test]
fn a_crash_in_a_commit_leaves_one_whole_transaction() {
    let cuts = crash_cuts(false);
    assert!(cuts.len() > 2, "{cuts:?}");
    assert!(cuts.iter().all(|&ok| ok), "{cuts:?}");
    // The seed bug (superblock written with the other blocks) is caught.
    assert!(crash_cuts(true).iter().any(|&ok| !ok));
}
