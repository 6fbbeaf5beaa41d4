//! `thin_shrink` on random pools (devices, snapshots sharing blocks) and
//! random new sizes: the output checks clean (ours and Debian's), every
//! volume reads back the same through the new mappings, shared blocks stay
//! shared, the old metadata and every block it maps are untouched, and a
//! size too small is refused with the exact number of blocks missing,
//! nothing written. Then bad input.

mod common;

use common::dump::{parse_dump, Dump};
use common::oracle::debian_cmd;
use common::rng::XorShift;
use common::tool::{file, ok, pdt, run, s};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// 128 sectors, the smallest data block.
const BLOCK_SECTORS: u64 = 128;
const BLOCK: u64 = BLOCK_SECTORS * 512;
const META_BYTES: u64 = 4 << 20;

/// A pool: its size and each device's mappings (origin -> (data, time)).
struct Pool {
    nr_blocks: u64,
    devs: BTreeMap<u64, BTreeMap<u64, (u64, u32)>>,
}

impl Pool {
    /// Thin devices and snapshots of them (which share their origin's
    /// blocks, then remap, drop and add some), from `seed`.
    fn random(seed: u64) -> Pool {
        let mut r = XorShift(seed | 1);
        let nr_blocks = 16 + r.below(144);
        let mut fresh: Vec<u64> = (0..nr_blocks).collect();
        for i in (1..fresh.len()).rev() {
            fresh.swap(i, r.below(i as u64 + 1) as usize);
        }
        fresh.truncate(1 + r.below(nr_blocks * 3 / 4) as usize);
        let mut devs: BTreeMap<u64, BTreeMap<u64, (u64, u32)>> = BTreeMap::new();
        for id in 0..1 + r.below(4) {
            let mut map = BTreeMap::new();
            if id > 0 && r.below(3) != 0 {
                let origin = r.below(id);
                map = devs[&(origin * 3 + 1)].clone();
                map.retain(|_, _| r.below(5) != 0);
                for v in map.values_mut() {
                    if r.below(3) == 0 {
                        if let Some(b) = fresh.pop() {
                            *v = (b, 2);
                        }
                    }
                }
            }
            for _ in 0..r.below(30) {
                let Some(b) = fresh.pop() else { break };
                map.insert(r.below(300), (b, 1));
            }
            devs.insert(id * 3 + 1, map);
        }
        Pool { nr_blocks, devs }
    }

    fn xml(&self) -> String {
        let mut x = format!(
            "<superblock uuid=\"\" time=\"2\" transaction=\"9\" data_block_size=\"{BLOCK_SECTORS}\" nr_data_blocks=\"{}\">\n",
            self.nr_blocks
        );
        for (id, map) in &self.devs {
            let _ = writeln!(
                x,
                "<device dev_id=\"{id}\" mapped_blocks=\"{}\" transaction=\"{id}\" creation_time=\"1\" snap_time=\"2\">",
                map.len()
            );
            for (o, (d, t)) in map {
                let _ = writeln!(
                    x,
                    "<single_mapping origin_block=\"{o}\" data_block=\"{d}\" time=\"{t}\"/>"
                );
            }
            x += "</device>\n";
        }
        x + "</superblock>\n"
    }

    /// Distinct data blocks mapped.
    fn nr_mapped(&self) -> u64 {
        let mut all: Vec<u64> = self
            .devs
            .values()
            .flat_map(|m| m.values().map(|v| v.0))
            .collect();
        all.sort_unstable();
        all.dedup();
        all.len() as u64
    }
}

/// Files of one case: metadata in, metadata out, data.
struct Case {
    _dir: tempfile::TempDir,
    xml: PathBuf,
    meta: PathBuf,
    out: PathBuf,
    data: PathBuf,
}

fn setup(pool: &Pool, seed: u64) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("pool.xml");
    std::fs::write(&xml, pool.xml()).unwrap();
    let meta = file(dir.path(), "meta", META_BYTES);
    ok(pdt("thin_restore").args(["-i", s(&xml), "-o", s(&meta)]));
    let out = file(dir.path(), "out", META_BYTES);
    let data = file(dir.path(), "data", pool.nr_blocks * BLOCK);
    // Every block, mapped or free, gets its own bytes at three places (the
    // rest stays a hole): a partial copy or a copy from the wrong block shows.
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    let mut r = XorShift(seed ^ 0x5eed);
    for b in 0..pool.nr_blocks {
        for at in [0, BLOCK / 2 - 8, BLOCK - 16] {
            f.write_all_at(&r.next().to_le_bytes(), b * BLOCK + at)
                .unwrap();
            f.write_all_at(&r.next().to_le_bytes(), b * BLOCK + at + 8)
                .unwrap();
        }
    }
    Case {
        _dir: dir,
        xml,
        meta,
        out,
        data,
    }
}

/// A digest of each data block of `path`.
fn block_digests(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks(BLOCK as usize)
        .map(|c| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            c.hash(&mut h);
            h.finish()
        })
        .collect()
}

fn dump(meta: &Path) -> Dump {
    let xml = String::from_utf8(ok(pdt("thin_dump").arg(meta))).unwrap();
    parse_dump(&xml).unwrap().0
}

/// `thin_shrink -i META -o OUT --data DATA --nr-blocks N`.
fn shrink_cmd(meta: &Path, out: &Path, data: &Path, n: &str) -> std::process::Command {
    let mut cmd = pdt("thin_shrink");
    cmd.args([
        "-i",
        s(meta),
        "-o",
        s(out),
        "--data",
        s(data),
        "--nr-blocks",
        n,
    ]);
    cmd
}

fn check_shrink(seed: u64, mode: u64) -> Result<(), TestCaseError> {
    let pool = Pool::random(seed);
    let c = setup(&pool, seed);
    let d = pool.nr_mapped();
    let mut r = XorShift(seed.rotate_left(17) | 1);
    let n = match mode {
        0 => d.max(1),
        1 => d.saturating_sub(1 + r.below(d)).max(1),
        2 => d + r.below(pool.nr_blocks - d + 1),
        _ => pool.nr_blocks + r.below(10),
    }
    .max(1);
    let meta_before = std::fs::read(&c.meta).unwrap();
    let data_before = block_digests(&c.data);
    let before = dump(&c.meta);
    let o = run(&mut shrink_cmd(&c.meta, &c.out, &c.data, &n.to_string()));
    let err = String::from_utf8_lossy(&o.stderr);
    prop_assert_eq!(
        std::fs::read(&c.meta).unwrap(),
        meta_before,
        "input changed"
    );
    let data_after = block_digests(&c.data);
    // The old pool is intact: every block it maps holds what it held.
    for m in before.devs.values().flat_map(|d| d.map.values()) {
        prop_assert_eq!(data_after[m.0 as usize], data_before[m.0 as usize]);
    }
    if d > n {
        prop_assert!(!o.status.success());
        let missing = format!(": {} blocks missing", d - n);
        prop_assert!(err.contains(&missing), "{} (expected {})", err, missing);
        prop_assert_eq!(&data_after, &data_before, "data written");
        let out = std::fs::read(&c.out).unwrap();
        prop_assert!(out.iter().all(|&b| b == 0), "output written");
        let out_xml = c.out.with_extension("xml");
        let o = run(&mut shrink_cmd(&c.xml, &out_xml, &c.data, &n.to_string()));
        prop_assert!(String::from_utf8_lossy(&o.stderr).contains(&missing));
        prop_assert!(!out_xml.exists(), "XML output written");
        return Ok(());
    }
    prop_assert!(o.status.success(), "n {}, mapped {}: {}", n, d, err);
    ok(pdt("thin_check").arg(&c.out));
    let deb = run(debian_cmd("thin_check").arg(&c.out));
    prop_assert!(
        deb.status.success(),
        "{}",
        String::from_utf8_lossy(&deb.stderr)
    );
    let after = dump(&c.out);
    prop_assert_eq!(after.nr_data, Some(n));
    prop_assert_eq!(
        (after.time, after.trans, after.block_size),
        (before.time, before.trans, before.block_size)
    );
    // The XML form (1.x's default) makes the same moves.
    let out_xml = c.out.with_extension("xml");
    ok(shrink_cmd(&c.xml, &out_xml, &c.data, &n.to_string()).arg("--no-copy"));
    let (from_xml, _) = parse_dump(&std::fs::read_to_string(&out_xml).unwrap()).unwrap();
    prop_assert_eq!(&from_xml.devs, &after.devs);
    prop_assert_eq!(from_xml.nr_data, Some(n));
    // Old block -> new block is one-to-one, for every mapping of every device.
    let (mut fwd, mut back) = (HashMap::new(), HashMap::new());
    prop_assert_eq!(after.devs.len(), before.devs.len());
    for (id, old) in &before.devs {
        let new = &after.devs[id];
        prop_assert_eq!(
            (new.mapped, new.trans, new.ctime, new.stime),
            (old.mapped, old.trans, old.ctime, old.stime)
        );
        prop_assert_eq!(new.map.len(), old.map.len());
        for (o, &(ob, ot)) in &old.map {
            let &(nb, nt) = new
                .map
                .get(o)
                .ok_or_else(|| TestCaseError::fail("lost a mapping"))?;
            prop_assert_eq!(nt, ot);
            prop_assert!(nb < n, "block {} past the new end {}", nb, n);
            prop_assert_eq!(*fwd.entry(ob).or_insert(nb), nb, "a shared block split");
            prop_assert_eq!(*back.entry(nb).or_insert(ob), ob, "two blocks merged");
            // The volume reads the same.
            prop_assert_eq!(data_after[nb as usize], data_before[ob as usize]);
            if ob < n {
                prop_assert_eq!(nb, ob, "a block below the new size moved");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn shrunk_pools_read_back_the_same(seed in any::<u64>(), mode in 0..4u64) {
        check_shrink(seed, mode)?;
    }
}

/// A small fixed pool: device 1 maps 0..4 to data 0..4 and 10..12 to
/// data 40..42; its snapshot 2 shares them all and maps 20 to data 45.
fn small_case() -> (Pool, Case) {
    let mut a: BTreeMap<u64, (u64, u32)> = (0..4).map(|i| (i, (i, 1))).collect();
    a.extend((10..12).map(|i| (i, (i + 30, 1))));
    let mut b = a.clone();
    b.insert(20, (45, 2));
    let pool = Pool {
        nr_blocks: 48,
        devs: BTreeMap::from([(1, a), (2, b)]),
    };
    let c = setup(&pool, 7);
    (pool, c)
}

fn fails_with(cmd: &mut std::process::Command, what: &str) {
    let o = run(cmd);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{cmd:?} succeeded");
    assert!(err.contains(what), "{cmd:?}: {err} (expected '{what}')");
}

#[test]
fn no_copy_grow_and_1x_spelling() {
    let (_, c) = small_case();
    let data = std::fs::read(&c.data).unwrap();
    ok(pdt("thin_shrink").args([
        "-i",
        s(&c.meta),
        "-o",
        s(&c.out),
        "--nr-blocks",
        "8",
        "--no-copy",
    ]));
    assert_eq!(
        std::fs::read(&c.data).unwrap(),
        data,
        "--no-copy wrote data"
    );
    let after = dump(&c.out);
    assert_eq!(after.nr_data, Some(8));
    assert_eq!(after.devs[&2].map[&20].0, 6);
    // A larger size moves nothing and only rewrites the size.
    ok(shrink_cmd(&c.meta, &c.out, &c.data, "100").arg("--binary"));
    assert_eq!(std::fs::read(&c.data).unwrap(), data);
    let (before, after) = (dump(&c.meta), dump(&c.out));
    assert_eq!(after.nr_data, Some(100));
    assert_eq!(after.devs, before.devs);
    // The XML form copies the data as the binary form does.
    let xml_data = c.data.with_extension("xml-data");
    std::fs::copy(&c.data, &xml_data).unwrap();
    let out_xml = c.out.with_extension("xml");
    ok(&mut shrink_cmd(&c.xml, &out_xml, &xml_data, "7"));
    ok(&mut shrink_cmd(&c.meta, &c.out, &c.data, "7"));
    assert_eq!(block_digests(&xml_data), block_digests(&c.data));
    assert_ne!(std::fs::read(&c.data).unwrap(), data, "nothing copied");
    let (from_xml, _) = parse_dump(&std::fs::read_to_string(&out_xml).unwrap()).unwrap();
    assert_eq!(from_xml.devs, dump(&c.out).devs);
}

#[test]
fn a_held_metadata_snapshot_is_dropped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let script = "format 128 64\ncreate_thin 1\nprovision 1 0\nprovision 1 1\nprovision 1 2\ncommit\ncreate_snap 2 1\nreserve_metadata_snap\nprovision 2 1\nremove 1 0\ncommit\n";
    let meta = common::pool::exec_pool(dir.path(), "meta", META_BYTES, script);
    let out = file(dir.path(), "out", META_BYTES);
    let data = file(dir.path(), "data", 64 * BLOCK);
    let o = run(&mut shrink_cmd(&meta, &out, &data, "4"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("metadata snapshot is not carried over"));
    ok(debian_cmd("thin_check").arg(&out));
    fails_with(pdt("thin_dump").args(["-m", s(&out)]), "snapshot");
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let (_, c) = small_case();
    let dir = c.meta.parent().unwrap().to_path_buf();
    let data = std::fs::read(&c.data).unwrap();
    let shrink_to = |n: &str, i: &Path, o: &Path, d: &Path| shrink_cmd(i, o, d, n);
    // 7 distinct blocks mapped: 4 blocks are 3 too few.
    fails_with(
        &mut shrink_to("4", &c.meta, &c.out, &c.data),
        ": 3 blocks missing",
    );
    fails_with(
        &mut shrink_to("6", &c.meta, &c.out, &c.data),
        ": 1 blocks missing",
    );
    fails_with(&mut shrink_to("8", &c.meta, &c.meta, &c.data), "same file");
    fails_with(
        &mut shrink_to("8", &c.meta, &c.out, &c.meta),
        "also named as metadata",
    );
    fails_with(&mut shrink_to("8", &c.meta, &c.out, &dir), "directory");
    fails_with(
        &mut shrink_to("8", &c.meta, &dir.join("none"), &c.data),
        "does not exist",
    );
    fails_with(&mut shrink_to("0", &c.meta, &c.out, &c.data), "at least 1");
    fails_with(
        &mut shrink_to("x", &c.meta, &c.out, &c.data),
        "needs a number",
    );
    fails_with(
        pdt("thin_shrink").args(["-i", s(&c.meta), "-o", s(&c.out), "--nr-blocks", "8"]),
        "--data",
    );
    fails_with(
        pdt("thin_shrink").args(["-i", s(&c.meta), "-o", s(&c.out), "--data", s(&c.data)]),
        "--nr-blocks",
    );
    let xml = dir.join("pool.xml");
    fails_with(
        shrink_to("8", &xml, &c.out, &c.data).arg("--binary"),
        "is XML",
    );
    // A superblock whose checksum starts with '<' is still binary.
    let mut meta = std::fs::read(&c.meta).unwrap();
    meta[0] = b'<';
    let lt = dir.join("lt");
    std::fs::write(&lt, meta).unwrap();
    fails_with(&mut shrink_to("8", &lt, &c.out, &c.data), "checksum");
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, vec![0x5au8; 8 * 4096]).unwrap();
    fails_with(&mut shrink_to("8", &garbage, &c.out, &c.data), "superblock");
    let fifo = common::tool::fifo(&dir, "fifo");
    fails_with(&mut shrink_to("8", &c.meta, &c.out, &fifo), "FIFO");
    // A data device that ends before the blocks to move.
    let short = dir.join("short");
    std::fs::copy(&c.data, &short).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(42 * BLOCK)
        .unwrap();
    let short_before = std::fs::read(&short).unwrap();
    fails_with(
        &mut shrink_to("8", &c.meta, &c.out, &short),
        "the data device holds",
    );
    assert_eq!(std::fs::read(&short).unwrap(), short_before);
    assert_eq!(std::fs::read(&c.data).unwrap(), data, "data written");
    assert!(
        std::fs::read(&c.out).unwrap().iter().all(|&b| b == 0),
        "output written"
    );
}
