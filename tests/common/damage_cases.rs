//! The damage corpus of the thin_check tests: two clean pools (one built by
//! our ThinMetadata through `pdt thin_exec`, one by Debian's
//! `thin_restore`) and the damaged images made from them, each with the
//! verdict the spec gives (clean / only leaks / fatal).

use super::damage::{sb, Image, Role, Tree, BS};
use super::pool::{debian_restore, exec_pool};
use super::rng::XorShift as Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Debian's thin_check, the oracle.
pub const DEBIAN: &str = "/usr/sbin/thin_check";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Clean,
    /// Leaks only: exit 1, but 0 with --ignore-non-fatal-errors.
    NonFatal,
    Fatal,
}
pub use Verdict::*;

pub fn verdict(tool: &[&str], img: &Path) -> Verdict {
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

pub struct Case {
    pub label: String,
    pub spec: Verdict,
    pub image: Image,
}

/// A pool built by our ThinMetadata: devices, snapshots sharing trees
/// three ways (metadata counts in the overflow tree), broken sharing (data
/// counts of 3), discards, a deleted device and a held metadata snapshot.
pub fn exec_image(dir: &Path) -> Image {
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
    let meta = exec_pool(dir, "exec.meta", 4 << 20, &s);
    Image(std::fs::read(&meta).unwrap())
}

/// A pool written by Debian's thin_restore: devices sharing data blocks up
/// to five ways (data counts in the overflow tree).
pub fn restored_image(dir: &Path) -> Image {
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
    let meta = debian_restore(dir, "restore.meta", 4 << 20, &xml);
    Image(std::fs::read(&meta).unwrap())
}

/// Bitmap entry `e` of bitmap block `bm` (FORMAT §4.2: the lower bit of a
/// pair is the count's high bit).
pub fn get_count(img: &Image, bm: u64, e: u64) -> u32 {
    let w = img.le64(bm, 16 + 8 * (e as usize / 32));
    let v = ((w >> (2 * (e % 32))) & 3) as u32;
    ((v & 1) << 1) | (v >> 1)
}

pub fn set_count(img: &mut Image, bm: u64, e: u64, c: u32) {
    let off = 16 + 8 * (e as usize / 32);
    let shift = 2 * (e % 32);
    let v = (((c & 1) << 1) | (c >> 1)) as u64;
    let w = (img.le64(bm, off) & !(3 << shift)) | (v << shift);
    img.put64(bm, off, w);
    img.reseal(bm, Role::MetaBitmap);
}

/// First entry of bitmap `bm` (among `n`) whose count is `c`.
pub fn find_count(img: &Image, bm: u64, n: u64, c: u32) -> Option<u64> {
    (0..n).find(|&e| get_count(img, bm, e) == c)
}

/// The damaged images made from `base`.
pub fn damages(name: &str, base: &Image, rng: &mut Rng) -> Vec<Case> {
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
pub fn sm_prefix(r: &Role) -> String {
    match r {
        Role::DataBitmap
        | Role::Node {
            tree: Tree::DataIndex | Tree::DataOverflow,
            ..
        } => format!("data-sm:{}", r.name()),
        _ => r.name(),
    }
}

pub fn flip_label(r: &Role) -> String {
    format!("flip:{}", sm_prefix(r))
}

/// The largest data block mapped by the live pool, plus one.
pub fn max_data_block(img: &Image, roles: &BTreeMap<u64, Role>) -> u64 {
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
