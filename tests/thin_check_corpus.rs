//! `pdt thin_check` against Debian's `thin_check` (0.9.0) on a corpus of
//! damaged metadata: clean pools (built by our ThinMetadata through
//! `pdt thin_exec`, and by Debian's `thin_restore`) damaged in many ways —
//! flipped bits in every block, zeroed and swapped blocks, and resealed
//! damage to every field that matters (node headers, keys, child pointers,
//! mappings, device details, bitmaps, overflow and index entries, the
//! superblock). On every image our verdict (clean / only leaks / fatal) must
//! be the one the spec gives and equal Debian's, except where Debian is
//! wrong by the spec: those cases are listed in `DEBIAN_MISSES`, with why.
//! Nothing may ever panic.

mod common;

use common::damage::{Role, BS};
use common::damage_cases::*;
use common::rng::XorShift as Rng;
use common::tool::PDT;
use std::collections::BTreeMap;
use std::path::Path;

/// Damage where Debian's thin_check 0.9.0 gives another verdict than the
/// spec, and ours follows the spec: (label prefix, Debian's verdict, why).
const DEBIAN_MISSES: &[(&str, Verdict, &str)] = &[
    (
        "data-sm:",
        Clean,
        "0.9.0 never compares the data space map with the mappings (its \
         compare_space_maps reads the on-disk count twice), nor its size with \
         its index; THIN.md §5 requires every count to match",
    ),
    (
        "sm-tree:",
        NonFatal,
        "0.9.0 does not check the nodes of the space maps' own trees (data \
         index, both overflow trees); only its metadata count pass stops at a \
         bad one, and it reports the blocks below as over-counts, which it \
         takes for leaks",
    ),
    (
        "tree-shape:",
        NonFatal,
        "0.9.0's mapping-tree walk misses underfull leaves and child pointers \
         that repeat or loop back (FORMAT §3.6); only its count pass notices \
         the blocks it did not reach, as over-counts, which it takes for leaks",
    ),
    (
        "snap-tree:",
        NonFatal,
        "0.9.0 walks the metadata snapshot's trees only to count their blocks; \
         it stops at a bad node and reports the blocks below as over-counts, \
         which it takes for leaks (THIN.md §6: the snapshot's trees are part \
         of the metadata)",
    ),
    (
        "key-upper-bound:",
        Clean,
        "0.9.0 checks a child's keys against its parent key only from below; \
         a key at or above the parent's next key is unreachable by lookups \
         (FORMAT §3.1, §3.6)",
    ),
    (
        "meta-sm:over",
        NonFatal,
        "0.9.0 takes every metadata count above the expected one for a leak; \
         only a count of 1 where nothing refers to the block is one (THIN.md §5)",
    ),
    (
        "details:",
        Clean,
        "0.9.0 compares neither the devices of the devices tree with those of \
         the mapping tree nor mapped_blocks with the mappings (THIN.md §3.2)",
    ),
    (
        "sb:",
        Clean,
        "0.9.0 checks only the superblock's checksum, not its magic, block \
         number, version (1 or 2) or incompatible features, nor that the \
         metadata space map fits the device (THIN.md §2, §9)",
    ),
    (
        "mapping:past-end",
        Clean,
        "0.9.0 does not check data blocks against the data device's size",
    ),
];

/// Debian's verdict where the spec's differs, if documented.
fn debian_miss(label: &str) -> Option<(Verdict, &'static str)> {
    DEBIAN_MISSES
        .iter()
        .find(|(p, _, _)| label.starts_with(p))
        .map(|&(_, v, why)| (v, why))
}

#[test]
fn verdicts_match_debian() {
    assert!(
        Path::new(DEBIAN).exists(),
        "{DEBIAN} is missing: apt-get install thin-provisioning-tools"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases = Vec::new();
    for (name, base) in [
        ("exec", exec_image(dir.path())),
        ("restored", restored_image(dir.path())),
    ] {
        let p = dir.path().join(format!("{name}.clean"));
        std::fs::write(&p, &base.0).unwrap();
        assert_eq!(
            verdict(&[DEBIAN], &p),
            Clean,
            "Debian rejects the clean {name} pool"
        );
        assert_eq!(
            verdict(&[PDT, "thin_check"], &p),
            Clean,
            "we reject the clean {name} pool"
        );
        cases.extend(damages(name, &base, &mut rng));
    }

    // Two workers, each on its own files.
    let results: Vec<(usize, Verdict, Verdict)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (cases, dir) = (&cases, dir.path());
                s.spawn(move || {
                    let img = dir.join(format!("damaged{w}"));
                    let mut out = Vec::new();
                    for (i, c) in cases.iter().enumerate().skip(w).step_by(2) {
                        std::fs::write(&img, &c.image.0).unwrap();
                        out.push((
                            i,
                            verdict(&[PDT, "thin_check"], &img),
                            verdict(&[DEBIAN], &img),
                        ));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let mut failures = Vec::new();
    let mut misses: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tally: BTreeMap<Verdict, usize> = BTreeMap::new();
    for &(i, ours, theirs) in &results {
        let c = &cases[i];
        *tally.entry(ours).or_default() += 1;
        if ours != c.spec {
            failures.push(format!(
                "{}: ours {ours:?}, spec {:?}, Debian {theirs:?}",
                c.label, c.spec
            ));
            continue;
        }
        if std::env::var("CORPUS_DUMP").is_ok() && theirs != ours {
            println!("DIFF {} ours {ours:?} debian {theirs:?}", c.label);
        }
        if theirs != ours {
            match debian_miss(&c.label) {
                Some((v, _)) if v == theirs => {
                    *misses
                        .entry(
                            DEBIAN_MISSES
                                .iter()
                                .find(|m| c.label.starts_with(m.0))
                                .map(|m| m.0)
                                .unwrap_or("?"),
                        )
                        .or_default() += 1;
                }
                _ => failures.push(format!(
                    "{}: ours {ours:?} (the spec's), Debian {theirs:?}, not documented",
                    c.label
                )),
            }
        }
    }
    println!(
        "{} images: {} clean, {} only leaks, {} fatal; {} where Debian is wrong by the spec: {misses:?}",
        results.len(),
        tally.get(&Clean).unwrap_or(&0),
        tally.get(&NonFatal).unwrap_or(&0),
        tally.get(&Fatal).unwrap_or(&0),
        misses.values().sum::<usize>()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(results.len() >= 300, "only {} images", results.len());
}

/// taken for a clean pool when its checksum breaks.
/// Many random damages at once, resealed or not, checked in-process with
/// every option: never a panic, and damage to a block in use is never
#[test]
fn random_damage_never_panics() {
    use pdata::io::MemoryDevice;
    use thin::check::{check_with, CheckOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let options = [
        CheckOptions::default(),
        CheckOptions {
            metadata_snap: true,
            ..Default::default()
        },
        CheckOptions {
            skip_mappings: true,
            ..Default::default()
        },
        CheckOptions {
            repair_leaks: true,
            ..Default::default()
        },
    ];
    for base in [exec_image(dir.path()), restored_image(dir.path())] {
        let used: Vec<(u64, Role)> = base.roles().into_iter().collect();
        for round in 0..1500 {
            let mut img = base.clone();
            for _ in 0..1 + rng.below(12) {
                let (b, r) = used[rng.below(used.len() as u64) as usize];
                let off = rng.below(BS as u64) as usize;
                match rng.below(5) {
                    0 => img.flip(b, off, rng.below(8) as u8),
                    4 if matches!(r, Role::Node { .. }) && img.nr(b) > 0 && img.max(b) < 400 => {
                        // A key or a value of a live entry, wild or near.
                        let i = rng.below(img.nr(b) as u64) as usize;
                        let off = if rng.below(2) == 0 {
                            32 + 8 * i
                        } else {
                            img.value_off(b, i).min(BS - 8)
                        };
                        let v = if rng.below(2) == 0 {
                            rng.next()
                        } else {
                            img.le64(b, off).wrapping_add(rng.below(5)).wrapping_sub(2)
                        };
                        img.put64(b, off, v);
                    }
                    1 => {
                        // A plausible number where a number goes.
                        let v = match rng.below(3) {
                            0 => rng.below(img.nr_blocks() + 10),
                            1 => rng.next(),
                            _ => 0,
                        };
                        img.put64(b, off.min(BS - 8) & !7, v);
                    }
                    2 => img.put32(b, (off.min(BS - 4)) & !3, rng.below(400) as u32),
                    _ => {
                        let (o, _) = used[rng.below(used.len() as u64) as usize];
                        img.swap(b, o);
                    }
                }
                if rng.below(2) == 0 {
                    img.reseal(b, r);
                }
            }
            let dev = MemoryDevice::from_image(img.0);
            let opts = &options[round % options.len()];
            let report = check_with(&dev, opts);
            // Reports stay bounded.
            assert!(report.problems.len() <= 200);
        }
    }
}
