//! `pdt thin_repair` and `pdt thin_dump --repair` on damaged pools, next to
//! Debian's thin_repair: both outputs are checked with Debian's thin_check
//! and the mappings they keep are counted (and ours compared, mapping by
//! mapping, with the pool before the damage).

use pdata::btree::node::Node;
use pdata::io::{BlockDevice, FileDevice, MemoryDevice};
use pdata::live::LiveMetadata;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use thin::format::superblock::{Superblock, SUPERBLOCK_VALIDATOR};
use thin::ir::{PoolInfo, Run, Visitor};
use thin::repair::{recover, RepairOptions};
use thin::restore::Restorer;
use thin::{DeviceDetails, ThinMetadata};

mod common;
use common::dump::parse_dump;
use common::oracle::debian;
use common::tool::{run, PDT};

const BLOCK: usize = 4096;
const META_BLOCKS: u64 = 2048;
const NR_DATA_BLOCKS: u64 = 20_000;

/// (device, thin block) -> (data block, time).
type Mappings = BTreeMap<(u64, u64), (u64, u32)>;

fn blank(path: &Path, blocks: u64) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(blocks * BLOCK as u64)
        .unwrap();
}

/// A pool of three thins (multi-level mapping trees), a snapshot that
/// shares part of its origin's leaves and one that shares its whole tree,
/// built over several transactions (so freed, stale nodes lie around).
fn build(path: &Path) {
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::create(path, META_BLOCKS).unwrap());
    let mut md = ThinMetadata::format(dev, 128, NR_DATA_BLOCKS, true).unwrap();
    for (d, n, stride) in [(0u64, 3000u64, 1u64), (1, 2000, 7), (2, 400, 3)] {
        md.create_thin(d).unwrap();
        for i in 0..n {
            md.provision(d, i * stride + (i / 50) * 11).unwrap();
        }
    }
    md.set_transaction_id(0, 1).unwrap();
    md.commit().unwrap();
    md.create_snap(10, 0).unwrap();
    for i in (0..3000).step_by(9) {
        let b = md.alloc().unwrap();
        md.insert(10, i + (i / 50) * 11, b).unwrap();
    }
    for i in (0..3000).step_by(13) {
        let v = i + (i / 50) * 11;
        if md.lookup(0, v).unwrap().is_some() {
            md.remove(0, v).unwrap();
        }
    }
    md.create_snap(11, 1).unwrap();
    md.set_transaction_id(1, 2).unwrap();
    md.commit().unwrap();
    for i in 400..600 {
        md.provision(2, i * 3).unwrap();
    }
    md.set_transaction_id(2, 3).unwrap();
    md.commit().unwrap();
}

struct Pool {
    sb: Superblock,
    mappings: Mappings,
    /// Every node of every device's mapping tree: (device, block, is leaf, entries).
    nodes: Vec<(u64, u64, bool, u64)>,
    /// Device -> mapping-tree root.
    roots: BTreeMap<u64, u64>,
}

fn inspect(path: &Path) -> Pool {
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(path, false).unwrap());
    let mut md = ThinMetadata::open(dev, false).unwrap();
    let sb = md.superblock().clone();
    let devices = md
        .devices_at(sb.data_mapping_root, sb.device_details_root)
        .unwrap();
    let mut mappings = Mappings::new();
    let mut nodes = Vec::new();
    let mut roots = BTreeMap::new();
    for (id, _, root) in devices {
        roots.insert(id, root);
        for (v, b, t) in md.mappings(id).unwrap() {
            mappings.insert((id, v), (b, t));
        }
        pdata::btree::walk_nodes(
            md.transaction_manager(),
            root,
            &mut |loc, n: Node<'_>, _| {
                nodes.push((id, loc, n.is_leaf(), n.nr_entries() as u64));
                Ok(())
            },
        )
        .unwrap();
    }
    Pool {
        sb,
        mappings,
        nodes,
        roots,
    }
}

/// The mappings whose leaves are intact.
fn readable(pool: &Pool, damaged: &BTreeSet<u64>) -> u64 {
    let total: u64 = pool.mappings.len() as u64;
    let lost: u64 = pool
        .nodes
        .iter()
        .filter(|(_, loc, leaf, _)| *leaf && damaged.contains(loc))
        .map(|n| n.3)
        .sum();
    total - lost
}

/// The mappings of a dump and its devices' mapped_blocks.
fn parse_xml(xml: &str) -> (Mappings, BTreeMap<u64, u64>) {
    let (dump, _) = parse_dump(xml).unwrap_or_else(|e| panic!("{e}"));
    let mut m = Mappings::new();
    let mut devices = BTreeMap::new();
    for (dev, d) in dump.devs {
        devices.insert(dev, d.mapped);
        m.extend(d.map.into_iter().map(|(v, bt)| ((dev, v), bt)));
    }
    (m, devices)
}

fn dump(path: &Path) -> String {
    let o = run(Command::new(PDT).arg("thin_dump").arg(path));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn debian_check(path: &Path) -> bool {
    Command::new(debian("thin_check"))
        .arg("-q")
        .arg(path)
        .status()
        .unwrap()
        .success()
}

fn pdt_check(path: &Path) -> bool {
    run(Command::new(PDT).args(["thin_check", "-q"]).arg(path))
        .status
        .success()
}

/// Runs a repair tool; gives the mappings of its output when it succeeded
/// and Debian's thin_check passes the output.
fn repair_with(tool: &str, input: &Path, out: &Path, extra: &[&str]) -> (bool, bool, u64) {
    blank(out, META_BLOCKS);
    let mut cmd = if tool == "pdt" {
        let mut c = Command::new(PDT);
        c.arg("thin_repair");
        c
    } else {
        Command::new(debian("thin_repair"))
    };
    let o = run(cmd.arg("-i").arg(input).arg("-o").arg(out).args(extra));
    if std::env::var_os("SHOW_REPAIR_OUTPUT").is_some() {
        println!("{tool}: {}", String::from_utf8_lossy(&o.stderr));
    }
    if !o.status.success() {
        return (false, false, 0);
    }
    let checked = debian_check(out);
    // Debian's thin_dump reads what Debian's thin_check passed.
    let n = if checked {
        let o = run(Command::new(debian("thin_dump")).arg(out));
        parse_xml(&String::from_utf8_lossy(&o.stdout)).0.len() as u64
    } else {
        0
    };
    (true, checked, n)
}

fn zero_block(image: &mut [u8], b: u64) {
    image[b as usize * BLOCK..(b as usize + 1) * BLOCK].fill(0);
}

struct Case {
    name: &'static str,
    image: Vec<u8>,
    damaged: BTreeSet<u64>,
    /// Options for both tools.
    extra: Vec<&'static str>,
    /// What Debian's asks for on top, when the superblock is damaged.
    debian_extra: Vec<&'static str>,
}

fn cases(original: &[u8], pool: &Pool) -> Vec<Case> {
    let mut out = Vec::new();
    let sb_lost = ["--transaction-id", "3", "--nr-data-blocks", "20000"];
    let mut case = |name, blocks: &[u64], extra: Vec<&'static str>| {
        let mut image = original.to_vec();
        for &b in blocks {
            zero_block(&mut image, b);
        }
        let debian_extra = if blocks.contains(&0) {
            sb_lost.to_vec()
        } else {
            vec![]
        };
        out.push(Case {
            name,
            image,
            damaged: blocks.iter().copied().collect(),
            extra,
            debian_extra,
        });
    };
    case("superblock zeroed", &[0], vec!["--data-block-size", "128"]);
    case(
        "mapping top-level root lost",
        &[pool.sb.data_mapping_root],
        vec![],
    );
    case("details leaf lost", &[pool.sb.device_details_root], vec![]);
    let root0 = pool.roots[&0];
    assert!(
        pool.nodes.iter().any(|n| n.1 == root0 && !n.2),
        "device 0's root is internal"
    );
    case("internal node zeroed (device 0's root)", &[root0], vec![]);
    case(
        "superblock and device 0's root zeroed",
        &[0, root0],
        vec!["--data-block-size", "128"],
    );
    case(
        "superblock and top-level root zeroed",
        &[0, pool.sb.data_mapping_root],
        vec!["--data-block-size", "128"],
    );
    let leaf = pool
        .nodes
        .iter()
        .filter(|n| n.0 == 1 && n.2)
        .nth(3)
        .unwrap()
        .1;
    case("leaf zeroed (shared by 1 and 11)", &[leaf], vec![]);
    // Superblock with a bad checksum: one byte of its unused tail.
    let mut image = original.to_vec();
    image[1000] ^= 0x40;
    out.push(Case {
        name: "superblock bad checksum",
        image,
        damaged: BTreeSet::new(),
        extra: vec![],
        debian_extra: [&sb_lost[..], &["--data-block-size", "128"]].concat(),
    });
    // Bit flips in several nodes of the mapping trees.
    let mut image = original.to_vec();
    let mut damaged = BTreeSet::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut all: Vec<u64> = pool.nodes.iter().map(|n| n.1).collect();
    all.extend([pool.sb.data_mapping_root, pool.sb.device_details_root]);
    all.sort();
    all.dedup();
    while damaged.len() < 4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let b = all[(seed % all.len() as u64) as usize];
        if damaged.insert(b) {
            let byte = 64 + (seed >> 20) as usize % (BLOCK - 64);
            image[b as usize * BLOCK + byte] ^= 1 << ((seed >> 40) % 8);
        }
    }
    out.push(Case {
        name: "bit flips in 4 nodes",
        image,
        damaged,
        extra: vec![],
        debian_extra: vec![],
    });
    out
}

#[test]
fn repairs_damage_and_keeps_what_reads() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    build(&meta);
    assert!(debian_check(&meta));
    let original = std::fs::read(&meta).unwrap();
    let pool = inspect(&meta);
    let before = pool.mappings.len() as u64;
    assert!(before > 10_000, "{before} mappings");
    let mut table = format!(
        "{:<42} {:>7} {:>9} {:>16} {:>16}\n",
        "damage", "before", "readable", "ours (check)", "Debian (check)"
    );
    let mut failures = Vec::new();
    for c in cases(&original, &pool) {
        let img = dir.path().join("damaged");
        std::fs::write(&img, &c.image).unwrap();
        let readable = readable(&pool, &c.damaged);
        let ours_out = dir.path().join("ours");
        let (ran, ours_ok, ours_n) = repair_with("pdt", &img, &ours_out, &c.extra);
        let theirs = [&c.extra[..], &c.debian_extra[..]].concat();
        let (deb_ran, deb_ok, deb_n) =
            repair_with("debian", &img, &dir.path().join("theirs"), &theirs);
        let show = |ran: bool, ok: bool, n: u64| {
            if !ran {
                "failed".to_string()
            } else {
                format!(
                    "{n} {:.0}% ({})",
                    100.0 * n as f64 / before as f64,
                    if ok { "ok" } else { "bad" }
                )
            }
        };
        table += &format!(
            "{:<42} {:>7} {:>9} {:>16} {:>16}\n",
            c.name,
            before,
            readable,
            show(ran, ours_ok, ours_n),
            show(deb_ran, deb_ok, deb_n)
        );
        if !(ran && ours_ok && pdt_check(&ours_out)) {
            failures.push(format!("{}: our repair failed or does not check", c.name));
            continue;
        }
        // Every mapping kept is one the pool had; every readable one is kept.
        let (got, counts) = parse_xml(&dump(&ours_out));
        for (k, v) in &got {
            if pool.mappings.get(k) != Some(v) {
                failures.push(format!("{}: {k:?} -> {v:?} was not in the pool", c.name));
                break;
            }
        }
        let per_dev = got.keys().fold(BTreeMap::new(), |mut m, (d, _)| {
            *m.entry(*d).or_insert(0u64) += 1;
            m
        });
        for (d, n) in &counts {
            if per_dev.get(d).copied().unwrap_or(0) != *n {
                failures.push(format!("{}: device {d} mapped_blocks {n} is wrong", c.name));
            }
        }
        // All readable ones, which is at least 90% where damage is local.
        let kept = got.len() as u64;
        if kept < readable || (readable * 10 >= before * 9 && kept * 10 < before * 9) {
            failures.push(format!(
                "{}: kept {} of {before} mappings ({readable} readable)",
                c.name,
                got.len()
            ));
        }
        // thin_dump --repair gives XML Debian's thin_restore takes.
        let mut cmd = Command::new(PDT);
        cmd.args(["thin_dump", "--repair"]).arg(&img).args(&c.extra);
        let o = run(&mut cmd);
        let xml = dir.path().join("repaired.xml");
        std::fs::write(&xml, &o.stdout).unwrap();
        let restored = dir.path().join("restored");
        blank(&restored, META_BLOCKS);
        let ok = o.status.success()
            && run(Command::new(debian("thin_restore"))
                .arg("-i")
                .arg(&xml)
                .arg("-o")
                .arg(&restored))
            .status
            .success()
            && debian_check(&restored);
        if !ok {
            failures.push(format!("{}: thin_dump --repair XML not restorable", c.name));
        }
    }
    println!("{table}");
    assert!(failures.is_empty(), "{table}\n{}", failures.join("\n"));
}

#[test]
fn undamaged_pool_repairs_to_the_same_dump() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    build(&meta);
    let out = dir.path().join("out");
    let (ran, ok, _) = repair_with("pdt", &meta, &out, &[]);
    assert!(ran && ok);
    assert_eq!(dump(&meta), dump(&out));
    let o = run(Command::new(PDT).args(["thin_dump", "--repair"]).arg(&meta));
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stdout).unwrap(), dump(&meta));
}

/// A superblock that says the pool is smaller than its mappings reach.
#[test]
fn mappings_past_the_end_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    build(&meta);
    let pool = inspect(&meta);
    let limit = 5000;
    let mut image = std::fs::read(&meta).unwrap();
    let mut b = [0u8; BLOCK];
    b.copy_from_slice(&image[..BLOCK]);
    let mut sb = Superblock::unpack(&b);
    sb.data_sm_root.nr_blocks = limit;
    let mut packed = sb.pack();
    use pdata::block_manager::Validator;
    SUPERBLOCK_VALIDATOR
        .prepare_for_write(0, &mut packed)
        .unwrap();
    image[..BLOCK].copy_from_slice(&packed[..]);
    let img = dir.path().join("short");
    std::fs::write(&img, &image).unwrap();
    let out = dir.path().join("out");
    let (ran, ok, n) = repair_with("pdt", &img, &out, &[]);
    let expected = pool.mappings.values().filter(|(d, _)| *d < limit).count() as u64;
    assert!(ran && ok && pdt_check(&out));
    assert_eq!(n, expected);
    let (deb_ran, deb_ok, deb_n) = repair_with("debian", &img, &dir.path().join("t"), &[]);
    println!(
        "past the end: {} mappings, {expected} inside; ours kept {n}; Debian: ran {deb_ran}, check {deb_ok}, kept {deb_n}",
        pool.mappings.len()
    );
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    build(&meta);
    let err = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = Command::new(PDT);
        c.arg("thin_repair");
        for a in args {
            c.arg(a);
        }
        let o = run(&mut c);
        assert_eq!(o.status.code(), Some(1));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // Output too small.
    let small = dir.path().join("small");
    blank(&small, 16);
    let e = err(&[&"-i", &meta, &"-o", &small]);
    assert!(e.contains("too small"), "{e}");
    // Same file in and out.
    let e = err(&[&"-i", &meta, &"-o", &meta]);
    assert!(e.contains("same file"), "{e}");
    // Superblock lost and no data block size given.
    let mut image = std::fs::read(&meta).unwrap();
    zero_block(&mut image, 0);
    let img = dir.path().join("nosb");
    std::fs::write(&img, &image).unwrap();
    let out: PathBuf = dir.path().join("out");
    blank(&out, META_BLOCKS);
    let e = err(&[&"-i", &img, &"-o", &out]);
    assert!(e.contains("--data-block-size"), "{e}");
    // Nothing of a pool at all.
    let zeros = dir.path().join("zeros");
    blank(&zeros, 64);
    let e = err(&[&"-i", &zeros, &"-o", &out, &"--data-block-size", &"128"]);
    assert!(e.contains("no thin-pool metadata"), "{e}");
    // Missing arguments.
    let e = err(&[&"-i", &meta]);
    assert!(e.contains("No output"), "{e}");
    let e = err(&[&"-i", &meta, &"-o", &out, &"--nr-data-blocks", &"x"]);
    assert!(e.contains("needs a number"), "{e}");
}

/// Collects the mappings of an event stream.
#[derive(Default)]
struct Collect {
    pool: PoolInfo,
    dev: u64,
    mappings: Mappings,
}

impl Visitor for Collect {
    fn superblock_begin(&mut self, p: &PoolInfo) -> thin::Result<()> {
        self.pool = p.clone();
        Ok(())
    }
    fn device_begin(&mut self, id: u64, _: &DeviceDetails) -> thin::Result<()> {
        self.dev = id;
        Ok(())
    }
    fn run(&mut self, r: &Run) -> thin::Result<()> {
        for k in 0..r.len {
            self.mappings
                .insert((self.dev, r.origin + k), (r.data + k, r.time));
        }
        Ok(())
    }
    fn device_end(&mut self) -> thin::Result<()> {
        Ok(())
    }
    fn superblock_end(&mut self) -> thin::Result<()> {
        Ok(())
    }
}

/// Any one block damaged: the repair succeeds, checks, keeps every mapping
/// that still reads and nothing the pool did not have. In memory, for speed.
#[test]
fn every_single_block_damage_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    build(&meta);
    let pool = inspect(&meta);
    let original = std::fs::read(&meta).unwrap();
    let mut tried = 0;
    for b in 0..META_BLOCKS {
        let at = b as usize * BLOCK;
        if original[at..at + BLOCK].iter().all(|&x| x == 0) {
            continue;
        }
        let mut image = original.clone();
        image[at + 200] ^= 0x10;
        let input: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(image));
        let output: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(META_BLOCKS));
        // Block 0 damaged keeps its fields as hints.
        recover(
            input,
            &RepairOptions::default(),
            &mut Restorer::new(output.clone()),
        )
        .unwrap_or_else(|e| panic!("block {b}: {e}"));
        let report = thin::check::check(output.clone()).unwrap();
        assert!(report.is_clean(), "block {b}: {:?}", report.errors);
        let mut got = Collect::default();
        let md = ThinMetadata::open(output, false).unwrap();
        thin::dump::dump(&md, &Default::default(), &mut got).unwrap();
        for (k, v) in &got.mappings {
            assert_eq!(pool.mappings.get(k), Some(v), "block {b}: {k:?}");
        }
        let readable = readable(&pool, &BTreeSet::from([b]));
        let kept = got.mappings.len() as u64;
        assert!(
            kept >= readable,
            "block {b}: kept {kept} of {readable} readable"
        );
        tried += 1;
    }
    assert!(tried > 50, "{tried}");
}

/// Repairs `image` in memory: the report, whether the result checks clean,
/// its mappings and its devices.
fn repair_in_memory(
    image: Vec<u8>,
    opts: &RepairOptions,
) -> (thin::repair::RepairReport, bool, Collect, Vec<u64>) {
    let input: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(image));
    let output: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(META_BLOCKS));
    let report = recover(input, opts, &mut Restorer::new(output.clone())).unwrap();
    let clean = thin::check::check(output.clone()).unwrap().is_clean();
    let mut got = Collect::default();
    let mut md = ThinMetadata::open(output, false).unwrap();
    thin::dump::dump(&md, &Default::default(), &mut got).unwrap();
    let devices = md.devices().unwrap();
    (report, clean, got, devices)
}

/// 300 devices: the top level and the details tree have internal nodes; a
/// metadata snapshot is held.
#[test]
fn many_devices_and_a_metadata_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    {
        let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::create(&meta, META_BLOCKS).unwrap());
        let mut md = ThinMetadata::format(dev, 256, NR_DATA_BLOCKS, true).unwrap();
        for d in 0..300 {
            md.create_thin(d).unwrap();
            for v in 0..8 {
                md.provision(d, v * 5 + d % 3).unwrap();
            }
        }
        md.set_transaction_id(0, 7).unwrap();
        md.reserve_metadata_snap().unwrap();
        for d in (0..300).step_by(2) {
            md.provision(d, 100).unwrap();
        }
        md.commit().unwrap();
    }
    let pool = inspect(&meta);
    let original = std::fs::read(&meta).unwrap();
    let devices: Vec<u64> = pool.roots.keys().copied().collect();
    let node = |root: u64| {
        let at = root as usize * BLOCK;
        let mut b = [0u8; BLOCK];
        b.copy_from_slice(&original[at..at + BLOCK]);
        let n = Node(&b);
        (n.is_leaf(), n.value_u64(0))
    };
    let (top_leaf, _) = node(pool.sb.data_mapping_root);
    let (details_leaf, details_child) = node(pool.sb.device_details_root);
    assert!(!top_leaf && !details_leaf, "internal roots");
    let top_children: Vec<u64> = {
        let at = pool.sb.data_mapping_root as usize * BLOCK;
        let mut b = [0u8; BLOCK];
        b.copy_from_slice(&original[at..at + BLOCK]);
        let n = Node(&b);
        (0..n.nr_entries()).map(|i| n.value_u64(i)).collect()
    };
    let whole_top = [vec![pool.sb.data_mapping_root], top_children].concat();
    let cases: Vec<(&str, Vec<u64>, RepairOptions)> = vec![
        // Each device's tree is told from the others holding as many
        // mappings by the snapshot's older top level.
        ("the whole top level", whole_top, Default::default()),
        (
            "top-level root",
            vec![pool.sb.data_mapping_root],
            Default::default(),
        ),
        (
            "details root",
            vec![pool.sb.device_details_root],
            Default::default(),
        ),
        ("a details leaf", vec![details_child], Default::default()),
        // The data block size comes from the snapshot's copy.
        ("superblock", vec![0], Default::default()),
        (
            "superblock and top-level root",
            vec![0, pool.sb.data_mapping_root],
            Default::default(),
        ),
    ];
    for (name, blocks, opts) in cases {
        let mut image = original.clone();
        for b in blocks {
            zero_block(&mut image, b);
        }
        let (report, clean, got, devs) = repair_in_memory(image, &opts);
        assert!(clean, "{name}");
        assert_eq!(devs, devices, "{name}: {:?}", report.warnings);
        assert_eq!(got.mappings, pool.mappings, "{name}: {:?}", report.warnings);
        assert_eq!(got.pool.data_block_size, 256, "{name}");
        assert_eq!(got.pool.transaction_id, 7, "{name}: {:?}", report.warnings);
    }
}

/// Two devices with as many mappings each and nothing else to tell their
/// trees apart once the top level is lost: both are dropped, never swapped.
#[test]
fn indistinguishable_trees_are_not_guessed() {
    let dev = Arc::new(MemoryDevice::new(256));
    let mut md = ThinMetadata::format(dev.clone(), 128, 1000, true).unwrap();
    for d in [1u64, 2, 3] {
        md.create_thin(d).unwrap();
        let n = if d == 3 { 7 } else { 10 };
        for v in 0..n {
            md.provision(d, v * 3).unwrap();
        }
    }
    let top = md.superblock().data_mapping_root;
    md.commit().unwrap();
    drop(md);
    let mut image = dev.image();
    zero_block(&mut image, top);
    let (report, clean, got, devices) = repair_in_memory(image, &RepairOptions::default());
    assert!(clean);
    assert_eq!(devices, vec![3], "{:?}", report.warnings);
    assert_eq!(got.mappings.len(), 7);
    assert!(
        report.warnings.iter().any(|w| w.contains("not guessing")),
        "{:?}",
        report.warnings
    );
}
