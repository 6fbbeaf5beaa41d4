//! `thin_check` counting the data blocks window by window, as it does when
//! the counts would pass their memory budget (pools of more than about 60M
//! data blocks in use), reports exactly what one pass reports: on a clean
//! pool and on pools whose data space map, overflow tree or mappings are
//! damaged in windows other than the first. A tiny budget
//! (`PDT_DATA_BUDGET`) makes a window of every bitmap's blocks here.

mod common;

use common::damage::{sb, Image, Role, Tree};
use common::damage_cases::{get_count, set_count};
use common::pool::{
    debian_restore, far_apart_runs, runs_xml, spread_pool_devices, CHUNK, SPREAD_NR_DATA,
};
use common::tool::{file, ok, pdt, run, s};
use std::path::Path;
use std::process::Output;

const NR_DATA: u64 = SPREAD_NR_DATA;

/// The harness's spread pool (tests/common/pool.rs), and device 4: blocks
/// from the gaps of every third run, highest first, so that its leaves
/// refer to blocks far apart and its first leaves to the last windows.
fn pool_xml() -> String {
    let mut devices = spread_pool_devices();
    devices.push((4, far_apart_runs()));
    runs_xml(NR_DATA, &devices)
}

/// The block of data space map bitmap `i`, from the index tree.
fn data_bitmap(img: &Image, i: u64) -> u64 {
    let mut b = img.sm(sb::DATA_SM, sb::BITMAP_ROOT);
    loop {
        let k = (0..img.nr(b)).rev().find(|&k| img.key(b, k) <= i).unwrap();
        if img.flags(b) == 2 {
            assert_eq!(img.key(b, k), i);
            return img.value64(b, k);
        }
        b = img.value64(b, k);
    }
}

/// Sets entry `e` of data bitmap `i` from `from` to `to` (the first entry
/// at or after `e` with count `from`).
fn recount(img: &mut Image, i: u64, e: u64, from: u32, to: u32) {
    let bm = data_bitmap(img, i);
    let e = (e..CHUNK).find(|&e| get_count(img, bm, e) == from).unwrap();
    set_count(img, bm, e, to);
}

/// The first leaf of `tree`.
fn leaf_of(img: &Image, tree: Tree) -> u64 {
    let roles = img.roles();
    let is = |r: &Role| matches!(r, Role::Node { tree: t, leaf: true, .. } if *t == tree);
    *roles.iter().find(|(_, r)| is(r)).unwrap().0
}

fn check(md: &Path, budget: Option<u64>, args: &[&str]) -> Output {
    let mut c = pdt("thin_check");
    if let Some(b) = budget {
        c.env("PDT_DATA_BUDGET", b.to_string());
    }
    run(c.args(args).arg(md))
}

#[test]
fn windows_report_what_one_pass_reports() {
    let dir = tempfile::tempdir().unwrap();
    let base =
        Image(std::fs::read(debian_restore(dir.path(), "pool.md", 16 << 20, &pool_xml())).unwrap());
    let mut cases: Vec<(&str, Image)> = vec![("clean", base.clone())];
    let mut with = |label, f: &dyn Fn(&mut Image)| {
        let mut img = base.clone();
        f(&mut img);
        cases.push((label, img));
    };
    with("leaks in the first, a middle and the last window", &|img| {
        for i in [0, 17, 23] {
            recount(img, i, 510, 0, 1);
        }
    });
    with("a count of 2 for 1, in a later window", &|img| {
        recount(img, 20, 0, 1, 2)
    });
    with("a 3 in a bitmap without an overflow entry", &|img| {
        recount(img, 15, 0, 2, 3)
    });
    with("an overflow entry's count", &|img| {
        let leaf = leaf_of(img, Tree::DataOverflow);
        let off = img.value_off(leaf, img.nr(leaf) - 1);
        img.put32(leaf, off, img.le32(leaf, off) + 1);
        img.reseal(
            leaf,
            Role::Node {
                tree: Tree::DataOverflow,
                leaf: true,
                root: false,
                snap: false,
            },
        );
    });
    with("a mapping beyond the data device", &|img| {
        let leaf = leaf_of(img, Tree::Bottom);
        let off = img.value_off(leaf, 3);
        img.put64(leaf, off, (NR_DATA + 5) << 24);
        img.reseal(
            leaf,
            Role::Node {
                tree: Tree::Bottom,
                leaf: true,
                root: false,
                snap: false,
            },
        );
    });
    for (label, img) in &cases {
        let md = dir.path().join("case.md");
        std::fs::write(&md, &img.0).unwrap();
        let one = check(&md, None, &[]);
        if *label == "clean" {
            assert!(
                one.status.success(),
                "{}",
                String::from_utf8_lossy(&one.stderr)
            );
        } else {
            assert!(!one.status.success(), "{label}");
        }
        for budget in [1, 30_000] {
            let windows = check(&md, Some(budget), &[]);
            assert_eq!(windows.status, one.status, "{label}, budget {budget}");
            assert_eq!(
                String::from_utf8_lossy(&windows.stderr),
                String::from_utf8_lossy(&one.stderr),
                "{label}, budget {budget}"
            );
            assert_eq!(windows.stdout, one.stdout, "{label}, budget {budget}");
        }
    }
    // Leaks found window by window are repaired as one pass repairs them.
    let mut repaired = Vec::new();
    for budget in [None, Some(1)] {
        let md = dir.path().join("leaky.md");
        std::fs::write(&md, &cases[1].1 .0).unwrap();
        let o = check(&md, budget, &["--auto-repair"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = check(&md, None, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        repaired.push(std::fs::read(&md).unwrap());
    }
    assert!(repaired[0] == repaired[1], "the repairs differ");
    assert!(repaired[0] != cases[1].1 .0, "nothing was repaired");
}

/// thin_restore and thin_repair counting the data blocks window by window
/// (the later windows from the mapping leaves read back) write the same
/// bytes as in one pass.
#[test]
fn restore_and_repair_in_windows_write_what_one_pass_writes() {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("pool.xml");
    std::fs::write(&xml, pool_xml()).unwrap();
    let mut images = Vec::new();
    for budget in [None, Some(1u64), Some(30_000)] {
        let md = file(dir.path(), "restored.md", 16 << 20);
        let out = file(dir.path(), "repaired.md", 16 << 20);
        let with_budget = |tool: &str, args: &[&str]| {
            let mut c = pdt(tool);
            if let Some(b) = budget {
                c.env("PDT_DATA_BUDGET", b.to_string());
            }
            ok(c.args(args));
        };
        with_budget("thin_restore", &["-q", "-i", s(&xml), "-o", s(&md)]);
        with_budget("thin_repair", &["-i", s(&md), "-o", s(&out)]);
        images.push((std::fs::read(&md).unwrap(), std::fs::read(&out).unwrap()));
        let o = check(&md, None, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for (i, img) in images.iter().enumerate().skip(1) {
        assert!(img.0 == images[0].0, "restore {i} differs");
        assert!(img.1 == images[0].1, "repair {i} differs");
    }
}
