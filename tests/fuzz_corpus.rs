//! Replays every input of the fuzz corpus (fuzz/corpus/<target>/) through
//! its entry point: whatever the fuzzer once found stays fixed. The ignored
//! `seed` test writes the seed inputs.

use pdata::io::{BlockDevice, MemoryDevice};
use pdt::fuzzing::{self, FUZZ_NR_BLOCKS};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thin::ThinMetadata;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let dir = corpus(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = e.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        entry(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
    n
}

#[test]
fn thin_metadata_corpus() {
    let n = replay("thin_metadata", fuzzing::thin_metadata);
    eprintln!("thin_metadata: {n} inputs");
}

#[test]
fn thin_xml_corpus() {
    let n = replay("thin_xml", fuzzing::thin_xml);
    eprintln!("thin_xml: {n} inputs");
}

#[test]
fn cache_metadata_corpus() {
    let n = replay("cache_metadata", fuzzing::cache_metadata);
    eprintln!("cache_metadata: {n} inputs");
}

#[test]
fn cache_xml_corpus() {
    let n = replay("cache_xml", fuzzing::cache_xml);
    eprintln!("cache_xml: {n} inputs");
}

/// Cache XML small enough for the fuzzer: (name, text).
fn seed_cache_xml() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, nr, hint_width) in [
        ("empty", 0u32, 4u32),
        ("small", 40, 4),
        ("wide", 1500, 4),
        ("no-hints", 100, 0),
    ] {
        let mut x = format!("<superblock uuid=\"\" block_size=\"128\" nr_cache_blocks=\"{nr}\" policy=\"smq\" hint_width=\"{hint_width}\">\n  <mappings>\n");
        let mapped: Vec<u32> = (0..nr).filter(|c| c % 7 != 3).collect();
        for &c in &mapped {
            let dirty = if c % 3 == 0 { "true" } else { "false" };
            x += &format!(
                "    <mapping cache_block=\"{c}\" origin_block=\"{}\" dirty=\"{dirty}\"/>\n",
                c * 5 + 1
            );
        }
        x += "  </mappings>\n  <hints>\n";
        if hint_width > 0 {
            for &c in &mapped {
                x += &format!("    <hint cache_block=\"{c}\" data=\"AQAAAA==\"/>\n");
            }
        }
        x += "  </hints>\n</superblock>\n";
        out.push((name, x));
    }
    out
}

#[test]
#[ignore = "writes the seed corpus"]
fn seed_cache() {
    for (name, xml) in seed_cache_xml() {
        let dir = corpus("cache_xml");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("{name}.xml")), &xml).expect("write");
        for version in [1, 2] {
            let dev = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
            let opts = cache::restore::RestoreOptions {
                version: Some(version),
                ..Default::default()
            };
            let mut r = cache::restore::Restorer::new(dev.clone(), opts);
            pdt::tools::cache::xml::parse(xml.as_bytes(), &mut r).expect("restore");
            let dir = corpus("cache_metadata");
            std::fs::create_dir_all(&dir).expect("mkdir");
            let image = fuzzing::records_from_image(&dev.image());
            std::fs::write(dir.join(format!("{name}.v{version}")), image).expect("write");
        }
    }
}

/// Pools small enough for the fuzzer: (name, image).
fn seed_pools() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, devices, per_dev, snap) in [
        ("empty", 0u64, 0u64, false),
        ("one-device", 1, 40, false),
        ("snapshots", 3, 700, false),
        ("metadata-snap", 2, 300, true),
    ] {
        let dev = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
        let bdev: Arc<dyn BlockDevice> = dev.clone();
        let mut md = ThinMetadata::format(bdev, 128, 100_000, true).expect("format");
        for d in 0..devices {
            if d == 2 {
                md.create_snap(d, 0).expect("snap");
            } else {
                md.create_thin(d).expect("thin");
            }
            for v in 0..per_dev {
                // Every third block leaves a gap, so runs and singles mix.
                md.provision(d, v * 2 + v % 3).expect("provision");
            }
        }
        md.commit().expect("commit");
        if snap {
            md.reserve_metadata_snap().expect("reserve");
            md.provision(0, 10_000).expect("provision");
            md.commit().expect("commit");
        }
        drop(md);
        out.push((name, dev.image()));
    }
    out
}

#[test]
#[ignore = "writes the seed corpus"]
fn seed() {
    for (name, image) in seed_pools() {
        let dir = corpus("thin_metadata");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), fuzzing::records_from_image(&image)).expect("write");

        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(image));
        let md = ThinMetadata::open(dev, false).expect("open");
        let mut xml = Vec::new();
        let mut w = pdt::tools::thin_xml::XmlWriter::new(&mut xml);
        thin::dump::dump(&md, &Default::default(), &mut w).expect("dump");
        let dir = corpus("thin_xml");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("{name}.xml")), xml).expect("write");
    }
}

/// A poor man's fuzzer for machines without cargo-fuzz: random byte
/// mutations of the cache corpus through the entry points (`PDT_MUTATIONS`
/// rounds, 2000 by default); a panic names the failing input.
#[test]
#[ignore = "slow: random mutations of the cache corpus"]
fn mutate_cache() {
    let rounds: u64 = std::env::var("PDT_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (target, entry) in [
        ("cache_metadata", fuzzing::cache_metadata as fn(&[u8])),
        ("cache_xml", fuzzing::cache_xml),
    ] {
        let inputs: Vec<Vec<u8>> = std::fs::read_dir(corpus(target))
            .expect("corpus")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
            .collect();
        for _ in 0..rounds {
            let mut data = inputs[(next() % inputs.len() as u64) as usize].clone();
            if data.is_empty() {
                continue;
            }
            for _ in 0..1 + next() % 8 {
                let at = (next() % data.len() as u64) as usize;
                data[at] = match next() % 3 {
                    0 => data[at] ^ (1 << (next() % 8)),
                    1 => next() as u8,
                    _ => b"0123456789\"<>/ ="[(next() % 16) as usize],
                };
            }
            let result = std::panic::catch_unwind(|| entry(&data));
            if result.is_err() {
                let path = std::env::temp_dir().join(format!("{target}-crash"));
                std::fs::write(&path, &data).expect("write");
                panic!("{target}: crash, input in {}", path.display());
            }
        }
    }
}

#[test]
fn era_metadata_corpus() {
    let n = replay("era_metadata", fuzzing::era_metadata);
    eprintln!("era_metadata: {n} inputs");
}

#[test]
fn era_xml_corpus() {
    let n = replay("era_xml", fuzzing::era_xml);
    eprintln!("era_xml: {n} inputs");
}

/// Era metadata small enough for the fuzzer: (name, image).
fn seed_era() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, writes, snap) in [
        ("fresh", 0u64, false),
        ("writesets", 6, false),
        ("snapshot", 4, true),
    ] {
        let dev = Arc::new(MemoryDevice::new(FUZZ_NR_BLOCKS));
        let bdev: Arc<dyn BlockDevice> = dev.clone();
        let mut md = era::EraMetadata::format(bdev, 1100, 128, true).expect("format");
        for e in 0..writes {
            md.write_range(e * 150, e * 150 + 70 + e).expect("write");
            md.write(1099 - e).expect("write");
            md.checkpoint().expect("checkpoint");
        }
        if writes > 0 {
            md.digest(2).expect("digest");
            md.write(7).expect("write");
        }
        md.commit().expect("commit");
        if snap {
            md.take_metadata_snap().expect("snap");
            md.write_range(100, 900).expect("write");
            md.commit().expect("commit");
        }
        drop(md);
        out.push((name, dev.image()));
    }
    out
}

/// Deterministic mutants of `bytes`: a few bytes flipped (the kept corpus
/// reaches the error paths without a fuzzer run).
fn mutants(bytes: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut m = bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % m.len().max(1) as u64) as usize;
                if let Some(b) = m.get_mut(at) {
                    *b ^= 1 << (next() % 8);
                }
            }
            m
        })
        .collect()
}

#[test]
#[ignore = "writes the era seed corpus"]
fn seed_era_corpus() {
    for (name, image) in seed_era() {
        let records = fuzzing::era_records_from_image(&image);
        let dir = corpus("era_metadata");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), &records).expect("write");
        for (i, m) in mutants(&records, 8, 7 + name.len() as u64)
            .into_iter()
            .enumerate()
        {
            std::fs::write(dir.join(format!("{name}-m{i}")), m).expect("write");
        }
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(image));
        for (form, compact) in [("bits", false), ("compact", true)] {
            let mut xml = Vec::new();
            let mut w = pdt::tools::era::xml::XmlWriter::new(&mut xml, compact);
            era::dump::dump(dev.clone(), false, &mut w).expect("dump");
            drop(w);
            let dir = corpus("era_xml");
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join(format!("{name}-{form}.xml")), &xml).expect("write");
            // Text mutants of the compact form only (the bit form is large).
            if compact {
                for (i, m) in mutants(&xml, 8, 3 + name.len() as u64)
                    .into_iter()
                    .enumerate()
                {
                    std::fs::write(dir.join(format!("{name}-{form}-m{i}.xml")), m).expect("write");
                }
            }
        }
    }
}

/// A poor man's fuzzing run without cargo-fuzz: many deterministic mutants
/// of the era seeds through both entry points (minutes; run by hand).
#[test]
#[ignore = "long: run by hand"]
fn era_mutants_smoke() {
    let n: usize = std::env::var("ERA_MUTANTS").map_or(2000, |v| v.parse().expect("a number"));
    for (name, image) in seed_era() {
        let records = fuzzing::era_records_from_image(&image);
        for m in mutants(&records, n, 99 + name.len() as u64) {
            fuzzing::era_metadata(&m);
        }
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::from_image(image));
        let mut xml = Vec::new();
        let mut w = pdt::tools::era::xml::XmlWriter::new(&mut xml, true);
        era::dump::dump(dev, false, &mut w).expect("dump");
        drop(w);
        for m in mutants(&xml, n, 5 + name.len() as u64) {
            fuzzing::era_xml(&m);
        }
    }
}
