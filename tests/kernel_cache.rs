//! Kernel oracle for dm-cache: Debian's real dm-cache, booted under qemu by
//! `tests/kernel/run-guest.sh`, activates caches on metadata that
//! `pdt cache_exec` or `pdt cache_restore` wrote (versions 1 and 2, smq),
//! serves reads from the
//! cache blocks pdt mapped and takes writes; pdt's library then reads what
//! the kernel committed (the dirty blocks the workload implies, its hints),
//! Debian's cache_check and ours pass (and for version 1 our cache_dump is
//! Debian's), and `pdt cache_writeback` copies the dirty
//! blocks home. A metadata device that fails during a cache commit
//! (dm-flakey) leaves the transaction before it.
//!
//! As the other kernel tests: nothing skips itself; see tests/kernel/README.md.

mod common;
use cache::CacheMetadata;
use common::kernel::*;
use common::kernel_host::*;
use common::oracle::{debian_cmd, run};
use common::tool::{new_file, ok, pdt, s};
use pdata::io::FileDevice;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// Cache blocks of the fast device ($DATA) and origin blocks ($EXTRA1).
const NR_CACHE: u64 = 64;
const NR_ORIGIN: u64 = 256;
/// Cache blocks pdt maps (c to origin block 100 + 2c); the first three dirty.
const MAPPED: u64 = 40;
const DIRTY: [u64; 3] = [0, 1, 2];

fn maps() -> Vec<(u64, u64)> {
    (0..MAPPED).map(|c| (c, 100 + 2 * c)).collect()
}

fn dirty_pattern(c: u64) -> Vec<u8> {
    pattern(&format!("dirty{c}"), BLOCK)
}

fn origin_pattern(o: u64) -> Vec<u8> {
    pattern(&format!("orig{o}"), BLOCK)
}

/// The images of one cache: metadata, fast device and origin, and what the
/// cached device holds, block by block.
struct CacheImages {
    tmp: Scratch,
    meta: std::path::PathBuf,
    fast: std::path::PathBuf,
    origin: std::path::PathBuf,
    /// Origin block -> the data the cached device holds there.
    logical: BTreeMap<u64, Vec<u8>>,
}

/// How pdt writes the cache's metadata.
#[derive(Clone, Copy)]
enum Build {
    /// `pdt cache_exec`: the live library, one operation at a time.
    Exec,
    /// `pdt cache_restore` from XML: the bulk builder.
    Restore,
}

/// pdt's cache: a clean mapped block holds a copy of its origin block, a
/// dirty one newer data; unmapped cache blocks hold junk.
fn cache_images(version: u32) -> CacheImages {
    cache_images_by(version, Build::Exec)
}

fn cache_images_by(version: u32, build: Build) -> CacheImages {
    let tmp = Scratch::new("pdt-kernel-cache.", "images, console logs, guest output");
    let meta = tmp.path().join("meta.img");
    let fast = tmp.path().join("fast.img");
    let origin = tmp.path().join("origin.img");
    new_file(&meta, META_BYTES);
    new_file(&fast, NR_CACHE * BLOCK as u64);
    new_file(&origin, NR_ORIGIN * BLOCK as u64);
    let mut logical = BTreeMap::new();
    for o in 0..NR_ORIGIN {
        write_data_block(&origin, o, &origin_pattern(o));
        logical.insert(o, origin_pattern(o));
    }
    for c in 0..NR_CACHE {
        write_data_block(&fast, c, &pattern(&format!("junk{c}"), BLOCK));
    }
    let mut sc = Script::default();
    sc.op(format!("format {version} {BS} {NR_CACHE}"));
    for (c, o) in maps() {
        sc.op(format!("insert {c} {o}"));
        let data = if DIRTY.contains(&c) {
            sc.op(format!("dirty {c}"));
            dirty_pattern(c)
        } else {
            origin_pattern(o)
        };
        write_data_block(&fast, c, &data);
        logical.insert(o, data);
    }
    sc.op("commit_clean");
    match build {
        Build::Exec => {
            exec_ok("cache_exec", &meta, &sc, "build the cache");
        }
        Build::Restore => restore_cache(&meta, version, tmp.path()),
    }
    CacheImages {
        tmp,
        meta,
        fast,
        origin,
        logical,
    }
}

/// The committed metadata `r` and the two devices describe the cached
/// device `logical`: a dirty block's data is in the cache, a clean block's
/// also on the origin, an unmapped block's on the origin. The dirty blocks.
fn expect_consistent(im: &CacheImages, r: &Read, what: &str, boot: &Boot) -> BTreeSet<u64> {
    let mut mapped = BTreeSet::new();
    let mut dirty = BTreeSet::new();
    for (&c, &(o, d)) in &r.mappings {
        assert!(mapped.insert(o), "{what}: origin block {o} cached twice");
        let want = &im.logical[&o];
        assert!(
            read_data_block(&im.fast, c) == *want,
            "{what}: cache block {c} (origin block {o}, dirty {d}) does not hold the data\n{}",
            boot.tail()
        );
        if d {
            dirty.insert(c);
        } else {
            assert!(
                read_data_block(&im.origin, o) == *want,
                "{what}: cache block {c} is clean but origin block {o} differs\n{}",
                boot.tail()
            );
        }
    }
    for (o, want) in &im.logical {
        if !mapped.contains(o) {
            assert!(
                read_data_block(&im.origin, *o) == *want,
                "{what}: uncached origin block {o} does not hold the data\n{}",
                boot.tail()
            );
        }
    }
    dirty
}

/// The guest's cache-params: block size, origin size, feature args.
fn params(g: &mut GuestFiles, version: u32) {
    let features = if version == 2 {
        "2 metadata2 writeback"
    } else {
        "1 writeback"
    };
    g.file(
        "cache-params",
        format!(
            "BS={BS}\nORIGIN_SECTORS={}\nFEATURES='{features}'\n",
            NR_ORIGIN * BS
        )
        .as_bytes(),
    );
}

fn boot_cache(name: &str, im: &CacheImages, scenario: &str, g: &GuestFiles) -> Boot {
    let b = boot_with(
        name,
        im.tmp.path(),
        &[&im.meta, &im.fast, &im.origin],
        scenario,
        &g.files,
    );
    b.assert_ok();
    b
}

/// What pdt's library reads of committed metadata.
struct Read {
    clean: bool,
    needs_check: bool,
    mappings: BTreeMap<u64, (u64, bool)>,
    hints: Option<Vec<u32>>,
    stats: [u32; 4],
}

fn read_cache(meta: &Path) -> Read {
    let dev = Arc::new(FileDevice::open(meta, false).expect("open the metadata"));
    let md = CacheMetadata::open(dev, false).expect("pdt opens what the kernel wrote");
    let mappings = md
        .mappings()
        .expect("mappings")
        .into_iter()
        .map(|(c, m)| (u64::from(c), (m.oblock, m.dirty)))
        .collect();
    let s = md.stats();
    Read {
        clean: md.clean_when_opened(),
        needs_check: md.needs_check(),
        mappings,
        hints: md.hints().expect("hints"),
        stats: [s.read_hits, s.read_misses, s.write_hits, s.write_misses],
    }
}

/// The same cache as the script of `cache_images_by`, written by
/// `pdt cache_restore` from XML.
fn restore_cache(meta: &Path, version: u32, dir: &Path) {
    let mut xml = format!(
        "<superblock uuid=\"\" block_size=\"{BS}\" nr_cache_blocks=\"{NR_CACHE}\" policy=\"smq\" hint_width=\"4\">\n  <mappings>\n"
    );
    for (c, o) in maps() {
        let dirty = DIRTY.contains(&c);
        xml +=
            &format!("    <mapping cache_block=\"{c}\" origin_block=\"{o}\" dirty=\"{dirty}\"/>\n");
    }
    xml += "  </mappings>\n</superblock>\n";
    let path = dir.join("cache.xml");
    std::fs::write(&path, xml).expect("writing the cache XML");
    ok(pdt("cache_restore")
        .args(["-i", s(&path), "-o", s(meta)])
        .args(["--metadata-version", &version.to_string()]));
}

/// Debian's cache_check and ours on what the kernel committed: both pass,
/// and (version 1, which Debian dumps right) both dumps are the same.
fn cache_checks(meta: &Path, boot: &Boot, version: u32) {
    debian_cache_check(meta, boot);
    let o = run(pdt("cache_check").arg(meta));
    assert!(
        o.status.success(),
        "pdt cache_check on what the kernel wrote: {}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        boot.tail()
    );
    if version == 1 {
        let ours = ok(pdt("cache_dump").arg(meta));
        let theirs = ok(debian_cmd("cache_dump").arg(meta));
        assert!(
            ours == theirs,
            "cache_dump of what the kernel wrote: ours differs from Debian's\nours:\n{}\nDebian's:\n{}",
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }
}

fn debian_cache_check(meta: &Path, boot: &Boot) {
    let o = run(debian_cmd("cache_check").arg(meta));
    assert!(
        o.status.success(),
        "Debian's cache_check on what the kernel wrote: {}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        boot.tail()
    );
}

/// Status fields of a cache (after "cache"): the four statistics, dirty.
fn cache_stats(fields: &[String]) -> ([u32; 4], u64) {
    let n = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("cache status {fields:?}"))
    };
    ([n(4) as u32, n(5) as u32, n(6) as u32, n(7) as u32], n(10))
}

/// dm-cache serves the cache pdt wrote; pdt reads what it committed.
fn kernel_serves_cache_made_by_pdt(version: u32, build: Build) {
    let mut im = cache_images_by(version, build);
    let mut g = GuestFiles::new(&im.tmp.path().join("guest"));
    params(&mut g, version);
    // Reads of dirty, clean and uncached blocks.
    let reads: Vec<u64> = [0, 1, 2, 3, 20, 39]
        .iter()
        .map(|&c| maps()[c].1)
        .chain([0, 50, 101, 255])
        .collect();
    g.list(
        "reads.txt",
        &reads
            .iter()
            .map(|&o| read_line("cache", o, &format!("r-{o}.bin")))
            .collect::<Vec<_>>(),
    );
    // Writes over a dirty block, a clean one and an uncached one.
    let written: Vec<u64> = vec![maps()[1].1, maps()[3].1, 50];
    let mut writes = vec![];
    let mut after = vec![];
    for &o in &written {
        let data = pattern(&format!("new{o}"), BLOCK);
        g.file(&format!("w-{o}.bin"), &data);
        writes.push(write_line("cache", o * PAGES, &format!("w-{o}.bin")));
        after.push(read_line("cache", o, &format!("a-{o}.bin")));
        im.logical.insert(o, data);
    }
    g.list("writes.txt", &writes);
    g.list("reads-after.txt", &after);
    let before = cache_images_logical_before(&reads, &im, &written);
    let b = boot_cache(&format!("cache-pdt-v{version}"), &im, "cache-pdt.sh", &g);

    // The kernel read pdt's mappings and dirty data, then what was written.
    for (o, want) in &before {
        b.expect_file(
            &format!("r-{o}.bin"),
            want,
            &format!("v{version}: origin block {o}"),
        );
    }
    for o in &written {
        b.expect_file(&format!("a-{o}.bin"), &im.logical[o], "a write reads back");
    }
    let (_, dirty_before) = cache_stats(&b.status("status-before.txt")["cache"]);
    assert_eq!(
        dirty_before,
        3,
        "the kernel loads pdt's 3 dirty blocks\n{}",
        b.tail()
    );
    let st = b.status("status-after.txt");

    cache_checks(&im.meta, &b, version);
    let r = read_cache(&im.meta);
    assert!(
        r.clean && !r.needs_check,
        "v{version}: the kernel shut down clean"
    );
    let dirty = expect_consistent(&im, &r, &format!("v{version} after the kernel"), &b);
    // The kernel wrote its dirty blocks and nothing wrote them back; the
    // written blocks it kept cached are dirty.
    for c in DIRTY {
        assert_eq!(
            r.mappings.get(&c),
            Some(&(maps()[c as usize].1, true)),
            "cache block {c}"
        );
    }
    let (stats, dirty_after) = cache_stats(&st["cache"]);
    assert_eq!(
        dirty.len() as u64,
        dirty_after,
        "pdt's dirty blocks are the kernel's\n{}",
        b.tail()
    );
    assert!(
        r.hints.is_some_and(|h| h.len() == NR_CACHE as usize),
        "smq saved its hints"
    );
    assert_eq!(r.stats, stats, "the statistics the kernel saved");

    // pdt cache_writeback copies the dirty blocks home, clean after.
    let out = ok(pdt("cache_writeback")
        .args(["--metadata-device", s(&im.meta)])
        .args(["--origin-device", s(&im.origin)])
        .args(["--fast-device", s(&im.fast)]));
    let n = dirty.len();
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("{n}/{n} blocks successfully copied\n")
    );
    let r = read_cache(&im.meta);
    assert!(r.clean && r.mappings.values().all(|m| !m.1));
    expect_consistent(&im, &r, "after pdt cache_writeback", &b);
    for (o, want) in &im.logical {
        assert!(
            read_data_block(&im.origin, *o) == *want,
            "origin block {o} after writeback"
        );
    }
    cache_checks(&im.meta, &b, version);
}

/// What the guest's first reads must return: the data before the writes.
fn cache_images_logical_before(
    reads: &[u64],
    im: &CacheImages,
    written: &[u64],
) -> Vec<(u64, Vec<u8>)> {
    let by_oblock: BTreeMap<u64, u64> = maps().iter().map(|&(c, o)| (o, c)).collect();
    reads
        .iter()
        .map(|&o| {
            let want = if written.contains(&o) {
                match by_oblock.get(&o) {
                    Some(&c) if DIRTY.contains(&c) => dirty_pattern(c),
                    _ => origin_pattern(o),
                }
            } else {
                im.logical[&o].clone()
            };
            (o, want)
        })
        .collect()
}

#[test]
fn kernel_serves_cache_made_by_pdt_v1() {
    kernel_serves_cache_made_by_pdt(1, Build::Exec);
}

#[test]
fn kernel_serves_cache_restored_by_pdt_v1() {
    kernel_serves_cache_made_by_pdt(1, Build::Restore);
}

#[test]
fn kernel_serves_cache_restored_by_pdt_v2() {
    kernel_serves_cache_made_by_pdt(2, Build::Restore);
}

#[test]
fn kernel_serves_cache_made_by_pdt_v2() {
    kernel_serves_cache_made_by_pdt(2, Build::Exec);
}

/// The metadata device fails while the cache commits on suspend: what is
/// left is the commit before, and it checks clean.
#[test]
fn failed_kernel_cache_commit_leaves_the_previous_transaction() {
    let mut im = cache_images(2);
    let mut g = GuestFiles::new(&im.tmp.path().join("guest"));
    params(&mut g, 2);
    let new = pattern("new", BLOCK);
    g.file("w.bin", &new);
    for c in [4, 5] {
        im.logical.insert(maps()[c].1, new.clone());
    }
    // Write hits on cache blocks 4 and 5 (clean until now).
    g.list(
        "writes-1.txt",
        &[4, 5].map(|c| write_line("cache", maps()[c].1 * PAGES, "w.bin")),
    );
    g.list(
        "reads-2.txt",
        &[0, 6, 7].map(|c| read_line("cache", maps()[c].1, &format!("r2-{c}.bin"))),
    );
    let b = boot_cache("cache-flakey", &im, "cache-flakey.sh", &g);
    let (s1, _) = cache_stats(&b.status("status-1.txt")["cache"]);
    let (s2, _) = cache_stats(&b.status("status-2.txt")["cache"]);
    assert_ne!(s1, s2, "the reads after the failure changed the statistics");

    cache_checks(&im.meta, &b, 2);
    let r = read_cache(&im.meta);
    assert!(!r.needs_check);
    assert_eq!(
        r.stats,
        s1,
        "on disk: transaction 1's statistics\n{}",
        b.tail()
    );
    // Whatever the policy moved before the failure, the committed state
    // describes the device (after an unclean one every block counts dirty).
    let dirty = expect_consistent(&im, &r, "after the failed commit", &b);
    if !r.clean {
        assert_eq!(dirty.len(), r.mappings.len());
    }
    let left = String::from_utf8_lossy(&b.out_file("left-over.txt")).into_owned();
    assert!(!left.contains("cache"), "devices left: {left}");
}
