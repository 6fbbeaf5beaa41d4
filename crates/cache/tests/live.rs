//! Unit tests of the live cache metadata: opening rules, flags, refusals,
//! and what a failed commit leaves on disk (with and without the seed bug).

mod common;

use cache::format::superblock::{
    Superblock, COMPAT_RO_FLAGS, FLAGS, FLAG_CLEAN_SHUTDOWN, FLAG_NEEDS_CHECK, INCOMPAT_FLAGS,
    SUPERBLOCK_LOCATION, SUPERBLOCK_VALIDATOR,
};
use cache::{CacheError, CacheMetadata, Mapping, Policy};
use pdata::block_manager::{le32, put_le32, Validator};
use pdata::io::{BlockDevice, FlakeyDevice, IoKinds, MemoryDevice, Rule, Trigger};
use pdata::live::LiveMetadata;
use std::sync::Arc;

fn new_cache(version: u32, nr: u32) -> (Arc<MemoryDevice>, CacheMetadata) {
    let dev = Arc::new(MemoryDevice::new(512));
    let md = CacheMetadata::format(dev.clone(), version, 64, nr, &Policy::smq(), false).unwrap();
    (dev, md)
}

/// The superblock flags on disk.
fn disk_flags(dev: &MemoryDevice) -> u32 {
    le32(&dev.image()[..4096], FLAGS)
}

/// Rewrites a superblock field on disk (resealed).
fn patch_superblock(dev: &MemoryDevice, offset: usize, value: u32) -> Arc<MemoryDevice> {
    let mut img = dev.image();
    let b: &mut [u8; 4096] = (&mut img[..4096]).try_into().unwrap();
    put_le32(b, offset, value);
    SUPERBLOCK_VALIDATOR
        .prepare_for_write(SUPERBLOCK_LOCATION, b)
        .unwrap();
    Arc::new(MemoryDevice::from_image(img))
}

#[test]
fn format_refusals() {
    let dev = Arc::new(MemoryDevice::new(64));
    let f = |v, bs, p: &Policy| CacheMetadata::format(dev.clone(), v, bs, 10, p, false).map(|_| ());
    assert!(matches!(
        f(3, 64, &Policy::smq()),
        Err(CacheError::Invalid(_))
    ));
    assert!(matches!(
        f(1, 100, &Policy::smq()),
        Err(CacheError::Invalid(_))
    ));
    assert!(matches!(
        f(1, 32, &Policy::smq()),
        Err(CacheError::Invalid(_))
    ));
    let long = Policy {
        name: "x".repeat(16),
        ..Policy::smq()
    };
    assert!(matches!(f(1, 64, &long), Err(CacheError::Invalid(_))));
    f(2, 64, &Policy::smq()).unwrap();
    assert!(matches!(
        f(2, 64, &Policy::smq()),
        Err(CacheError::AlreadyFormatted)
    ));
    CacheMetadata::format(dev.clone(), 1, 128, 5, &Policy::smq(), true).unwrap();
    let md = CacheMetadata::open(dev, false).unwrap();
    assert_eq!(
        (md.version(), md.data_block_size(), md.nr_cache_blocks()),
        (1, 128, 5)
    );
    assert_eq!(md.policy(), Policy::smq());
}

#[test]
fn opening_rules() {
    let blank = Arc::new(MemoryDevice::new(16));
    assert!(matches!(
        CacheMetadata::open(blank, true),
        Err(CacheError::Unformatted)
    ));
    let (dev, md) = new_cache(2, 10);
    drop(md);
    let incompat = patch_superblock(&dev, INCOMPAT_FLAGS, 4);
    assert!(matches!(
        CacheMetadata::open(incompat, false),
        Err(CacheError::Incompatible(4))
    ));
    // Unknown compat_ro flags: read-only, whatever was asked.
    let ro = patch_superblock(&dev, COMPAT_RO_FLAGS, 1);
    let mut md = CacheMetadata::open(ro, true).unwrap();
    assert!(!md.is_writable());
    assert!(matches!(
        md.insert(0, 1),
        Err(CacheError::Pdata(pdata::Error::ReadOnly))
    ));
    assert!(md.commit(false).is_err());
}

#[test]
fn clean_shutdown_flag_cleared_at_open() {
    let (dev, mut md) = new_cache(1, 10);
    md.insert(2, 20).unwrap();
    md.set_dirty(2, true).unwrap();
    md.commit(true).unwrap();
    assert_eq!(disk_flags(&dev) & FLAG_CLEAN_SHUTDOWN, FLAG_CLEAN_SHUTDOWN);
    drop(md);
    // A read-only open changes nothing.
    let ro = CacheMetadata::open(dev.clone(), false).unwrap();
    assert!(ro.clean_when_opened());
    assert_eq!(disk_flags(&dev) & FLAG_CLEAN_SHUTDOWN, FLAG_CLEAN_SHUTDOWN);
    // A writable open clears it on disk at once.
    let mut md = CacheMetadata::open(dev.clone(), true).unwrap();
    assert!(md.clean_when_opened());
    assert_eq!(disk_flags(&dev) & FLAG_CLEAN_SHUTDOWN, 0);
    md.set_dirty(2, false).unwrap();
    assert_eq!(
        md.lookup(2).unwrap(),
        Some(Mapping {
            oblock: 20,
            dirty: false
        })
    );
    // Abort goes back to the disk, whose flag is now clear: not trusted.
    md.abort().unwrap();
    assert!(!md.clean_when_opened());
    assert_eq!(
        md.lookup(2).unwrap(),
        Some(Mapping {
            oblock: 20,
            dirty: true
        })
    );
    assert_eq!(md.hints().unwrap(), None);
    drop(md);
    // Crash (no clean commit): the next open counts every mapping dirty.
    let md = CacheMetadata::open(dev, true).unwrap();
    assert!(!md.clean_when_opened());
    assert_eq!(
        md.mappings().unwrap(),
        vec![(
            2,
            Mapping {
                oblock: 20,
                dirty: true
            }
        )]
    );
}

#[test]
fn needs_check_flag() {
    let (dev, mut md) = new_cache(2, 4);
    md.set_needs_check().unwrap();
    assert!(md.needs_check());
    assert_eq!(disk_flags(&dev) & FLAG_NEEDS_CHECK, FLAG_NEEDS_CHECK);
    md.commit(false).unwrap();
    assert_eq!(disk_flags(&dev) & FLAG_NEEDS_CHECK, FLAG_NEEDS_CHECK);
    md.clear_needs_check();
    md.commit(true).unwrap();
    assert_eq!(disk_flags(&dev), FLAG_CLEAN_SHUTDOWN);
}

#[test]
fn shrink_refused_while_a_dropped_block_is_dirty() {
    for version in [1, 2] {
        let (dev, mut md) = new_cache(version, 100);
        md.insert(10, 1).unwrap();
        md.insert(90, 2).unwrap();
        md.insert(95, 3).unwrap();
        md.set_dirty(95, true).unwrap();
        assert!(matches!(md.resize(50), Err(CacheError::DirtyBlock(95))));
        assert_eq!(md.nr_cache_blocks(), 100);
        md.set_dirty(95, false).unwrap();
        md.resize(50).unwrap();
        assert_eq!(md.mappings().unwrap().len(), 1);
        // The dropped origin blocks are free to cache again.
        md.insert(20, 3).unwrap();
        md.resize(200).unwrap();
        assert_eq!(md.lookup(150).unwrap(), None);
        assert_eq!(md.hints().unwrap().map(|h| h.len()), Some(200));
        md.commit(true).unwrap();
        common::audit::audit(dev.clone());
        // After an unclean open every mapped block is dirty: no shrink over one.
        drop(md);
        let mut md = CacheMetadata::open(dev.clone(), true).unwrap();
        drop(md);
        md = CacheMetadata::open(dev, true).unwrap();
        assert!(matches!(md.resize(15), Err(CacheError::DirtyBlock(20))));
    }
}

#[test]
fn mapping_refusals() {
    let (_dev, mut md) = new_cache(1, 8);
    assert!(matches!(
        md.insert(8, 1),
        Err(CacheError::CblockOutOfRange { .. })
    ));
    assert!(matches!(
        md.insert(0, 1 << 48),
        Err(CacheError::OblockOutOfRange(_))
    ));
    md.insert(0, 5).unwrap();
    assert!(matches!(
        md.insert(1, 5),
        Err(CacheError::OblockMapped {
            oblock: 5,
            cblock: 0
        })
    ));
    assert!(matches!(md.remove(1), Err(CacheError::NotMapped(1))));
    assert!(matches!(
        md.set_dirty(1, true),
        Err(CacheError::NotMapped(1))
    ));
    // Replacing a mapping leaves it clean and frees the old origin block.
    md.set_dirty(0, true).unwrap();
    md.insert(0, 6).unwrap();
    assert_eq!(
        md.lookup(0).unwrap(),
        Some(Mapping {
            oblock: 6,
            dirty: false
        })
    );
    md.insert(1, 5).unwrap();
    assert!(matches!(
        md.set_discard(0, true),
        Err(CacheError::DiscardOutOfRange { .. })
    ));
    md.discard_size(128, 3).unwrap();
    md.set_discard(2, true).unwrap();
    assert!(md.discarded(2).unwrap());
    assert_eq!(md.discards().unwrap(), vec![false, false, true]);
    // Refusals leave the transaction alive.
    md.commit(false).unwrap();
}

#[test]
fn policy_without_hints() {
    let dev = Arc::new(MemoryDevice::new(64));
    let p = Policy {
        hint_size: 0,
        ..Policy::smq()
    };
    let mut md = CacheMetadata::format(dev.clone(), 2, 64, 10, &p, false).unwrap();
    assert!(matches!(md.set_hint(0, 1), Err(CacheError::NoHints)));
    assert_eq!(md.hints().unwrap(), None);
    assert_eq!(md.superblock().hint_root, 0);
    md.commit(true).unwrap();
    common::audit::audit(dev);
}

/// Opens what the device below a flakey one holds.
fn on_disk(below: &Arc<MemoryDevice>) -> Vec<(u32, Mapping)> {
    let copy = Arc::new(MemoryDevice::from_image(below.image()));
    CacheMetadata::open(copy, false)
        .unwrap()
        .mappings()
        .unwrap()
}

/// A cache over a flakey device with one mapping committed clean, and a
/// second mapping made in the open transaction.
fn flakey_cache(mutation: bool) -> (Arc<MemoryDevice>, Arc<FlakeyDevice>, CacheMetadata) {
    let below = Arc::new(MemoryDevice::new(256));
    let fl = Arc::new(FlakeyDevice::new(below.clone() as Arc<dyn BlockDevice>));
    let mut md = CacheMetadata::format(fl.clone(), 2, 64, 600, &Policy::smq(), false).unwrap();
    if mutation {
        md.enable_seed_bug_mutation();
    }
    md.insert(1, 10).unwrap();
    md.commit(true).unwrap();
    md.insert(500, 11).unwrap();
    md.set_dirty(500, true).unwrap();
    (below, fl, md)
}

#[test]
fn a_failed_commit_leaves_the_last_one() {
    let before = vec![(
        1,
        Mapping {
            oblock: 10,
            dirty: false,
        },
    )];
    // Fail the pre-commit flush, then the superblock write.
    for rule in [
        Rule::fail(IoKinds::FLUSH, Trigger::Nth(0)),
        Rule::fail(
            IoKinds::WRITE,
            Trigger::Blocks([SUPERBLOCK_LOCATION].into_iter().collect()),
        ),
    ] {
        let (below, fl, mut md) = flakey_cache(false);
        fl.add_rule(rule);
        assert!(md.commit(false).is_err());
        assert!(md.insert(2, 3).is_err(), "the transaction is dead");
        assert_eq!(on_disk(&below), before);
        fl.clear_rules();
        md.abort().unwrap();
        assert_eq!(md.mappings().unwrap(), before);
        md.insert(2, 3).unwrap();
        md.commit(true).unwrap();
        assert_eq!(on_disk(&below).len(), 2);
        common::audit::audit(below);
    }
}

#[test]
fn seed_bug_mutation_writes_the_superblock_despite_a_failed_flush() {
    let (below, fl, mut md) = flakey_cache(true);
    fl.add_rule(Rule::fail(IoKinds::FLUSH, Trigger::Nth(0)));
    assert!(md.commit(false).is_err());
    // The pre-fix commit dirtied the superblock with the other blocks: it
    // reached the disk although the commit failed.
    let sb = Superblock::unpack((&below.image()[..4096]).try_into().unwrap());
    assert_eq!(
        sb.flags & FLAG_CLEAN_SHUTDOWN,
        0,
        "the new superblock is on disk"
    );
    assert_eq!(on_disk(&below).len(), 2);
}

#[test]
fn a_larger_cache_round_trips() {
    // 40,000 blocks: several levels of spine, bitset words over many blocks.
    let nr = 40_000u32;
    let dev = Arc::new(MemoryDevice::new(4096));
    let mut md = CacheMetadata::format(dev.clone(), 2, 64, nr, &Policy::smq(), false).unwrap();
    let hints: Vec<u32> = (0..nr).map(|c| c ^ 0x5a5a).collect();
    md.save_hints(&Policy::smq(), &hints).unwrap();
    for c in (0..nr).filter(|c| c % 10 != 0) {
        md.insert(u64::from(c), u64::from(c) * 3).unwrap();
        if c % 3 == 0 {
            md.set_dirty(u64::from(c), true).unwrap();
        }
    }
    md.commit(true).unwrap();
    drop(md);
    common::audit::audit(dev.clone());
    let md = CacheMetadata::open(dev, false).unwrap();
    let maps = md.mappings().unwrap();
    assert_eq!(maps.len(), 36_000);
    assert!(maps
        .iter()
        .all(|(c, m)| m.oblock == u64::from(*c) * 3 && m.dirty == (c % 3 == 0)));
    assert_eq!(md.hints().unwrap(), Some(hints));
}

#[test]
fn hints_follow_the_policy() {
    let (dev, mut md) = new_cache(1, 10);
    md.set_hint(3, 33).unwrap();
    assert_eq!(md.hint(3).unwrap(), Some(33));
    let mq = Policy {
        name: "mq".into(),
        version: [1, 9, 0],
        hint_size: 4,
    };
    md.save_hints(&mq, &[7; 10]).unwrap();
    md.commit(true).unwrap();
    drop(md);
    let md = CacheMetadata::open(dev, false).unwrap();
    assert_eq!(md.policy(), mq);
    assert_eq!(md.hints_for(&mq).unwrap(), Some(vec![7; 10]));
    // Another minor version loads them; another major or name does not.
    let minor = Policy {
        version: [1, 0, 5],
        ..mq.clone()
    };
    assert_eq!(md.hints_for(&minor).unwrap(), Some(vec![7; 10]));
    let major = Policy {
        version: [2, 9, 0],
        ..mq
    };
    assert_eq!(md.hints_for(&major).unwrap(), None);
    assert_eq!(md.hints_for(&Policy::smq()).unwrap(), None);
}

/// Cuts the writes of one commit after each of its write I/Os in turn (as a
/// crash would, the rest never reaching the disk) and returns, per cut,
/// whether the disk held the old or the new transaction intact.
fn crash_cuts(mutation: bool) -> Vec<bool> {
    let mut results = Vec::new();
    for k in 0.. {
        let (below, fl, mut md) = flakey_cache(mutation);
        let old = on_disk(&below);
        let writes_before = fl.counts().writes;
        fl.add_rule(Rule::drop_writes(Trigger::From(k)));
        md.commit(false).unwrap();
        let total = fl.counts().writes - writes_before;
        let copy = Arc::new(MemoryDevice::from_image(below.image()));
        let intact = CacheMetadata::open(copy.clone(), false)
            .and_then(|m| m.mappings())
            .is_ok_and(|maps| {
                let new = vec![
                    (
                        1,
                        Mapping {
                            oblock: 10,
                            dirty: true,
                        },
                    ),
                    (
                        500,
                        Mapping {
                            oblock: 11,
                            dirty: true,
                        },
                    ),
                ];
                // Unclean: every mapping loads dirty.
                let old_dirty: Vec<_> = old
                    .iter()
                    .map(|(c, m)| (*c, Mapping { dirty: true, ..*m }))
                    .collect();
                maps == old || maps == old_dirty || maps == new
            })
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
