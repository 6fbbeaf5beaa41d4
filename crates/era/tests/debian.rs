//! Debian's era tools (0.9.0) against our live metadata, both ways: what we
//! build passes their `era_check`, their `era_dump` lists our state and
//! their `era_invalidate` gives our answer; what their `era_restore` writes
//! from XML opens here with the state the XML describes.
// Lists of runs: a one-run list is meant.
#![allow(clippy::single_range_in_vec_init)]

mod common;

#[path = "../../../tests/common/oracle.rs"]
mod oracle;

use era::{EraMetadata, Run};
use oracle::{debian, run, xml_attr as attr, xml_num as num};
use pdata::io::MemoryDevice;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const META_BLOCKS: u64 = 1024;

/// What an era_dump says.
#[derive(Debug, Default, PartialEq)]
struct Dump {
    block_size: u64,
    nr_blocks: u64,
    current_era: u64,
    /// era -> (nr_bits, runs of set bits)
    writesets: BTreeMap<u32, (u32, Vec<Run>)>,
    era_array: Vec<u32>,
}

fn push_block(runs: &mut Vec<Run>, b: u64) {
    match runs.last_mut() {
        Some(r) if r.end == b => r.end = b + 1,
        _ => runs.push(b..b + 1),
    }
}

fn parse_dump(xml: &str) -> Dump {
    let mut d = Dump::default();
    let mut ws: Option<u32> = None;
    for line in xml.lines() {
        if line.contains("<superblock ") {
            d.block_size = num(line, "block_size");
            d.nr_blocks = num(line, "nr_blocks");
            d.current_era = num(line, "current_era");
        } else if line.contains("<writeset ") {
            let era = num(line, "era") as u32;
            d.writesets
                .insert(era, (num(line, "nr_bits") as u32, Vec::new()));
            ws = Some(era);
        } else if line.contains("<bit ") {
            if attr(line, "value") == Some("true") {
                let era = ws.expect("a bit inside a writeset");
                let runs = &mut d.writesets.get_mut(&era).unwrap().1;
                push_block(runs, num(line, "block"));
            }
        } else if line.contains("<era ") {
            assert_eq!(num(line, "block") as usize, d.era_array.len());
            d.era_array.push(num(line, "era") as u32);
        }
    }
    d
}

/// Our state, as era_dump would write it.
fn our_dump(md: &EraMetadata) -> Dump {
    let writesets = md
        .writesets()
        .unwrap()
        .into_iter()
        .map(|(era, ws)| (era, (ws.nr_bits, md.writeset_runs(&ws).unwrap())))
        .collect();
    Dump {
        block_size: u64::from(md.data_block_size()),
        nr_blocks: u64::from(md.nr_blocks()),
        current_era: u64::from(md.current_era()),
        writesets,
        era_array: md.era_array().unwrap(),
    }
}

fn save(dev: &MemoryDevice, path: &Path) {
    std::fs::write(path, dev.image()).expect("writes the image");
}

fn era_check(path: &Path) {
    let o = run(Command::new(debian("era_check")).arg(path));
    assert!(
        o.status.success(),
        "era_check failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn era_dump(path: &Path) -> String {
    let o = run(Command::new(debian("era_dump")).arg(path));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 XML")
}

/// era_invalidate's blocks, as runs.
fn era_invalidate(path: &Path, since: u32, snapshot: bool) -> Vec<Run> {
    let mut cmd = Command::new(debian("era_invalidate"));
    cmd.arg("--written-since").arg(since.to_string());
    if snapshot {
        cmd.arg("--metadata-snapshot");
    }
    let o = run(cmd.arg(path));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut runs: Vec<Run> = Vec::new();
    for line in String::from_utf8(o.stdout).unwrap().lines() {
        // It writes `end = "..."`.
        let line = &line.replace(" = ", "=");
        if line.contains("<range ") {
            let (b, e) = (num(line, "begin"), num(line, "end"));
            match runs.last_mut() {
                Some(r) if r.end == b => r.end = e,
                _ => runs.push(b..e),
            }
        } else if line.contains("<block ") {
            push_block(&mut runs, num(line, "block"));
        }
    }
    runs
}

fn union(a: &[Run], b: &[Run]) -> Vec<Run> {
    let mut blocks: Vec<u64> = a.iter().chain(b).flat_map(|r| r.clone()).collect();
    blocks.sort_unstable();
    blocks.dedup();
    let mut runs = Vec::new();
    for b in blocks {
        push_block(&mut runs, b);
    }
    runs
}

/// Compares Debian's era_invalidate with ours for every era up to the
/// next one. Where Debian 0.9.0 is wrong by the kernel's semantics, the
/// test says so:
/// * it ignores the current writeset (the blocks written in the current
///   era are as written as any: a backup must copy them);
/// * since era 0 it lists every block, taking the era array's initial 0
///   for a write in era 0, in which the kernel never writes.
fn compare_invalidate(md: &EraMetadata, path: &Path) {
    let current = match md.current_writeset() {
        Some(ws) => md.writeset_runs(&ws).unwrap(),
        None => Vec::new(),
    };
    for e in 1..=md.current_era() + 1 {
        let theirs = era_invalidate(path, e, false);
        let extra = if md.current_era() >= e {
            current.clone()
        } else {
            Vec::new()
        };
        assert_eq!(
            md.written_since(e).unwrap(),
            union(&theirs, &extra),
            "since {e}"
        );
    }
    let all: Vec<Run> = if md.nr_blocks() > 0 {
        vec![0..u64::from(md.nr_blocks())]
    } else {
        Vec::new()
    };
    assert_eq!(era_invalidate(path, 0, false), all);
    assert_eq!(md.written_since(0).unwrap(), md.written_since(1).unwrap());
    if md.metadata_snap().is_some() {
        // Debian 0.9.0's --metadata-snapshot reads the live metadata: its
        // era `metadata(bm, metadata_snap)` constructor ignores the
        // snapshot's location. Our snapshot answers are checked apart.
        for e in 1..=md.current_era() + 1 {
            assert_eq!(
                era_invalidate(path, e, true),
                era_invalidate(path, e, false),
                "snapshot since {e}"
            );
        }
    }
}

/// Writes in several eras, a digest cut part-way, a metadata snapshot that
/// the live state then moves away from. Returns the answers "written since
/// E" for every era E when the snapshot was taken.
fn build(dev: Arc<MemoryDevice>) -> (EraMetadata, Vec<Vec<Run>>) {
    let mut md = EraMetadata::format(dev, 3000, 128, false).unwrap();
    for era in 0..6u64 {
        md.write_range(era * 300, era * 300 + 40 + era * 7).unwrap();
        md.write(2999 - era * 11).unwrap();
        md.write((era * 977) % 3000).unwrap();
        md.checkpoint().unwrap();
    }
    md.digest(2).unwrap();
    for _ in 0..7 {
        md.digest_step().unwrap();
    }
    let at_snapshot = (0..=md.current_era() + 2)
        .map(|e| md.written_since(e).unwrap())
        .collect();
    md.take_metadata_snap().unwrap();
    md.write_range(100, 2500).unwrap();
    md.checkpoint().unwrap();
    md.write_range(5, 9).unwrap();
    md.commit().unwrap();
    (md, at_snapshot)
}

#[test]
fn our_metadata_passes_their_check_dump_and_invalidate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let dev = Arc::new(MemoryDevice::new(META_BLOCKS));
    let (mut md, at_snapshot) = build(dev.clone());
    for (e, want) in at_snapshot.iter().enumerate() {
        let got = md.snapshot_written_since(e as u32).unwrap();
        assert_eq!(&got, want, "snapshot since {e}");
    }
    assert_ne!(at_snapshot[1], md.written_since(1).unwrap());
    save(&dev, &path);
    era_check(&path);
    assert_eq!(parse_dump(&era_dump(&path)), our_dump(&md));
    compare_invalidate(&md, &path);
    // Everything digested, the snapshot dropped.
    md.drop_metadata_snap().unwrap();
    md.checkpoint().unwrap();
    md.digest(100).unwrap();
    md.commit().unwrap();
    save(&dev, &path);
    era_check(&path);
    let dump = parse_dump(&era_dump(&path));
    assert!(dump.writesets.is_empty());
    assert_eq!(dump, our_dump(&md));
    compare_invalidate(&md, &path);
}

/// An era_dump-style XML: writesets of eras 15..20 (every bit listed), an
/// era array of eras below them, current era 20.
fn xml_input(nr: u64) -> (String, BTreeMap<u32, Vec<bool>>, Vec<u32>) {
    let mut x =
        format!("<superblock uuid=\"\" block_size=\"64\" nr_blocks=\"{nr}\" current_era=\"20\">\n");
    let mut writesets = BTreeMap::new();
    for era in 15..20u32 {
        let bits: Vec<bool> = (0..nr)
            .map(|b| (b * 7 + u64::from(era) * 13) % 37 < 3)
            .collect();
        x += &format!("  <writeset era=\"{era}\" nr_bits=\"{nr}\">\n");
        for (b, v) in bits.iter().enumerate() {
            x += &format!("    <bit block=\"{b}\" value=\"{v}\"/>\n");
        }
        x += "  </writeset>\n";
        writesets.insert(era, bits);
    }
    let eras: Vec<u32> = (0..nr).map(|b| ((b * 31) % 15) as u32).collect();
    x += "  <era_array>\n";
    for (b, e) in eras.iter().enumerate() {
        x += &format!("    <era block=\"{b}\" era=\"{e}\"/>\n");
    }
    x += "  </era_array>\n</superblock>\n";
    (x, writesets, eras)
}

#[test]
fn their_restore_opens_here_with_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let (xml, writesets, eras) = xml_input(2000);
    let input = dir.path().join("in.xml");
    let path = dir.path().join("meta");
    std::fs::write(&input, &xml).unwrap();
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(META_BLOCKS * 4096).unwrap();
    drop(f);
    let o = run(Command::new(debian("era_restore"))
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&path));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dev = Arc::new(MemoryDevice::from_image(std::fs::read(&path).unwrap()));
    let md = EraMetadata::open(dev.clone(), false).unwrap();
    assert_eq!(md.current_era(), 20);
    assert_eq!(md.data_block_size(), 64);
    assert!(md.current_writeset().is_none(), "their restore leaves none");
    assert_eq!(md.era_array().unwrap(), eras);
    let ours = our_dump(&md);
    assert_eq!(ours, parse_dump(&xml));
    for (era, bits) in &writesets {
        let mut runs = Vec::new();
        for (b, _) in bits.iter().enumerate().filter(|(_, v)| **v) {
            push_block(&mut runs, b as u64);
        }
        assert_eq!(ours.writesets[era].1, runs);
    }
    // The model: a block is written since E if its era array entry (not
    // the initial 0) or a writeset of era >= E says so.
    for e in 1..=21u32 {
        let mut runs = Vec::new();
        for b in 0..2000usize {
            let in_ws = writesets.range(e..).any(|(_, bits)| bits[b]);
            if in_ws || (eras[b] >= e && eras[b] != 0) {
                push_block(&mut runs, b as u64);
            }
        }
        assert_eq!(md.written_since(e).unwrap(), runs, "since {e}");
    }
    compare_invalidate(&md, &path);
    drop(md);
    // It lives on here: resume (a rollover), writes, digests, and their
    // check still passes.
    let mut md = EraMetadata::open(dev.clone(), true).unwrap();
    assert!(md.write(3).is_err());
    md.checkpoint().unwrap();
    md.write_range(10, 20).unwrap();
    md.digest(3).unwrap();
    md.checkpoint().unwrap();
    md.commit().unwrap();
    save(&dev, &path);
    era_check(&path);
    assert_eq!(parse_dump(&era_dump(&path)), our_dump(&md));
    compare_invalidate(&md, &path);
}

#[test]
fn many_eras_and_a_large_origin() {
    // 300 archived writesets: a writeset tree of several levels; 40,000
    // blocks: bitsets and the era array over many array blocks. A snapshot
    // shares the tree while the live side digests it away.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let dev = Arc::new(MemoryDevice::new(8192));
    let mut md = EraMetadata::format(dev.clone(), 40_000, 8, false).unwrap();
    for era in 0..300u64 {
        md.write((era * 7919) % 40_000).unwrap();
        if era % 50 == 0 {
            md.write_range(era * 100, era * 100 + 5000).unwrap();
        }
        md.checkpoint().unwrap();
    }
    let at_snapshot: Vec<Vec<Run>> = [1u32, 150, 290, 301]
        .iter()
        .map(|&e| md.written_since(e).unwrap())
        .collect();
    md.take_metadata_snap().unwrap();
    md.digest(290).unwrap();
    md.write_range(39_000, 40_000).unwrap();
    md.commit().unwrap();
    common::audit::audit(dev.clone());
    save(&dev, &path);
    era_check(&path);
    assert_eq!(parse_dump(&era_dump(&path)), our_dump(&md));
    for (i, &e) in [1u32, 150, 290, 301].iter().enumerate() {
        assert_eq!(md.snapshot_written_since(e).unwrap(), at_snapshot[i]);
        let current = md.writeset_runs(&md.current_writeset().unwrap()).unwrap();
        let theirs = era_invalidate(&path, e, false);
        assert_eq!(md.written_since(e).unwrap(), union(&theirs, &current));
    }
    md.drop_metadata_snap().unwrap();
    md.digest(100).unwrap();
    md.commit().unwrap();
    common::audit::audit(dev.clone());
    save(&dev, &path);
    era_check(&path);
    assert_eq!(parse_dump(&era_dump(&path)), our_dump(&md));
}
