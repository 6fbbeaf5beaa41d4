//! The cache tools against Debian's (0.9.0) both ways and both metadata
//! versions, LVM's calls, the options, and bad input.
//!
//! Debian's quirks the assertions spell out (CACHE.md §9): its version 1
//! restore leaks one metadata block and writes hint size 0; its version 2
//! restore sets dirty bits on unmapped blocks, and its version 2 dump
//! prints every mapping clean, where ours prints the real dirty bits.

mod common;

use common::cache::*;
use common::oracle::run;
use common::tool::{new_file, pdt, s};
use pdata::checksum::{seal, SALT_CACHE_SUPERBLOCK};
use std::process::Command;

const FLAGS: usize = 4;
const VERSION: usize = 40;
const HINT_SIZE: usize = 60;

fn superblock(img: &std::path::Path) -> Vec<u8> {
    std::fs::read(img).expect("image")[..4096].to_vec()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[test]
fn debian_restores_we_check_and_dump_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let xml = gen_xml(3000, 7);
    for version in [1, 2] {
        let img = restore(dir.path(), &xml, &format!("deb{version}"), version, false);
        let o = check(&img, &[]);
        let err = stderr(&o);
        // Non-fatal only: v1 leaks a block, v2 marks unmapped blocks dirty.
        assert_eq!(o.status.code(), Some(1), "{err}");
        if version == 1 {
            assert!(err.contains("1 metadata blocks have leaked"), "{err}");
        } else {
            assert!(err.contains("unmapped cache blocks marked dirty"), "{err}");
        }
        assert!(err.contains("hint size is 0"), "{err}");
        let o = check(&img, &["--ignore-non-fatal-errors"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let ours = dump(&img, true);
        if version == 1 {
            assert_eq!(ours, dump(&img, false), "v1: byte for byte Debian's dump");
            assert_eq!(ours, xml);
        } else {
            // Debian's v2 dump ignores the dirty bitset; ours reads it.
            assert_eq!(dump(&img, false), all_clean(&xml));
            assert_eq!(ours, xml);
        }
    }
}

#[test]
fn we_restore_debian_checks_and_dumps_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let xml = gen_xml(5000, 11);
    for version in [1, 2] {
        let img = restore(dir.path(), &xml, &format!("ours{version}"), version, true);
        let o = debian_check(&img);
        assert!(o.status.success(), "Debian: {}", stderr(&o));
        let o = check(&img, &[]);
        assert!(o.status.success(), "ours: {}", stderr(&o));
        assert_eq!(dump(&img, true), xml);
        let theirs = dump(&img, false);
        if version == 1 {
            assert_eq!(theirs, xml);
        } else {
            assert_eq!(theirs, all_clean(&xml));
        }
        let sb = superblock(&img);
        assert_eq!(le32(&sb, VERSION), version);
        assert_eq!(le32(&sb, HINT_SIZE), 4);
        assert_eq!(le32(&sb, FLAGS), 1, "clean shutdown set");
    }
}

#[test]
fn restore_defaults_to_version_2_and_can_omit_the_clean_flag() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    std::fs::write(&input, gen_xml(100, 3)).unwrap();
    let out = dir.path().join("out");
    new_file(&out, 256 * 4096);
    let ok = |c: &mut Command| assert!(run(c).status.success());
    ok(pdt("cache_restore").args(["-q", "-i", s(&input), "-o", s(&out)]));
    assert_eq!(le32(&superblock(&out), VERSION), 2);
    ok(pdt("cache_restore").args(["-i", s(&input), "-o", s(&out), "--omit-clean-shutdown"]));
    assert_eq!(le32(&superblock(&out), FLAGS), 0);
    assert!(check(&out, &[]).status.success());
    let o =
        run(pdt("cache_restore").args(["-i", s(&input), "-o", s(&out), "--metadata-version", "3"]));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn lvm_calls_and_the_stray_empty_argument() {
    let dir = tempfile::tempdir().unwrap();
    let img = restore(dir.path(), &gen_xml(500, 5), "img", 1, false);
    // Set needs_check, resealed, as the kernel would.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[FLAGS] |= 2;
    seal(&mut bytes[..4096], SALT_CACHE_SUPERBLOCK);
    std::fs::write(&img, &bytes).unwrap();
    let o = run(pdt("cache_check").args(["-q", "--clear-needs-check-flag", "", s(&img)]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    assert_eq!(le32(&superblock(&img), FLAGS) & 2, 0, "needs_check cleared");
    // The flag's check freed Debian's leaked block too.
    assert!(check(&img, &[]).status.success());
    assert!(debian_check(&img).status.success());

    let out = dir.path().join("out");
    new_file(&out, 2048 * 4096);
    let o = run(pdt("cache_repair").args(["-i", s(&img), "-o", s(&out), ""]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(check(&out, &[]).status.success());
    assert_eq!(dump(&out, true), dump(&img, true));
    let o = run(pdt("cache_dump").args(["", s(&img)]));
    assert!(o.status.success());
}

#[test]
fn auto_repair_frees_leaks_only() {
    let dir = tempfile::tempdir().unwrap();
    let img = restore(dir.path(), &gen_xml(800, 9), "img", 1, false);
    let o = check(&img, &["--auto-repair"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("repaired 1 leaked blocks"));
    assert!(check(&img, &[]).status.success());
    assert!(debian_check(&img).status.success());
}

#[test]
fn options_of_both_generations() {
    let dir = tempfile::tempdir().unwrap();
    let img = restore(dir.path(), &gen_xml(300, 1), "img", 2, true);
    for args in [
        &["--super-block-only"][..],
        &["--skip-mappings"],
        &["--skip-hints", "--skip-discards"],
        &["--ignore-non-fatal-errors", "-q"],
    ] {
        let o = check(&img, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let out = dir.path().join("out.xml");
    let o = run(pdt("cache_dump").args(["-o", s(&out), s(&img)]));
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), dump(&img, true));
    let o = run(pdt("cache_dump").args(["--repair", s(&img)]));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), dump(&img, true));
    for tool in ["cache_check", "cache_dump", "cache_restore", "cache_repair"] {
        let o = run(pdt(tool).arg("--help"));
        assert!(o.status.success(), "{tool} --help");
        let o = run(pdt(tool).arg("--no-such-option"));
        assert_eq!(o.status.code(), Some(1), "{tool}");
    }
}

#[test]
fn bad_input_fails_promptly_and_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = d.join("empty");
    new_file(&empty, 0);
    let zero = d.join("zero");
    new_file(&zero, 64 * 4096);
    let missing = d.join("missing");
    let fifo = d.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for p in [d, &empty, &zero, &missing, &fifo] {
        for tool in ["cache_check", "cache_dump"] {
            let o = run(pdt(tool).arg(p));
            assert_eq!(o.status.code(), Some(1), "{tool} {}", p.display());
            assert!(!o.stderr.is_empty());
        }
        let o = run(pdt("cache_repair").args(["-i", s(p), "-o", s(&zero)]));
        assert_eq!(o.status.code(), Some(1), "repair {}", p.display());
    }
    // Truncated XML, and an output too small.
    let xml = gen_xml(20_000, 2);
    let input = d.join("in.xml");
    let cut = xml[..xml.len() / 2].rfind('\n').unwrap() + 1;
    std::fs::write(&input, &xml[..cut]).unwrap();
    let out = d.join("out");
    new_file(&out, 2048 * 4096);
    let o = run(pdt("cache_restore").args(["-i", s(&input), "-o", s(&out)]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    std::fs::write(&input, &xml).unwrap();
    let small = d.join("small");
    new_file(&small, 16 * 4096);
    let o = run(pdt("cache_restore").args(["-i", s(&input), "-o", s(&small)]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("blocks needed"), "{}", stderr(&o));
    // Hint width 0 (Debian's own restore crashes on it): a warning.
    let xml0 = gen_xml(50, 4).replace("hint_width=\"4\"", "hint_width=\"0\"");
    std::fs::write(&input, xml0).unwrap();
    let o = run(pdt("cache_restore").args(["-i", s(&input), "-o", s(&out)]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint width 0"));
    assert!(check(&out, &[]).status.success());
}

#[test]
fn repair_after_an_unclean_shutdown_marks_every_mapping_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let xml = gen_xml(2000, 13);
    let input = dir.path().join("in.xml");
    std::fs::write(&input, &xml).unwrap();
    let img = dir.path().join("img");
    new_file(&img, 1024 * 4096);
    let o =
        run(pdt("cache_restore").args(["-i", s(&input), "-o", s(&img), "--omit-clean-shutdown"]));
    assert!(o.status.success());
    // The dump shows what is on disk...
    assert_eq!(dump(&img, true), xml);
    // ...repair what the kernel would take: every mapping dirty.
    let out = dir.path().join("out");
    new_file(&out, 1024 * 4096);
    let o = run(pdt("cache_repair").args(["-i", s(&img), "-o", s(&out)]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not shut down cleanly"));
    let all_dirty = xml.replace("dirty=\"false\"", "dirty=\"true\"");
    assert_eq!(dump(&out, true), all_dirty);
}
