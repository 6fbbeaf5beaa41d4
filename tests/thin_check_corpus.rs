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

#[path = "common/damage.rs"]
mod damage;

use damage::{sb, Image, Role, Tree, BS};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const PDT: &str = env!("CARGO_BIN_EXE_pdt");
const DEBIAN: &str = "/usr/sbin/thin_check";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Clean,
    /// Leaks only: exit 1, but 0 with --ignore-non-fatal-errors.
    NonFatal,
    Fatal,
}
use Verdict::*;

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

fn verdict(tool: &[&str], img: &Path) -> Verdict {
    let run = |extra: &[&str]| {
        let o = Command::new(tool[0])
            .args(&tool[1..])
            .arg("-q")
            .args(extra)
            .arg(img)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && o.status.code() != Some(101),
            "{tool:?} panicked on {}: {err}",
            img.display()
        );
        o.status.success()
    };
    if run(&[]) {
        Clean
    } else if run(&["--ignore-non-fatal-errors"]) {
        NonFatal
    } else {
        Fatal
    }
}

struct Case {
    label: String,
    spec: Verdict,
    image: Image,
}

/// A tiny deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn new_file(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// A pool built by our ThinMetadata: devices, snapshots sharing trees
/// three ways (metadata counts in the overflow tree), broken sharing (data
/// counts of 3), discards, a deleted device and a held metadata snapshot.
fn exec_pool(dir: &Path) -> Image {
    let meta = dir.join("exec.meta");
    new_file(&meta, 4 << 20);
    let mut s = String::from("format 128 20000\n");
    for (d, n, stride) in [(0, 600, 1), (1, 400, 3), (2, 300, 2), (3, 200, 5)] {
        s += &format!("create_thin {d}\n");
        for v in 0..n {
            s += &format!("provision {d} {}\n", v * stride);
        }
    }
    s += "commit\ncreate_snap 10 0\ncreate_snap 11 0\ncreate_snap 12 1\ncommit\n";
    for v in [3, 70, 300] {
        s += &format!("provision 0 {v}\nprovision 10 {}\n", v + 1);
    }
    for v in (0..120).step_by(3) {
        s += &format!("provision 12 {v}\n");
    }
    s += "commit\nreserve_metadata_snap\nremove_range 2 50 150\ndelete 3\n";
    s += "provision 1 5000\nset_transaction_id 0 3\ncommit\n";
    let script = dir.join("exec.script");
    std::fs::write(&script, s).unwrap();
    let o = Command::new(PDT)
        .arg("thin_exec")
        .arg(&meta)
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "thin_exec failed");
    Image(std::fs::read(&meta).unwrap())
}

/// A pool written by Debian's thin_restore: devices sharing data blocks up
/// to five ways (data counts in the overflow tree).
fn restored_pool(dir: &Path) -> Image {
    let mut xml = String::from(
        "<superblock uuid=\"\" time=\"4\" transaction=\"7\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"10000\">\n",
    );
    for d in 0..5u64 {
        let n = 900 - 150 * d;
        xml += &format!(
            "  <device dev_id=\"{d}\" mapped_blocks=\"{n}\" transaction=\"{d}\" creation_time=\"{d}\" snap_time=\"{d}\">\n"
        );
        // Shared runs: every device maps the start of the same data.
        xml += &format!(
            "    <range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"{}\" time=\"0\"/>\n",
            n / 2
        );
        for v in n / 2..n {
            xml += &format!(
                "    <single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"{d}\"/>\n",
                v * 2,
                1000 + d * 1000 + v
            );
        }
        xml += "  </device>\n";
    }
    xml += "</superblock>\n";
    let x = dir.join("restore.xml");
    std::fs::write(&x, xml).unwrap();
    let meta = dir.join("restore.meta");
    new_file(&meta, 4 << 20);
    let o = Command::new("/usr/sbin/thin_restore")
        .arg("-i")
        .arg(&x)
        .arg("-o")
        .arg(&meta)
        .output()
        .unwrap();
    assert!(o.status.success(), "Debian's thin_restore failed");
    Image(std::fs::read(&meta).unwrap())
}

/// Bitmap entry `e` of bitmap block `bm` (FORMAT §4.2: the lower bit of a
/// pair is the count's high bit).
fn get_count(img: &Image, bm: u64, e: u64) -> u32 {
    let w = img.le64(bm, 16 + 8 * (e as usize / 32));
    let v = ((w >> (2 * (e % 32))) & 3) as u32;
    ((v & 1) << 1) | (v >> 1)
}

fn set_count(img: &mut Image, bm: u64, e: u64, c: u32) {
    let off = 16 + 8 * (e as usize / 32);
    let shift = 2 * (e % 32);
    let v = (((c & 1) << 1) | (c >> 1)) as u64;
    let w = (img.le64(bm, off) & !(3 << shift)) | (v << shift);
    img.put64(bm, off, w);
    img.reseal(bm, Role::MetaBitmap);
}

/// First entry of bitmap `bm` (among `n`) whose count is `c`.
fn find_count(img: &Image, bm: u64, n: u64, c: u32) -> Option<u64> {
    (0..n).find(|&e| get_count(img, bm, e) == c)
}

/// The damaged images made from `base`.
fn damages(name: &str, base: &Image, rng: &mut Rng) -> Vec<Case> {
    let roles = base.roles();
    let mut out = Vec::new();
    let mut add = |label: String, spec: Verdict, image: Image| {
        out.push(Case {
            label: format!("{label} [{name}]"),
            spec,
            image,
        })
    };

    // Raw damage to whole blocks: one flipped bit in every block that is
    // not zero (a block in use fails its checksum; any other is garbage
    // nobody reads), every block in use zeroed, pairs swapped.
    for b in 0..base.nr_blocks() {
        if base.is_zero(b) {
            continue;
        }
        let mut img = base.clone();
        img.flip(b, 4 + rng.below(BS as u64 - 4) as usize, rng.below(8) as u8);
        match roles.get(&b) {
            Some(r) => add(flip_label(r), Fatal, img),
            None => add("flip:unused".into(), Clean, img),
        }
    }
    let used: Vec<(u64, Role)> = roles.iter().map(|(&b, &r)| (b, r)).collect();
    for &(b, r) in &used {
        let mut img = base.clone();
        img.zero(b);
        add(format!("zero:{}", sm_prefix(&r)), Fatal, img);
    }
    for _ in 0..12 {
        let (a, ra) = used[rng.below(used.len() as u64) as usize];
        let (b, rb) = used[rng.below(used.len() as u64) as usize];
        if a == b || base.block(a) == base.block(b) {
            continue;
        }
        let mut img = base.clone();
        img.swap(a, b);
        add(format!("swap:{}/{}", ra.name(), rb.name()), Fatal, img);
    }

    // The superblock's fields, resealed.
    let sbr = Role::Superblock;
    let mut edit = |label: &str, spec: Verdict, f: &dyn Fn(&mut Image)| {
        let mut img = base.clone();
        f(&mut img);
        img.reseal(0, sbr);
        add(label.to_string(), spec, img);
    };
    edit("sb:magic", Fatal, &|i| i.put64(0, sb::MAGIC, 1234));
    edit("sb:blocknr", Fatal, &|i| i.put64(0, sb::BLOCKNR, 9));
    edit("sb:version-3", Fatal, &|i| i.put32(0, sb::VERSION, 3));
    edit("sb:incompat", Fatal, &|i| i.put32(0, sb::INCOMPAT, 1));
    edit("sb:meta-nr-blocks", Fatal, &|i| {
        let n = i.nr_blocks();
        i.put64(0, sb::META_SM + sb::NR_BLOCKS, n + 100)
    });
    edit("version-1", Clean, &|i| i.put32(0, sb::VERSION, 1));
    edit("needs-check-flag", Clean, &|i| i.put32(0, sb::FLAGS, 1));
    edit("mapping-root-to-free", Fatal, &|i| {
        let free = i.nr_blocks() - 1;
        i.put64(0, sb::MAPPING_ROOT, free)
    });
    edit("details-root-to-mapping-root", Fatal, &|i| {
        let r = i.le64(0, sb::MAPPING_ROOT);
        i.put64(0, sb::DETAILS_ROOT, r)
    });
    edit("mapping-root-beyond", Fatal, &|i| {
        i.put64(0, sb::MAPPING_ROOT, 1 << 40)
    });
    let max_mapped = max_data_block(base, &roles);
    edit("mapping:past-end", Fatal, &|i| {
        i.put64(0, sb::DATA_SM + sb::NR_BLOCKS, max_mapped)
    });
    edit("data-sm:nr-blocks-grown", Fatal, &|i| {
        let n = i.sm(sb::DATA_SM, sb::NR_BLOCKS);
        i.put64(0, sb::DATA_SM + sb::NR_BLOCKS, n + 20000)
    });
    if base.le64(0, sb::HELD_ROOT) != 0 {
        edit("meta-sm:over:snapshot-dropped", Fatal, &|i| {
            i.put64(0, sb::HELD_ROOT, 0)
        });
    }

    // Nodes: one of each kind, header and keys resealed.
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for &(b, r) in &used {
        if let Role::Node { snap: false, .. } = r {
            kinds.entry(r.name()).or_insert(b);
        }
    }
    for (kind, &b) in &kinds {
        let r = roles[&b];
        let Role::Node {
            leaf, root, tree, ..
        } = r
        else {
            continue;
        };
        let sm_tree = matches!(
            tree,
            Tree::DataIndex | Tree::DataOverflow | Tree::MetaOverflow
        );
        let mut node = |label: &str, f: &dyn Fn(&mut Image)| {
            let mut img = base.clone();
            f(&mut img);
            img.reseal(b, r);
            let shape = ["underfull", "child-to-self", "child-duplicated"].contains(&label);
            let cat = match () {
                _ if label == "child-key-lowered" => "key-upper-bound:",
                _ if sm_tree => "sm-tree:",
                _ if shape => "tree-shape:",
                _ => "",
            };
            add(format!("{cat}{label}:{kind}"), Fatal, img);
        };
        let (nr, max) = (base.nr(b), base.max(b));
        node("node-blocknr", &|i| i.put64(b, 8, b + 1));
        node("node-both-flags", &|i| i.put32(b, 4, 3));
        node("node-no-flags", &|i| i.put32(b, 4, 0));
        node("node-nr-over-max", &|i| i.put32(b, 16, max as u32 + 1));
        node("node-max-not-3n", &|i| i.put32(b, 20, max as u32 - 1));
        node("node-max-too-big", &|i| i.put32(b, 20, 3000));
        node("node-value-size", &|i| {
            let vs = i.value_size(b) as u32;
            i.put32(b, 24, vs + 8)
        });
        if nr >= 2 {
            node("keys-swapped", &|i| {
                let (k0, k1) = (i.key(b, 0), i.key(b, 1));
                i.put64(b, 32, k1);
                i.put64(b, 40, k0);
            });
        }
        if !root && nr > 1 {
            node("underfull", &|i| i.put32(b, 16, (max / 3 - 1) as u32));
        }
        if !leaf && nr >= 2 {
            let free = base.nr_blocks() - 1;
            node("child-to-free-block", &|i| {
                let off = i.value_off(b, 1);
                i.put64(b, off, free)
            });
            node("child-to-self", &|i| {
                let off = i.value_off(b, 1);
                i.put64(b, off, b)
            });
            node("child-duplicated", &|i| {
                let (o0, o1) = (i.value_off(b, 0), i.value_off(b, 1));
                let c = i.le64(b, o0);
                i.put64(b, o1, c)
            });
            node("child-key-raised", &|i| {
                let k = i.key(b, 1);
                i.put64(b, 40, k + 1)
            });
            node("child-key-lowered", &|i| {
                let (k0, k1) = (i.key(b, 0), i.key(b, 1));
                i.put64(b, 40, k0 + (k1 - k0) / 2)
            });
        }
    }

    // A node only the metadata snapshot reaches.
    if let Some(&(b, r)) = used.iter().find(|(b, r)| {
        matches!(
            r,
            Role::Node {
                snap: true,
                leaf: true,
                ..
            }
        ) && base.nr(*b) >= 2
    }) {
        let mut img = base.clone();
        let (k0, k1) = (img.key(b, 0), img.key(b, 1));
        img.put64(b, 32, k1);
        img.put64(b, 40, k0);
        img.reseal(b, r);
        add(format!("snap-tree:keys-swapped:{}", r.name()), Fatal, img);
    }
    // A child pointer to garbage: a block in no tree that is not zero.
    let garbage = (1..base.nr_blocks()).find(|b| !roles.contains_key(b) && !base.is_zero(*b));
    if let (Some(g), Some(&(b, r))) = (
        garbage,
        used.iter()
            .find(|(b, r)| matches!(r, Role::Node { leaf: false, .. }) && base.nr(*b) >= 2),
    ) {
        let mut img = base.clone();
        let off = img.value_off(b, 1);
        img.put64(b, off, g);
        img.reseal(b, r);
        add(format!("child-to-garbage:{}", r.name()), Fatal, img);
    }

    // Leaf values.
    let first_leaf = |tree: Tree| {
        used.iter()
            .find(|(b, r)| {
                matches!(r, Role::Node { tree: t, leaf: true, snap: false, .. } if *t == tree)
                    && base.nr(*b) > 0
            })
            .map(|&(b, r)| (b, r))
    };
    if let Some((b, r)) = first_leaf(Tree::Bottom) {
        let nr_data = base.sm(sb::DATA_SM, sb::NR_BLOCKS);
        let mut value = |label: &str, spec, v: &dyn Fn(u64) -> u64| {
            let mut img = base.clone();
            let off = img.value_off(b, 0);
            let old = img.le64(b, off);
            img.put64(b, off, v(old));
            img.reseal(b, r);
            add(label.to_string(), spec, img);
        };
        value("mapping:past-end:value", Fatal, &|old| {
            (nr_data << 24) | (old & 0xFF_FFFF)
        });
        value("mapping:time-changed", Clean, &|old| old ^ 1);
        value("data-sm:mapping-to-free-block", Fatal, &|old| {
            ((nr_data - 1) << 24) | (old & 0xFF_FFFF)
        });
    }
    if let Some((b, r)) = first_leaf(Tree::Details) {
        let mut img = base.clone();
        let off = img.value_off(b, 0);
        let m = img.le64(b, off);
        img.put64(b, off, m + 1);
        img.reseal(b, r);
        add("details:mapped_blocks".into(), Fatal, img);
        if base.nr(b) >= 2 {
            // Drop the last device from the devices tree only.
            let mut img = base.clone();
            let n = img.nr(b) as u32;
            img.put32(b, 16, n - 1);
            img.reseal(b, r);
            add("details:device-missing".into(), Fatal, img);
        }
    }
    if let Some((b, r)) = first_leaf(Tree::Top) {
        if base.nr(b) >= 2 {
            let mut img = base.clone();
            let (o0, o1) = (img.value_off(b, 0), img.value_off(b, 1));
            let (r0, r1) = (img.le64(b, o0), img.le64(b, o1));
            img.put64(b, o0, r1);
            img.put64(b, o1, r0);
            img.reseal(b, r);
            add("details:mapped_blocks:roots-swapped".into(), Fatal, img);
        }
    }
    for (tree, label, map) in [
        (Tree::MetaOverflow, "meta-sm:over:overflow+1", "meta-sm"),
        (Tree::DataOverflow, "data-sm:overflow+1", "data-sm"),
    ] {
        if let Some((b, r)) = first_leaf(tree) {
            let mut img = base.clone();
            let off = img.value_off(b, 0);
            let c = img.le32(b, off);
            img.put32(b, off, c + 1);
            img.reseal(b, r);
            add(label.into(), Fatal, img);
            let mut img = base.clone();
            let off = img.value_off(b, 0);
            img.put32(b, off, c - 1);
            img.reseal(b, r);
            add(format!("{map}:under:overflow-1"), Fatal, img);
        }
    }
    if let Some((b, r)) = first_leaf(Tree::DataIndex) {
        let mut img = base.clone();
        let off = img.value_off(b, 0);
        img.put64(b, off, img.nr_blocks() - 1);
        img.reseal(b, r);
        add("data-sm:index-to-free-block".into(), Fatal, img);
        let mut img = base.clone();
        let last = img.nr(b) - 1;
        img.put64(b, 32 + 8 * last, 1 << 60);
        img.reseal(b, r);
        add("data-sm:index-key-huge".into(), Fatal, img);
    }
    {
        let idx = base.sm(sb::META_SM, sb::BITMAP_ROOT);
        let mut img = base.clone();
        img.put64(idx, 16, img.nr_blocks() - 1);
        img.reseal(idx, Role::MetaIndex);
        add("meta-index-to-free-block".into(), Fatal, img);
    }

    // Bitmaps: leaks, over- and under-counts.
    let meta_bm = base.le64(base.sm(sb::META_SM, sb::BITMAP_ROOT), 16);
    let nr_meta = base.sm(sb::META_SM, sb::NR_BLOCKS).min(16320);
    let data_bm = first_leaf(Tree::DataIndex).map(|(b, _)| base.value64(b, 0));
    let nr_data = base.sm(sb::DATA_SM, sb::NR_BLOCKS).min(16320);
    let mut maps = vec![("meta-sm", meta_bm, nr_meta)];
    if let Some(bm) = data_bm {
        maps.push(("data-sm", bm, nr_data));
    }
    for (map, bm, n) in maps {
        let mut count = |label: &str, spec: Verdict, from: u32, to: u32| {
            if let Some(e) = find_count(base, bm, n, from) {
                let mut img = base.clone();
                set_count(&mut img, bm, e, to);
                add(format!("{map}:{label}"), spec, img);
            }
        };
        let debian_over = if map == "meta-sm" { "over:" } else { "" };
        count("leak", NonFatal, 0, 1);
        count(&format!("{debian_over}free-counted-2"), Fatal, 0, 2);
        count(&format!("{debian_over}1-counted-2"), Fatal, 1, 2);
        count("under:1-counted-0", Fatal, 1, 0);
        count("under:2-counted-1", Fatal, 2, 1);
        count("3-without-overflow", Fatal, 2, 3);
        count("overflow-entry-counted-2", Fatal, 3, 2);
        if let Some(e) = find_count(base, bm, n, 0) {
            let mut img = base.clone();
            set_count(&mut img, bm, e, 1);
            if let Some(e2) = (e + 1..n).find(|&x| get_count(base, bm, x) == 0) {
                set_count(&mut img, bm, e2, 1);
            }
            add(format!("{map}:leak-twice"), NonFatal, img);
        }
    }
    out
}

/// Data-space-map blocks are labelled apart: Debian never reads them.
fn sm_prefix(r: &Role) -> String {
    match r {
        Role::DataBitmap
        | Role::Node {
            tree: Tree::DataIndex | Tree::DataOverflow,
            ..
        } => format!("data-sm:{}", r.name()),
        _ => r.name(),
    }
}

fn flip_label(r: &Role) -> String {
    format!("flip:{}", sm_prefix(r))
}

/// The largest data block mapped by the live pool, plus one.
fn max_data_block(img: &Image, roles: &BTreeMap<u64, Role>) -> u64 {
    let mut m = 0;
    for (&b, r) in roles {
        if let Role::Node {
            tree: Tree::Bottom,
            leaf: true,
            ..
        } = r
        {
            for i in 0..img.nr(b) {
                m = m.max(img.value64(b, i) >> 24);
            }
        }
    }
    m
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
        ("exec", exec_pool(dir.path())),
        ("restored", restored_pool(dir.path())),
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

/// Exit status, stdout and stderr of a checker.
fn run(tool: &[&str], args: &[&str], img: &Path) -> (i32, String, String) {
    let o = Command::new(tool[0])
        .args(&tool[1..])
        .args(args)
        .arg(img)
        .output()
        .expect("runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn write(dir: &Path, name: &str, img: &Image) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, &img.0).unwrap();
    p
}

/// The first block whose role matches.
fn find(img: &Image, f: impl Fn(&Role) -> bool) -> (u64, Role) {
    img.roles()
        .into_iter()
        .find(|(b, r)| f(r) && img.nr(*b) >= 2)
        .expect("such a block")
}

fn swap_keys(img: &Image, b: u64, r: Role) -> Image {
    let mut img = img.clone();
    let (k0, k1) = (img.key(b, 0), img.key(b, 1));
    img.put64(b, 32, k1);
    img.put64(b, 40, k0);
    img.reseal(b, r);
    img
}

#[test]
fn options_match_debian() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ours: &[&str] = &[PDT, "thin_check"];
    let theirs: &[&str] = &[DEBIAN];
    let exec = exec_pool(d);
    let restored = restored_pool(d);
    let both = |args: &[&str], img: &Path, want: i32, what: &str| {
        for tool in [ours, theirs] {
            let (rc, _, err) = run(tool, args, img);
            assert_eq!(rc, want, "{tool:?} {args:?} on {what}: {err}");
        }
    };

    // -m checks the metadata snapshot's trees, and wants one.
    let snap_only = find(&exec, |r| {
        matches!(
            r,
            Role::Node {
                snap: true,
                leaf: true,
                ..
            }
        )
    });
    let in_snap = exec.snapshot_blocks();
    let live_leaf = exec
        .roles()
        .into_iter()
        .find(|(b, r)| {
            matches!(
                r,
                Role::Node {
                    leaf: true,
                    tree: Tree::Bottom,
                    ..
                }
            ) && !in_snap.contains(b)
                && exec.nr(*b) >= 2
        })
        .expect("a leaf only the live pool has");
    let p = write(d, "exec", &exec);
    both(&["-m"], &p, 0, "a pool with a metadata snapshot");
    both(
        &["-m"],
        &write(d, "restored", &restored),
        1,
        "a pool without one",
    );
    let bad_snap = write(d, "bad-snap", &swap_keys(&exec, snap_only.0, snap_only.1));
    both(&["-m"], &bad_snap, 1, "a damaged snapshot");
    let bad_live = write(d, "bad-live", &swap_keys(&exec, live_leaf.0, live_leaf.1));
    both(&["-m"], &bad_live, 0, "a damaged live tree");
    both(&[], &bad_live, 1, "a damaged live tree");

    // --super-block-only and --skip-mappings look no further.
    both(
        &["--super-block-only"],
        &bad_live,
        0,
        "a damaged mapping tree",
    );
    both(&["--skip-mappings"], &bad_live, 0, "a damaged mapping tree");
    let mut bad_sb = exec.clone();
    bad_sb.flip(0, 100, 1);
    both(
        &["--super-block-only"],
        &write(d, "bad-sb", &bad_sb),
        1,
        "a bad superblock",
    );
    let top = find(&exec, |r| {
        matches!(
            r,
            Role::Node {
                snap: false,
                tree: Tree::Top,
                ..
            }
        )
    });
    let bad_top = write(d, "bad-top", &swap_keys(&exec, top.0, top.1));
    both(&["--skip-mappings"], &bad_top, 1, "a damaged top level");

    // -q: nothing but the exit status.
    let (rc, out, err) = run(ours, &["-q"], &bad_live);
    assert!(rc == 1 && out.is_empty() && err.is_empty(), "{out}{err}");
    let (rc, out, err) = run(ours, &[], &bad_live);
    assert!(rc == 1 && out.contains("TRANSACTION_ID=3"), "{out}");
    assert!(
        err.contains(&format!("node {}", live_leaf.0)),
        "the problem names its node: {err}"
    );

    // --auto-repair sets leaked blocks free in both space maps.
    let mut leaky = exec.clone();
    let meta_bm = leaky.le64(leaky.sm(sb::META_SM, sb::BITMAP_ROOT), 16);
    let free_meta = find_count(&leaky, meta_bm, 1024, 0).unwrap();
    set_count(&mut leaky, meta_bm, free_meta, 1);
    let index_leaf = find(&exec, |r| {
        matches!(
            r,
            Role::Node {
                tree: Tree::DataIndex,
                ..
            }
        )
    })
    .0;
    let data_bm = leaky.value64(index_leaf, 0);
    let free_data = find_count(&leaky, data_bm, 16320, 0).unwrap();
    set_count(&mut leaky, data_bm, free_data, 1);
    let p = write(d, "leaky", &leaky);
    assert_eq!(verdict(ours, &p), NonFatal);
    let (_, before, _) = run(ours, &[], &p);
    let (rc, _, err) = run(ours, &["--auto-repair"], &p);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(verdict(ours, &p), Clean);
    assert_eq!(verdict(theirs, &p), Clean);
    let (_, after, _) = run(ours, &[], &p);
    let free = |s: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix("METADATA_FREE_BLOCKS="))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(free(&after), free(&before) + 1, "nr_allocated follows");
    let (rc, _, _) = run(ours, &["--auto-repair", "-m"], &p);
    assert_eq!(rc, 1, "no repair of the snapshot");

    // --clear-needs-check-flag clears the flag only when the check passes.
    let mut flagged = exec.clone();
    flagged.put32(0, sb::FLAGS, 1);
    flagged.reseal(0, Role::Superblock);
    let p = write(d, "flagged", &flagged);
    let (rc, _, err) = run(ours, &["--clear-needs-check-flag"], &p);
    assert_eq!(rc, 0, "{err}");
    let cleared = Image(std::fs::read(&p).unwrap());
    assert_eq!(cleared.le32(0, sb::FLAGS), 0);
    assert_eq!(verdict(theirs, &p), Clean);
    let mut damaged = swap_keys(&flagged, live_leaf.0, live_leaf.1);
    damaged.put32(0, sb::FLAGS, 1);
    damaged.reseal(0, Role::Superblock);
    let p = write(d, "flagged-damaged", &damaged);
    let (rc, _, _) = run(ours, &["--clear-needs-check-flag"], &p);
    assert_eq!(rc, 1);
    assert_eq!(Image(std::fs::read(&p).unwrap()).le32(0, sb::FLAGS), 1);

    // No input: an error, as Debian's.
    for tool in [ours, theirs] {
        let o = Command::new(tool[0]).args(&tool[1..]).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("No input file provided"));
    }
}

/// Many random damages at once, resealed or not, checked in-process with
/// every option: never a panic, and damage to a block in use is never
/// taken for a clean pool when its checksum breaks.
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
    for base in [exec_pool(dir.path()), restored_pool(dir.path())] {
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
