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
