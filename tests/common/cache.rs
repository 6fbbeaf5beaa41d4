//! Cache XML for the tests: a seeded generator (as the established dumps
//! lay it out), and running the cache tools, ours and Debian's.

use super::oracle::{debian_cmd, run};
use super::rng::XorShift;
use super::tool::{new_file, pdt, s};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Standard base64 of 4 bytes (the spec's hint encoding, written out here
/// rather than taken from the code under test).
pub fn base64_4(v: u32) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = v.to_le_bytes();
    let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let mut out: String = (0..4)
        .map(|i| A[(n >> (18 - 6 * i) & 63) as usize] as char)
        .collect();
    let m = u32::from(b[3]) << 16;
    out.push(A[(m >> 18 & 63) as usize] as char);
    out.push(A[(m >> 12 & 63) as usize] as char);
    out += "==";
    out
}

/// A cache of `nr` blocks: about 90% mapped (distinct origin blocks),
/// 30% of those dirty, a hint for each mapped block.
pub fn gen_xml(nr: u32, seed: u64) -> String {
    let mut rng = XorShift(seed | 1);
    let mut x = format!(
        "<superblock uuid=\"\" block_size=\"128\" nr_cache_blocks=\"{nr}\" policy=\"smq\" hint_width=\"4\">\n  <mappings>\n"
    );
    let mut mapped = Vec::new();
    for c in 0..nr {
        if rng.below(10) < 9 {
            // Distinct: a permutation-like spread of the cache block.
            let oblock = u64::from(c) * 13 + rng.below(13);
            let dirty = if rng.below(10) < 3 { "true" } else { "false" };
            x += &format!(
                "    <mapping cache_block=\"{c}\" origin_block=\"{oblock}\" dirty=\"{dirty}\"/>\n"
            );
            mapped.push(c);
        }
    }
    x += "  </mappings>\n  <hints>\n";
    for c in mapped {
        let h = rng.next() as u32;
        x += &format!("    <hint cache_block=\"{c}\" data=\"{}\"/>\n", base64_4(h));
    }
    x += "  </hints>\n</superblock>\n";
    x
}

/// `xml` with every mapping clean (what Debian's 0.9.0 dumps of version 2).
pub fn all_clean(xml: &str) -> String {
    xml.replace("dirty=\"true\"", "dirty=\"false\"")
}

/// Writes `xml` into `dir` and restores it into a fresh `name` of
/// `blocks` 4 KiB blocks with our tool (`ours`) or Debian's, at
/// metadata version `version`; the image's path.
pub fn restore(dir: &Path, xml: &str, name: &str, version: u32, ours: bool) -> PathBuf {
    let input = dir.join(format!("{name}.xml"));
    std::fs::write(&input, xml).expect("write xml");
    let out = dir.join(name);
    new_file(&out, 2048 * 4096);
    let v = version.to_string();
    let args = ["-i", s(&input), "-o", s(&out), "--metadata-version", &v];
    let o = if ours {
        run(pdt("cache_restore").args(args))
    } else {
        run(debian_cmd("cache_restore").args(args))
    };
    assert!(
        o.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Our `cache_check` with `args` then the image.
pub fn check(img: &Path, args: &[&str]) -> Output {
    run(pdt("cache_check").args(args).arg(img))
}

pub fn debian_check(img: &Path) -> Output {
    run(debian_cmd("cache_check").arg(img))
}

/// A dump that must succeed (ours or Debian's).
pub fn dump(img: &Path, ours: bool) -> String {
    let o = if ours {
        run(pdt("cache_dump").arg(img))
    } else {
        run(debian_cmd("cache_dump").arg(img))
    };
    assert!(
        o.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// (cache block -> (origin block, dirty)) of a dump.
pub fn mappings(xml: &str) -> std::collections::BTreeMap<u64, (u64, bool)> {
    xml.lines()
        .filter(|l| l.contains("<mapping "))
        .map(|l| {
            let a = |k| super::oracle::xml_num(l, k);
            let dirty = super::oracle::xml_attr(l, "dirty") == Some("true");
            (a("cache_block"), (a("origin_block"), dirty))
        })
        .collect()
}
