//! `cache_repair` on a cache whose superblock is wholly lost (zeroed or
//! garbage): `--block-size` stands in for it, the mapping array is found
//! by scanning, and every mapping comes back, all dirty (the shutdown
//! state went with the superblock). Checked by ours and Debian's
//! cache_check.

mod common;

use common::cache::*;
use common::damage::{le32, le64};
use common::oracle::run;
use common::tool::{new_file, pdt, s};
use std::path::{Path, PathBuf};
use std::process::Output;

const BS: usize = 4096;

fn repair(img: &Path, extra: &[&str]) -> (Output, PathBuf) {
    let out = img.with_extension("repaired");
    new_file(&out, 2048 * 4096);
    let o = run(pdt("cache_repair")
        .args(["-i", s(img), "-o", s(&out)])
        .args(extra));
    (o, out)
}

/// Repairs `img` (whose superblock is lost) with `--block-size 128`: the
/// output checks clean by ours and Debian's, is of `version`, and holds
/// `want` (cache block -> origin block), every one dirty.
fn repaired_holds(img: &Path, version: u32, want: &[(u64, u64)], nr: u32) {
    let (o, out) = repair(img, &["--block-size", "128"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("superblock lost"), "{}", stderr(&o));
    let c = check(&out, &[]);
    assert!(c.status.success(), "ours: {}", stderr(&c));
    let d = debian_check(&out);
    assert!(d.status.success(), "Debian's: {}", stderr(&d));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(le32(&bytes, 40), version, "the version is kept");
    let xml = dump(&out, true);
    assert!(
        xml.contains(&format!("block_size=\"128\" nr_cache_blocks=\"{nr}\"")),
        "{}",
        xml.lines().next().unwrap_or("")
    );
    let got = mappings(&xml);
    let expect: Vec<(u64, (u64, bool))> = want.iter().map(|&(c, o)| (c, (o, true))).collect();
    assert_eq!(got.into_iter().collect::<Vec<_>>(), expect);
}

fn all_of(xml: &str) -> Vec<(u64, u64)> {
    mappings(xml)
        .into_iter()
        .map(|(c, (o, _))| (c, o))
        .collect()
}

#[test]
fn a_zeroed_superblock_is_recovered_with_block_size() {
    let dir = tempfile::tempdir().unwrap();
    let xml = gen_xml(3000, 41);
    for version in [1, 2] {
        let img = restore(dir.path(), &xml, &format!("v{version}"), version, true);
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[..BS].fill(0);
        std::fs::write(&img, &bytes).unwrap();
        assert_eq!(check(&img, &[]).status.code(), Some(1));
        // Without the block size: a clear refusal.
        let (o, _) = repair(&img, &[]);
        assert_eq!(o.status.code(), Some(1), "v{version}");
        assert!(stderr(&o).contains("--block-size"), "{}", stderr(&o));
        repaired_holds(&img, version, &all_of(&xml), 3000);
    }
}

#[test]
fn a_garbage_superblock_is_recovered_and_the_options_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let xml = gen_xml(2000, 43);
    let img = restore(dir.path(), &xml, "v2", 2, true);
    let mut bytes = std::fs::read(&img).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in &mut bytes[..BS] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&img, &bytes).unwrap();
    repaired_holds(&img, 2, &all_of(&xml), 2000);
    // The stand-ins as given: version 1, another policy; a cache length
    // that disagrees with the array's is taken, and said.
    let (o, _) = repair(&img, &["--block-size", "128", "--nr-cache-blocks", "2500"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds 2000 entries"), "{}", stderr(&o));
    let (o, out) = repair(
        &img,
        &[
            "--block-size",
            "256",
            "--metadata-version",
            "1",
            "--nr-cache-blocks",
            "2000",
            "--policy",
            "mq",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(check(&out, &[]).status.success());
    assert!(debian_check(&out).status.success());
    let d = dump(&out, true);
    assert!(d.starts_with(
        "<superblock uuid=\"\" block_size=\"256\" nr_cache_blocks=\"2000\" policy=\"mq\""
    ));
    assert_eq!(le32(&std::fs::read(&out).unwrap(), 40), 1);
    assert_eq!(mappings(&d).len(), all_of(&xml).len());
    // A block size the kernel refuses.
    let (o, _) = repair(&img, &["--block-size", "100"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cache block size 100"),
        "{}",
        stderr(&o)
    );
}

/// The superblock and the spine's root both lost: the leaves are found
/// as they are; a lost leaf too loses only its own mappings.
#[test]
fn a_lost_superblock_and_spine_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let xml = gen_xml(300_000, 47);
    let all = all_of(&xml);
    for version in [1, 2] {
        let img = restore(dir.path(), &xml, &format!("v{version}"), version, true);
        let mut bytes = std::fs::read(&img).unwrap();
        let root = le64(&bytes[..BS], 192) as usize;
        assert_eq!(le32(&bytes[root * BS..], 4) & 1, 1, "an internal root");
        bytes[..BS].fill(0);
        bytes[root * BS + 100] ^= 0xff;
        std::fs::write(&img, &bytes).unwrap();
        repaired_holds(&img, version, &all, 300_000);

        // Lose the first leaf as well: the cache blocks its array blocks
        // held come back unmapped, the others all there.
        let n = &bytes[root * BS..][..BS];
        let max = le32(n, 20) as usize;
        let leaf = le64(n, 32 + 8 * max) as usize;
        let covered = {
            let l = &bytes[leaf * BS..][..BS];
            u64::from(le32(l, 16)) * 509
        };
        bytes[leaf * BS + 100] ^= 0xff;
        std::fs::write(&img, &bytes).unwrap();
        let want: Vec<(u64, u64)> = all.iter().copied().filter(|m| m.0 >= covered).collect();
        let (o, out) = repair(
            &img,
            &["--block-size", "128", "--nr-cache-blocks", "300000"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(check(&out, &[]).status.success());
        let got: Vec<(u64, u64)> = mappings(&dump(&out, true))
            .into_iter()
            .map(|(c, (o, d))| {
                assert!(d, "cache block {c} dirty");
                (c, o)
            })
            .collect();
        assert_eq!(got, want, "v{version}");
    }
}

/// Array blocks of an earlier transaction still on the device: what the
/// repair brings back is in the last transaction (no removed mapping
/// comes back), and the disagreement is said.
#[test]
fn earlier_transactions_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("m");
    new_file(&img, 2048 * 4096);
    let mut script = String::from("format 1 128 2000\n");
    for i in 0..1000 {
        script += &format!("insert {i} {}\n", i + 5000);
    }
    script += "commit\n";
    for i in (0..1000).step_by(2) {
        script += &format!("remove {i}\n");
    }
    script += "commit\n";
    let sc = dir.path().join("script");
    std::fs::write(&sc, script).unwrap();
    let o = run(pdt("cache_exec").args([s(&img), s(&sc)]));
    assert!(o.status.success(), "{}", stderr(&o));
    let last = all_of(&dump(&img, true));
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[..BS].fill(0);
    std::fs::write(&img, &bytes).unwrap();
    let (o, out) = repair(&img, &["--block-size", "128"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("different transactions"),
        "{}",
        stderr(&o)
    );
    assert!(check(&out, &[]).status.success());
    assert!(debian_check(&out).status.success());
    for (c, (o, d)) in mappings(&dump(&out, true)) {
        assert!(d && last.contains(&(c, o)), "cache block {c} -> {o}");
    }
}
