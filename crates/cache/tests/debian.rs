//! Debian's cache tools (0.9.0) against our live metadata, both ways: what we
//! format and fill passes their `cache_check` and their `cache_dump` lists
//! it; what their `cache_restore` writes opens here with the same mappings.

#[path = "../../../tests/common/oracle.rs"]
mod oracle;

use cache::{CacheMetadata, Mapping, Policy};
use oracle::{debian, run, xml_attr as attr, xml_num as num};
use pdata::io::{BlockDevice, MemoryDevice};
use pdata::live::LiveMetadata;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const META_BLOCKS: u64 = 1024;

/// Standard base64 of a 4-byte hint, as cache_dump writes it.
fn base64_hint(v: u32) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = v.to_le_bytes();
    let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let mut s: String = (0..4)
        .map(|i| A[(n >> (18 - 6 * i) & 63) as usize] as char)
        .collect();
    let m = u32::from(b[3]) << 16;
    s.push(A[(m >> 18 & 63) as usize] as char);
    s.push(A[(m >> 12 & 63) as usize] as char);
    s.push_str("==");
    s
}

/// (mappings, hints) of a cache_dump.
type Dump = (BTreeMap<u32, Mapping>, BTreeMap<u32, String>);

fn parse_dump(xml: &str) -> Dump {
    let mut maps = BTreeMap::new();
    let mut hints = BTreeMap::new();
    for line in xml.lines() {
        if line.contains("<mapping ") {
            let m = Mapping {
                oblock: num(line, "origin_block"),
                dirty: attr(line, "dirty") == Some("true"),
            };
            maps.insert(num(line, "cache_block") as u32, m);
        } else if line.contains("<hint ") {
            let data = attr(line, "data").expect("hint data").to_string();
            hints.insert(num(line, "cache_block") as u32, data);
        }
    }
    (maps, hints)
}

fn save(dev: &MemoryDevice, path: &Path) {
    std::fs::write(path, dev.image()).expect("writes the image");
}

fn cache_check(path: &Path) {
    let o = run(Command::new(debian("cache_check")).arg(path));
    assert!(
        o.status.success(),
        "cache_check failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn cache_dump(path: &Path) -> String {
    let o = run(Command::new(debian("cache_dump")).arg(path));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 XML")
}

fn cache_restore(xml: &str, dir: &Path, extra: &[&str]) -> Arc<MemoryDevice> {
    let input = dir.join("in.xml");
    let output = dir.join("out.img");
    std::fs::write(&input, xml).unwrap();
    let f = std::fs::File::create(&output).unwrap();
    f.set_len(META_BLOCKS * 4096).unwrap();
    drop(f);
    let o = run(Command::new(debian("cache_restore"))
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args(extra));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Arc::new(MemoryDevice::from_image(std::fs::read(&output).unwrap()))
}

/// A cache of 1000 blocks with mappings, dirty blocks, hints and discards.
fn fill(version: u32) -> (Arc<MemoryDevice>, CacheMetadata, BTreeMap<u32, Mapping>) {
    let dev = Arc::new(MemoryDevice::new(META_BLOCKS));
    let mut md = CacheMetadata::format(
        dev.clone() as Arc<dyn BlockDevice>,
        version,
        128,
        1000,
        &Policy::smq(),
        false,
    )
    .unwrap();
    let mut want = BTreeMap::new();
    for c in (0..1000u32).step_by(3) {
        let oblock = u64::from(c) * 7 + 5;
        md.insert(u64::from(c), oblock).unwrap();
        let dirty = c % 2 == 0;
        if dirty {
            md.set_dirty(u64::from(c), true).unwrap();
        }
        md.set_hint(u64::from(c), c * 1000 + 1).unwrap();
        want.insert(c, Mapping { oblock, dirty });
    }
    md.discard_size(256, 60).unwrap();
    for b in [0, 7, 59] {
        md.set_discard(b, true).unwrap();
    }
    md.commit(true).unwrap();
    (dev, md, want)
}

#[test]
fn our_v1_image_passes_their_check_and_dumps_our_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.img");
    let (dev, mut md, mut want) = fill(1);
    save(&dev, &path);
    cache_check(&path);
    let xml = cache_dump(&path);
    assert!(
        xml.contains("block_size=\"128\" nr_cache_blocks=\"1000\" policy=\"smq\" hint_width=\"4\""),
        "{xml}"
    );
    let (maps, hints) = parse_dump(&xml);
    assert_eq!(maps, want);
    for (c, h) in &hints {
        assert_eq!(h, &base64_hint(c * 1000 + 1), "hint of {c}");
    }
    assert_eq!(
        hints.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );

    // More changes, an unclean commit, a shrink: still accepted and listed.
    md.remove(3).unwrap();
    want.remove(&3);
    md.set_dirty(0, false).unwrap();
    want.get_mut(&0).unwrap().dirty = false;
    for c in (900..1000u32).filter(|c| want.get(c).is_some_and(|m| m.dirty)) {
        md.set_dirty(u64::from(c), false).unwrap();
    }
    md.resize(900).unwrap();
    want.retain(|c, _| *c < 900);
    md.commit(false).unwrap();
    save(&dev, &path);
    cache_check(&path);
    let (maps, _) = parse_dump(&cache_dump(&path));
    assert_eq!(maps, want);
}

#[test]
fn our_v2_image_passes_their_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.img");
    let (dev, _md, want) = fill(2);
    save(&dev, &path);
    cache_check(&path);
    // 0.9.0 ignores the v2 dirty bitset: every block dumps clean.
    let (maps, hints) = parse_dump(&cache_dump(&path));
    let clean: BTreeMap<u32, Mapping> = want
        .iter()
        .map(|(c, m)| (*c, Mapping { dirty: false, ..*m }))
        .collect();
    assert_eq!(maps, clean);
    assert_eq!(hints.len(), want.len());
    // And it reads back here with the real dirty flags.
    let md = CacheMetadata::open(dev as Arc<dyn BlockDevice>, false).unwrap();
    assert!(md.clean_when_opened());
    assert_eq!(
        md.mappings()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        want
    );
}

const XML: &str = r#"<superblock uuid="" block_size="128" nr_cache_blocks="300" policy="smq" hint_width="4">
  <mappings>
    <mapping cache_block="0" origin_block="10" dirty="false"/>
    <mapping cache_block="3" origin_block="7" dirty="true"/>
    <mapping cache_block="200" origin_block="123456789" dirty="true"/>
    <mapping cache_block="299" origin_block="11" dirty="false"/>
  </mappings>
  <hints>
    <hint cache_block="0" data="AQAAAA=="/>
    <hint cache_block="3" data="AgAAAA=="/>
    <hint cache_block="200" data="AwAAAA=="/>
    <hint cache_block="299" data="BAAAAA=="/>
  </hints>
</superblock>
"#;

fn xml_mappings() -> BTreeMap<u32, Mapping> {
    parse_dump(XML).0
}

#[test]
fn their_restore_opens_here() {
    for version in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let dev = cache_restore(XML, dir.path(), &["--metadata-version", version]);
        let mut md = CacheMetadata::open(dev.clone() as Arc<dyn BlockDevice>, true).unwrap();
        assert_eq!(md.version().to_string(), version);
        assert!(md.clean_when_opened());
        assert_eq!(md.nr_cache_blocks(), 300);
        assert_eq!(md.data_block_size(), 128);
        assert_eq!(md.policy().name, "smq");
        let got: BTreeMap<u32, Mapping> = md.mappings().unwrap().into_iter().collect();
        assert_eq!(got, xml_mappings(), "version {version}");
        assert_eq!(
            md.lookup(200).unwrap(),
            Some(Mapping {
                oblock: 123_456_789,
                dirty: true
            })
        );
        assert_eq!(md.lookup(1).unwrap(), None);

        // Change it here and hand it back: their check still passes.
        md.insert(1, 99).unwrap();
        md.set_dirty(0, true).unwrap();
        md.remove(299).unwrap();
        if version == "2" {
            // 0.9.0 sets the bits of unmapped blocks; a clean shutdown
            // rewrites the bitset, as the kernel's suspend does.
            assert!(unmapped_dirty_bits(&md) > 0);
        }
        md.commit(true).unwrap();
        if version == "2" {
            assert_eq!(unmapped_dirty_bits(&md), 0);
        }
        let path = dir.path().join("back.img");
        save(&dev, &path);
        cache_check(&path);
        if version == "1" {
            let (maps, _) = parse_dump(&cache_dump(&path));
            let mut want = xml_mappings();
            want.insert(
                1,
                Mapping {
                    oblock: 99,
                    dirty: false,
                },
            );
            want.get_mut(&0).unwrap().dirty = true;
            want.remove(&299);
            assert_eq!(maps, want);
        }
    }
}

/// v2: how many unmapped blocks have their dirty bit set.
fn unmapped_dirty_bits(md: &CacheMetadata) -> usize {
    let mapped: BTreeMap<u32, Mapping> = md.mappings().unwrap().into_iter().collect();
    let sb = md.superblock();
    let mut n = 0;
    pdata::bitset::walk(
        md.transaction_manager(),
        sb.dirty_root,
        u64::from(sb.cache_blocks),
        |b, v| {
            n += usize::from(v && !mapped.contains_key(&(b as u32)));
            Ok(())
        },
    )
    .unwrap();
    n
}

#[test]
fn their_unclean_restore_loads_every_mapping_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let dev = cache_restore(XML, dir.path(), &["--omit-clean-shutdown"]);
    let md = CacheMetadata::open(dev as Arc<dyn BlockDevice>, false).unwrap();
    assert!(!md.clean_when_opened());
    assert!(md.mappings().unwrap().iter().all(|(_, m)| m.dirty));
    assert_eq!(md.hints().unwrap(), None);
}
