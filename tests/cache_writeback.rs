//! `pdt cache_writeback` on files: dirty blocks (every mapped block after
//! an unclean shutdown) copied from the fast file to the origin file at the
//! right places, in batches; the dirty bits cleared in one clean commit
//! (Debian's cache_check passes); a block that cannot be read stays dirty,
//! is listed, and makes the exit status 1; offsets; --no-metadata-update.

mod common;
use common::kernel::pattern;
use common::kernel_host::{exec, exec_ok, Script};
use common::oracle::{debian_cmd, run};
use common::tool::{file, pdt, s};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Cache block size: 64 sectors (32 KiB).
const BS: u64 = 64;
const BLOCK: usize = BS as usize * 512;
const NR_CACHE: u64 = 64;
const ORIGIN_BLOCKS: u64 = 256;

struct Setup {
    _dir: tempfile::TempDir,
    meta: PathBuf,
    fast: PathBuf,
    origin: PathBuf,
}

/// A cache whose block c holds pattern "fast c"; `maps` is (cblock,
/// oblock, dirty); committed clean or not.
fn setup(version: u32, maps: &[(u64, u64, bool)], clean: bool, fast_offset: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let meta = file(dir.path(), "meta", 8 << 20);
    let origin = file(dir.path(), "origin", ORIGIN_BLOCKS * BLOCK as u64);
    let fast = dir.path().join("fast");
    let mut bytes = vec![0u8; fast_offset as usize * 512];
    for c in 0..NR_CACHE {
        bytes.extend(pattern(&format!("fast{c}"), BLOCK));
    }
    std::fs::write(&fast, bytes).unwrap();
    let mut sc = Script::default();
    sc.op(format!("format {version} {BS} {NR_CACHE}"));
    for &(c, o, d) in maps {
        sc.op(format!("insert {c} {o}"));
        if d {
            sc.op(format!("dirty {c}"));
        }
    }
    sc.op(if clean { "commit_clean" } else { "commit" });
    exec_ok("cache_exec", &meta, &sc, "build the cache");
    Setup {
        _dir: dir,
        meta,
        fast,
        origin,
    }
}

fn writeback(st: &Setup, extra: &[&str]) -> (Option<i32>, String, String) {
    let o = run(pdt("cache_writeback")
        .args(["--metadata-device", s(&st.meta)])
        .args(["--origin-device", s(&st.origin)])
        .args(["--fast-device", s(&st.fast)])
        .args(extra));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Origin block -> the cache block whose data it holds (None: zeros).
fn origin_contents(origin: &Path, offset_sectors: u64) -> BTreeMap<u64, Option<u64>> {
    let bytes = std::fs::read(origin).unwrap();
    let start = offset_sectors as usize * 512;
    let mut out = BTreeMap::new();
    for (o, chunk) in bytes[start..].chunks(BLOCK).enumerate() {
        let holds = if chunk.iter().all(|&b| b == 0) {
            None
        } else {
            let c = (0..NR_CACHE).find(|&c| chunk == pattern(&format!("fast{c}"), BLOCK));
            Some(c.unwrap_or_else(|| panic!("origin block {o} holds something else")))
        };
        if holds.is_some() {
            out.insert(o as u64, holds);
        }
    }
    out
}

fn lookups(meta: &Path, cblocks: &[u64]) -> Vec<String> {
    let text: String = cblocks.iter().map(|c| format!("lookup {c}\n")).collect();
    exec("cache_exec", meta, &text).lines
}

fn debian_check(meta: &Path) {
    let o = run(debian_cmd("cache_check").arg(meta));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const MAPS: &[(u64, u64, bool)] = &[
    (0, 10, true),
    (1, 11, true),
    (2, 3, false),
    (3, 255, true),
    (5, 12, true),
    (9, 4, true),
    (10, 5, false),
];

#[test]
fn copies_dirty_blocks_and_clears_them() {
    for version in [1, 2] {
        let st = setup(version, MAPS, true, 0);
        let (rc, out, err) = writeback(&st, &["--buffer-size-meg", "1"]);
        assert_eq!(rc, Some(0), "{err}");
        assert_eq!(out, "5/5 blocks successfully copied\n");
        let want: BTreeMap<u64, Option<u64>> = MAPS
            .iter()
            .filter(|m| m.2)
            .map(|&(c, o, _)| (o, Some(c)))
            .collect();
        assert_eq!(origin_contents(&st.origin, 0), want);
        // All clean now, and trusted (the commit was a clean one).
        let cs: Vec<u64> = MAPS.iter().map(|m| m.0).collect();
        let got = lookups(&st.meta, &cs);
        for (l, m) in got.iter().zip(MAPS) {
            assert_eq!(l, &format!("{} clean", m.1));
        }
        debian_check(&st.meta);
        let (rc, out, _) = writeback(&st, &["-q"]);
        assert_eq!((rc, out.as_str()), (Some(0), ""));
    }
}

#[test]
fn after_an_unclean_shutdown_every_mapped_block_is_copied() {
    let st = setup(2, MAPS, false, 0);
    let (rc, out, _) = writeback(&st, &[]);
    assert_eq!(rc, Some(0));
    assert_eq!(out, "7/7 blocks successfully copied\n");
    let want: BTreeMap<u64, Option<u64>> = MAPS.iter().map(|&(c, o, _)| (o, Some(c))).collect();
    assert_eq!(origin_contents(&st.origin, 0), want);
    assert!(lookups(&st.meta, &[0, 2])
        .iter()
        .all(|l| l.ends_with("clean")));
    debian_check(&st.meta);
}

#[test]
fn a_block_that_cannot_be_read_stays_dirty() {
    for version in [1, 2] {
        let st = setup(version, MAPS, true, 0);
        // The fast file ends inside cache block 5: blocks 5 and 9 cannot be read.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&st.fast)
            .unwrap();
        f.set_len(5 * BLOCK as u64 + 100).unwrap();
        let (rc, out, err) = writeback(&st, &["--list-failed-blocks"]);
        assert_eq!(rc, Some(1), "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].starts_with("cache block 5 (origin block 12): reading the fast device failed")
        );
        assert!(
            lines[1].starts_with("cache block 9 (origin block 4): reading the fast device failed")
        );
        assert_eq!(lines[2], "3/5 blocks successfully copied");
        assert!(err.contains("2 blocks were not copied"), "{err}");
        let want = BTreeMap::from([(10, Some(0)), (11, Some(1)), (255, Some(3))]);
        assert_eq!(origin_contents(&st.origin, 0), want);
        assert_eq!(
            lookups(&st.meta, &[0, 3, 5, 9]),
            ["10 clean", "255 clean", "12 dirty", "4 dirty"]
        );
        debian_check(&st.meta);
    }
}

#[test]
fn offsets_and_a_short_origin() {
    let st = setup(1, MAPS, true, 24);
    // Block 255 lies past the end of the origin once it starts 16 sectors in.
    let (rc, out, _) = writeback(
        &st,
        &[
            "--fast-device-offset",
            "24",
            "--origin-device-offset",
            "16",
            "--list-failed-blocks",
        ],
    );
    assert_eq!(rc, Some(1));
    assert!(
        out.starts_with(
            "cache block 3 (origin block 255): it lies past the end of the origin device\n"
        ),
        "{out}"
    );
    let want = BTreeMap::from([(10, Some(0)), (11, Some(1)), (12, Some(5)), (4, Some(9))]);
    let got = origin_contents(&st.origin, 16);
    assert_eq!(got, want);
    assert_eq!(lookups(&st.meta, &[3, 9]), ["255 dirty", "4 clean"]);
}

#[test]
fn no_metadata_update_copies_only() {
    let st = setup(2, MAPS, true, 0);
    let before = std::fs::read(&st.meta).unwrap();
    let (rc, out, _) = writeback(&st, &["--no-metadata-update", "", "-q"]);
    assert_eq!((rc, out.as_str()), (Some(0), ""));
    assert_eq!(origin_contents(&st.origin, 0).len(), 5);
    assert!(
        std::fs::read(&st.meta).unwrap() == before,
        "metadata changed"
    );
}

#[test]
fn many_blocks_in_small_batches() {
    // Every cache block mapped, dirty, to origin blocks in reverse runs.
    let maps: Vec<(u64, u64, bool)> = (0..NR_CACHE).map(|c| (c, 100 + (c ^ 7), true)).collect();
    let st = setup(2, &maps, true, 0);
    let (rc, out, _) = writeback(&st, &["--buffer-size-meg", "1"]);
    assert_eq!(rc, Some(0));
    assert_eq!(
        out,
        format!("{NR_CACHE}/{NR_CACHE} blocks successfully copied\n")
    );
    let want: BTreeMap<u64, Option<u64>> = maps.iter().map(|&(c, o, _)| (o, Some(c))).collect();
    assert_eq!(origin_contents(&st.origin, 0), want);
}

#[test]
fn bad_command_lines_and_devices() {
    let st = setup(2, MAPS, true, 0);
    let o = run(pdt("cache_writeback").args(["--metadata-device", s(&st.meta)]));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No origin device"));
    let o = run(pdt("cache_writeback").arg("--frob"));
    assert_eq!(o.status.code(), Some(1));
    let dir = st.meta.parent().unwrap();
    for (m, f) in [
        (dir.join("nope"), st.fast.clone()),
        (st.meta.clone(), dir.to_path_buf()),
    ] {
        let o = run(pdt("cache_writeback")
            .args(["--metadata-device", s(&m)])
            .args(["--origin-device", s(&st.origin)])
            .args(["--fast-device", s(&f)]));
        assert_eq!(o.status.code(), Some(1));
        assert!(!o.stderr.is_empty());
    }
    let (rc, _, err) = writeback(&st, &["--buffer-size-meg", "0"]);
    assert_eq!(rc, Some(1), "{err}");
}
