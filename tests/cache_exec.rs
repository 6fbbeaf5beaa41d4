//! `pdt cache_exec`: operations, their output lines and errors, what an
//! unclean shutdown does to dirty bits and hints, aborting what follows the
//! last commit, and Debian's cache_check and cache_dump on what it wrote.

mod common;
use common::kernel_host::{exec, exec_ok, Script};
use common::oracle::{debian_cmd, run, xml_attr, xml_num};
use common::tool::{file, pdt, run_with_input, s};
use std::path::Path;

const META: u64 = 8 << 20;

fn script(lines: &[&str]) -> Script {
    let mut s = Script::default();
    for l in lines {
        s.op(l);
    }
    s
}

fn cache_exec(meta: &Path, lines: &[&str]) -> Vec<String> {
    exec("cache_exec", meta, &(lines.join("\n") + "\n")).lines
}

fn debian_check(meta: &Path) {
    let o = run(debian_cmd("cache_check").arg(meta));
    assert!(
        o.status.success(),
        "Debian's cache_check: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Debian's cache_dump: (cache block, origin block, dirty) of each mapping.
fn debian_mappings(meta: &Path) -> Vec<(u64, u64, bool)> {
    let o = run(debian_cmd("cache_dump").arg(meta));
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("<mapping "))
        .map(|l| {
            (
                xml_num(l, "cache_block"),
                xml_num(l, "origin_block"),
                xml_attr(l, "dirty") == Some("true"),
            )
        })
        .collect()
}

#[test]
fn operations_and_their_output() {
    let dir = tempfile::tempdir().unwrap();
    for version in ["1", "2"] {
        let meta = file(dir.path(), &format!("meta{version}"), META);
        let out = exec_ok(
            "cache_exec",
            &meta,
            &script(&[
                &format!("format {version} 128 1000"),
                "insert 0 100",
                "insert 1 101",
                "insert 999 7",
                "dirty 1",
                "lookup 0",
                "lookup 1",
                "lookup 2",
                "hint 0 7",
                "discard_size 256 50",
                "discard 3",
                "undiscard 3",
                "discard 4",
                "needs_check",
                "resize 2000",
                "commit_clean",
            ]),
            "build",
        );
        assert_eq!(out[5..8], ["100 clean", "101 dirty", "unmapped"]);
        assert_eq!(out[13], "false");
        debian_check(&meta);
        let m = debian_mappings(&meta);
        assert_eq!(
            m.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            [(0, 100), (1, 101), (999, 7)]
        );
        if version == "1" {
            // Debian's 0.9.0 reads the v1 dirty flags (not v2's bitset).
            assert_eq!(
                m.iter().map(|x| x.2).collect::<Vec<_>>(),
                [false, true, false]
            );
        }
        // A clean shutdown is trusted: the dirty bits as they were.
        let out = cache_exec(&meta, &["lookup 0", "lookup 1", "remove 0", "commit"]);
        assert_eq!(out, ["100 clean", "101 dirty", "ok", "ok"]);
        // After an unclean one every mapped block counts dirty.
        let out = cache_exec(
            &meta,
            &["lookup 0", "lookup 999", "clean 999", "lookup 999"],
        );
        assert_eq!(out, ["unmapped", "7 dirty", "ok", "7 clean"]);
        debian_check(&meta);
    }
}

#[test]
fn input_without_a_commit_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let meta = file(dir.path(), "meta", META);
    exec_ok(
        "cache_exec",
        &meta,
        &script(&["format 2 64 100", "insert 5 50", "commit_clean"]),
        "format",
    );
    let out = cache_exec(&meta, &["insert 6 60", "remove 5", "lookup 6"]);
    assert_eq!(out, ["ok", "ok", "60 clean"]);
    let out = cache_exec(&meta, &["lookup 5", "lookup 6", "abort", "lookup 5"]);
    // The aborted session's open already cleared the clean flag.
    assert_eq!(out, ["50 dirty", "unmapped", "ok", "50 dirty"]);
    debian_check(&meta);
}

#[test]
fn errors_are_reported_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let meta = file(dir.path(), "meta", META);
    let r = exec(
        "cache_exec",
        &meta,
        "lookup 0\nformat 3 128 10\nformat 2 100 10\nformat 2 128 10 smq\nformat 2 128 10\n\
         # a comment\n\nformat 2 128 10\nbogus\ninsert 1\ninsert x 1\ninsert 10 1\n\
         insert 0 1\ninsert 1 1\ndirty 2\nhint 0 x\ndiscard 0\nresize 0\nneeds_check maybe\n\
         needs_check set\nneeds_check\ncommit\n",
    );
    assert!(!r.success);
    let want_prefixes = [
        "error: no cache superblock",
        "error: metadata version 3",
        "error: cache block size 100",
        "error: 'format' takes the policy",
        "ok",
        "error: metadata already present",
        "error: unknown operation 'bogus'",
        "error: 'insert' takes 2 argument(s), not 1",
        "error: 'x' is not a number",
        "error: cache block 10 is out of range",
        "ok",
        "error: origin block 1 is already cached in cache block 0",
        "error: cache block 2 is not mapped",
        "error: 'x' is not a number",
        "error: discard block 0 is out of range",
        "ok",
        "error: needs_check takes 'set' or 'clear'",
        "ok",
        "true",
        "ok",
    ];
    assert_eq!(r.lines.len(), want_prefixes.len(), "{:?}", r.lines);
    for (got, want) in r.lines.iter().zip(want_prefixes) {
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }
    // --stop-on-error stops at the first failure.
    let o = run_with_input(
        pdt("cache_exec").args(["--stop-on-error", s(&meta)]),
        Some("needs_check\nbogus\nneeds_check\n"),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "true\nerror: unknown operation 'bogus'\n"
    );
    // Bad command lines and devices.
    assert_eq!(run(pdt("cache_exec").arg("--frob")).status.code(), Some(2));
    assert_eq!(run(&mut pdt("cache_exec")).status.code(), Some(2));
    let o = run(pdt("cache_exec").arg(dir.path().join("missing")));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open"));
    let o = run_with_input(pdt("cache_exec").arg(dir.path()), Some("lookup 0\n"));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn force_formats_over_metadata_and_policies_without_hints() {
    let dir = tempfile::tempdir().unwrap();
    let meta = file(dir.path(), "meta", META);
    exec_ok(
        "cache_exec",
        &meta,
        &script(&["format 1 128 10", "insert 0 1", "commit"]),
        "v1",
    );
    let o = run_with_input(
        pdt("cache_exec").args(["--force", s(&meta)]),
        Some("format 2 128 10 cleaner 0\nlookup 0\nhint 0 1\ncommit_clean\n"),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().collect::<Vec<_>>()[..2], ["ok", "unmapped"]);
    assert!(out.contains("error: the policy has no hints"), "{out}");
    debian_check(&meta);
    let dump = run(debian_cmd("cache_dump").arg(&meta));
    let dump = String::from_utf8_lossy(&dump.stdout);
    // (Debian's 0.9.0 prints hint_width="4" whatever the superblock says.)
    assert!(dump.contains("policy=\"cleaner\""), "{dump}");
    assert!(!dump.contains("<hint "), "{dump}");
}
