//! thin_migrate, offline: pools built by our thin_restore from XML over a
//! data file whose every block holds its own pattern. Each volume
//! extracted equals what its mappings say (holes where unmapped in a new
//! file, zeros written over an old destination), `--delta-id` turns the
//! base's copy into the device's, and what cannot work (a destination too
//! small, an unknown device, bad input) fails at once, non-zero, before
//! anything is written.

mod common;
use common::rng::XorShift;
use common::tool::{file, ok, pdt, run, s};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Thin block -> data block.
type Map = BTreeMap<u64, u64>;

struct Pool {
    /// Data block size in sectors.
    bs: u64,
    nr_data: u64,
    devs: BTreeMap<u64, Map>,
}

impl Pool {
    fn block(&self) -> usize {
        (self.bs * 512) as usize
    }

    fn xml(&self) -> String {
        let mut x = format!(
            "<superblock uuid=\"\" time=\"1\" transaction=\"1\" data_block_size=\"{}\" nr_data_blocks=\"{}\">\n",
            self.bs, self.nr_data
        );
        for (dev, m) in &self.devs {
            x += &format!(
                "  <device dev_id=\"{dev}\" mapped_blocks=\"{}\" transaction=\"0\" creation_time=\"0\" snap_time=\"1\">\n",
                m.len()
            );
            for (v, d) in m {
                x += &format!(
                    "    <single_mapping origin_block=\"{v}\" data_block=\"{d}\" time=\"0\"/>\n"
                );
            }
            x += "  </device>\n";
        }
        x + "</superblock>\n"
    }

    /// Metadata (by our thin_restore) and a data file in `dir`.
    fn build(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let xml = dir.join("pool.xml");
        std::fs::write(&xml, self.xml()).unwrap();
        let meta = file(dir, "meta", 8 << 20);
        ok(pdt("thin_restore").args(["-i", s(&xml), "-o", s(&meta)]));
        let data = dir.join("data");
        let mut bytes = Vec::with_capacity(self.nr_data as usize * self.block());
        for d in 0..self.nr_data {
            bytes.extend(data_block(d, self.block()));
        }
        std::fs::write(&data, bytes).unwrap();
        (meta, data)
    }

    /// Device `dev`'s content over `len` bytes.
    fn content(&self, dev: u64, len: usize) -> Vec<u8> {
        let bs = self.block();
        let mut v = vec![0u8; len];
        for (&t, &d) in &self.devs[&dev] {
            let at = t as usize * bs;
            if at < len {
                let n = bs.min(len - at);
                v[at..at + n].copy_from_slice(&data_block(d, bs)[..n]);
            }
        }
        v
    }

    /// Where device `dev`'s last mapped block ends.
    fn end(&self, dev: u64) -> usize {
        self.devs[&dev]
            .keys()
            .next_back()
            .map_or(0, |&t| (t as usize + 1) * self.block())
    }
}

/// Data block `d`: every 16 bytes name the block (plus one: never zero)
/// and the offset.
fn data_block(d: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (i, cell) in v.chunks_exact_mut(16).enumerate() {
        cell[..8].copy_from_slice(&(d + 1).to_le_bytes());
        cell[8..].copy_from_slice(&(i as u64).to_le_bytes());
    }
    v
}

/// Devices 1 (runs, gaps), 2 (its snapshot with blocks remapped, one
/// removed, one added), 3 (empty) and 4 (far out, sparse).
fn small_pool() -> Pool {
    let one: Map = [(2, 10), (3, 11), (4, 12), (5, 13), (7, 20), (8, 21)].into();
    let mut two = one.clone();
    two.insert(3, 30);
    two.insert(4, 31);
    two.remove(&7);
    two.insert(12, 32);
    let four: Map = [(0, 40), (100, 41), (101, 42), (300, 5)].into();
    Pool {
        bs: 128,
        nr_data: 64,
        devs: [(1, one), (2, two), (3, Map::new()), (4, four)].into(),
    }
}

fn migrate(meta: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    run(pdt("thin_migrate")
        .args(["-q", "--metadata-dev", s(meta), "--data-dev", s(data)])
        .args(args))
}

/// As [`migrate_ok`], through the copy buffers (file to file, the copy is
/// otherwise done inside the kernel).
fn migrate_buffered(meta: &Path, data: &Path, args: &[&str]) {
    let o = run(pdt("thin_migrate")
        .env("PDT_NO_COPY_RANGE", "1")
        .args(["-q", "--metadata-dev", s(meta), "--data-dev", s(data)])
        .args(args));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn migrate_ok(meta: &Path, data: &Path, args: &[&str]) {
    let o = migrate(meta, data, args);
    assert!(
        o.status.success(),
        "thin_migrate {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Fails with a message containing `want`, and writes nothing to `dest`.
fn refused(meta: &Path, data: &Path, args: &[&str], want: &str) {
    let o = migrate(meta, data, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: wanted '{want}' in: {err}");
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}");
    }
}

#[test]
fn extracts_each_volume_with_holes() {
    let dir = tempfile::tempdir().unwrap();
    let pool = small_pool();
    let (meta, data) = pool.build(dir.path());
    for dev in [1u64, 2, 4] {
        let out = dir.path().join(format!("vol{dev}"));
        migrate_ok(
            &meta,
            &data,
            &["--dev-id", &dev.to_string(), "--dest-file", s(&out)],
        );
        let got = std::fs::read(&out).unwrap();
        assert_same(
            &got,
            &pool.content(dev, pool.end(dev)),
            &format!("device {dev}"),
        );
        // Unmapped blocks are holes: only the mapped ones take space.
        let used = std::fs::metadata(&out).unwrap().blocks() * 512;
        let mapped = (pool.devs[&dev].len() * pool.block()) as u64;
        assert!(
            used <= mapped + 65536,
            "device {dev}: {used} bytes used for {mapped} mapped"
        );
    }
    // The empty device: an empty file; with --size, that many zeros.
    let out = dir.path().join("vol3");
    migrate_ok(&meta, &data, &["--dev-id", "3", "--dest-file", s(&out)]);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
    migrate_ok(
        &meta,
        &data,
        &["--dev-id", "3", "--dest-file", s(&out), "--size", "300"],
    );
    assert_same(
        &std::fs::read(&out).unwrap(),
        &vec![0; 300 * 512],
        "device 3",
    );

    // --size longer than the mappings, and one that cuts the last block.
    let out = dir.path().join("sized");
    for sectors in [10 * 128 + 5, 2000] {
        migrate_ok(
            &meta,
            &data,
            &[
                "--dev-id",
                "1",
                "--dest-file",
                s(&out),
                "--size",
                &sectors.to_string(),
            ],
        );
        let want = pool.content(1, sectors * 512);
        assert_same(
            &std::fs::read(&out).unwrap(),
            &want,
            &format!("--size {sectors}"),
        );
    }
    // An old file is truncated first: nothing of it is left.
    std::fs::write(&out, vec![0xee; 3 << 20]).unwrap();
    migrate_ok(&meta, &data, &["--dev-id", "2", "--dest-file", s(&out)]);
    assert_same(
        &std::fs::read(&out).unwrap(),
        &pool.content(2, pool.end(2)),
        "over an old file",
    );
}

#[test]
fn dest_dev_gets_zeros_over_old_content() {
    let dir = tempfile::tempdir().unwrap();
    let pool = small_pool();
    let (meta, data) = pool.build(dir.path());
    // A "device" (here a file given as --dest-dev) full of garbage, larger
    // than the volume: the whole of it becomes the volume.
    let dev = dir.path().join("dev");
    let len = pool.end(4) + 3 * pool.block();
    std::fs::write(&dev, vec![0xab; len]).unwrap();
    migrate_buffered(&meta, &data, &["--dev-id", "4", "--dest-dev", s(&dev)]);
    assert_same(
        &std::fs::read(&dev).unwrap(),
        &pool.content(4, len),
        "device 4",
    );
    // --size: only that much of the device is the volume.
    std::fs::write(&dev, vec![0xab; len]).unwrap();
    migrate_ok(
        &meta,
        &data,
        &["--dev-id", "1", "--dest-dev", s(&dev), "--size", "1280"],
    );
    let got = std::fs::read(&dev).unwrap();
    assert_same(&got[..1280 * 512], &pool.content(1, 1280 * 512), "device 1");
    assert!(got[1280 * 512..].iter().all(|&b| b == 0xab), "past --size");
}

#[test]
fn delta_turns_the_base_copy_into_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let pool = small_pool();
    let (meta, data) = pool.build(dir.path());
    for (base, dev) in [(1u64, 2u64), (2, 1), (1, 4), (4, 1), (3, 2), (2, 3), (1, 1)] {
        for as_dev in [false, true] {
            let out = dir.path().join(format!("d{base}-{dev}"));
            let len = pool.end(base).max(pool.end(dev));
            // The base's copy, sized for both (as a device would be).
            std::fs::write(&out, pool.content(base, len)).unwrap();
            let id = dev.to_string();
            let mut args = vec!["--dev-id", &id];
            let baseid = base.to_string();
            args.extend(["--delta-id", &baseid]);
            args.extend([if as_dev { "--dest-dev" } else { "--dest-file" }, s(&out)]);
            // Through the buffers too.
            if as_dev {
                migrate_buffered(&meta, &data, &args);
            } else {
                migrate_ok(&meta, &data, &args);
            }
            assert_same(
                &std::fs::read(&out).unwrap(),
                &pool.content(dev, len),
                &format!(
                    "{base} -> {dev} ({})",
                    if as_dev { "device" } else { "file" }
                ),
            );
        }
    }
    // A file shorter than the device's mappings is grown to them.
    let out = dir.path().join("short");
    std::fs::write(&out, pool.content(1, pool.end(1))).unwrap();
    migrate_ok(
        &meta,
        &data,
        &["--dev-id", "2", "--delta-id", "1", "--dest-file", s(&out)],
    );
    assert_same(
        &std::fs::read(&out).unwrap(),
        &pool.content(2, pool.end(2)),
        "grown",
    );
}

#[test]
fn random_pools_with_small_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = XorShift(0x5eed_1234_abcd);
    for round in 0..3 {
        let sub = dir.path().join(format!("r{round}"));
        std::fs::create_dir(&sub).unwrap();
        let nr_data = 512;
        let mut devs = BTreeMap::new();
        let mut next_data = 0u64;
        let mut origin = Map::new();
        // Long runs (split across buffers), short ones, gaps.
        let mut t = rng.below(5);
        while next_data < 300 {
            let len = 1 + rng.below(40);
            for i in 0..len {
                origin.insert(t + i, next_data);
                next_data += 1;
            }
            t += len + rng.below(20);
        }
        let mut snap = origin.clone();
        for _ in 0..60 {
            let t = rng.below(t + 50);
            if rng.below(3) == 0 {
                snap.remove(&t);
            } else if next_data < nr_data {
                snap.insert(t, next_data);
                next_data += 1;
            }
        }
        devs.insert(7, origin);
        devs.insert(9, snap);
        let pool = Pool {
            bs: 128,
            nr_data,
            devs,
        };
        let (meta, data) = pool.build(&sub);
        for dev in [7u64, 9] {
            let out = sub.join(format!("v{dev}"));
            let copy = if dev == 7 {
                migrate_buffered
            } else {
                migrate_ok
            };
            copy(
                &meta,
                &data,
                &[
                    "--dev-id",
                    &dev.to_string(),
                    "--dest-file",
                    s(&out),
                    "--buffer-size-meg",
                    "1",
                ],
            );
            assert_same(
                &std::fs::read(&out).unwrap(),
                &pool.content(dev, pool.end(dev)),
                "full",
            );
        }
        // The origin's copy, on a "device" large enough for the snapshot.
        let out = sub.join("v7");
        let len = pool.end(7).max(pool.end(9)) as u64;
        std::fs::File::options()
            .write(true)
            .open(&out)
            .unwrap()
            .set_len(len)
            .unwrap();
        migrate_buffered(
            &meta,
            &data,
            &[
                "--dev-id",
                "9",
                "--delta-id",
                "7",
                "--dest-dev",
                s(&out),
                "--buffer-size-meg",
                "1",
            ],
        );
        assert_same(
            &std::fs::read(&out).unwrap(),
            &pool.content(9, len as usize),
            &format!("round {round}: delta"),
        );
    }
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pool = small_pool();
    let (meta, data) = pool.build(d);
    let out = d.join("out");
    let o = s(&out);

    // Too small, before anything is written.
    let small = file(d, "small", pool.end(4) as u64 - 512);
    refused(
        &meta,
        &data,
        &["--dev-id", "4", "--dest-dev", s(&small)],
        "too small",
    );
    assert!(std::fs::read(&small).unwrap().iter().all(|&b| b == 0));
    refused(
        &meta,
        &data,
        &["--dev-id", "1", "--dest-file", o, "--size", "1024"],
        "too small",
    );
    refused(
        &meta,
        &data,
        &["--dev-id", "1", "--dest-dev", s(&small), "--size", "100000"],
        "too small",
    );

    // Devices that are not there.
    refused(
        &meta,
        &data,
        &["--dev-id", "5", "--dest-file", o],
        "thin device 5 does not exist",
    );
    refused(
        &meta,
        &data,
        &["--dev-id", "1", "--delta-id", "6", "--dest-file", o],
        "thin device 6 does not exist",
    );
    refused(
        &meta,
        &data,
        &[
            "--dev-id",
            "2",
            "--delta-id",
            "1",
            "--dest-file",
            s(&d.join("none")),
        ],
        "does not exist",
    );

    // A data device shorter than the mappings.
    let short = d.join("short-data");
    std::fs::write(&short, &std::fs::read(&data).unwrap()[..20 * pool.block()]).unwrap();
    refused(
        &meta,
        &short,
        &["--dev-id", "4", "--dest-file", o],
        "past the end of the data device",
    );

    // Bad input: not metadata, not a data device, not a file.
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a plain syscall on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    refused(d, &data, &["--dev-id", "1", "--dest-file", o], "directory");
    refused(
        &data,
        &data,
        &["--dev-id", "1", "--dest-file", o],
        "superblock",
    );
    refused(&meta, &fifo, &["--dev-id", "1", "--dest-file", o], "FIFO");
    refused(
        &meta,
        &data,
        &["--dev-id", "1", "--dest-file", s(d)],
        "not a regular file",
    );
    refused(
        &meta,
        &data,
        &["--dev-id", "1", "--dest-dev", s(&fifo)],
        "FIFO",
    );
    refused(
        &meta,
        &data,
        &["--dev-id", "1", "--dest-dev", s(&data)],
        "source device",
    );
    refused(
        &meta,
        &data,
        &["--dev-id", "1", "--dest-file", s(&meta)],
        "metadata device",
    );
    let garbage = file(d, "garbage", 1 << 20);
    std::fs::write(&garbage, vec![0x5a; 1 << 20]).unwrap();
    refused(
        &garbage,
        &data,
        &["--dev-id", "1", "--dest-file", o],
        "superblock",
    );
}

#[test]
fn command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = file(d, "img", 1 << 20);
    let none = d.join("none");
    let cases: &[(&[&str], &str)] = &[
        (&[], "No source"),
        (&["--metadata-dev", "m", "--data-dev", "d"], "--dev-id"),
        (&["--metadata-dev", "m", "--dev-id", "1"], "--data-dev"),
        (
            &["--metadata-dev", "m", "--data-dev", "d", "--dev-id", "1"],
            "No destination",
        ),
        (
            &["--source-dev", "x", "--dest-file", "a", "--dest-dev", "b"],
            "one destination",
        ),
        (
            &["--source-dev", "x", "--dev-id", "1", "--dest-file", "a"],
            "goes without",
        ),
        (&["--dev-id", "x"], "needs a number"),
        (&["--buffer-size-meg", "0"], "between 1 and 65536"),
        (&["--size", "0"], "above 0"),
        (&["--size", "99999999999999999999"], "needs a number"),
        (&["--bogus"], "unrecognized option"),
        (
            &["--source-dev", "x", "--dest-file", "a", "extra"],
            "unexpected argument",
        ),
        (
            &["--source-dev", s(&img), "--dest-file", "a"],
            "not a block device",
        ),
        (
            &["--source-dev", s(&none), "--dest-file", "a"],
            "cannot open",
        ),
    ];
    for (args, want) in cases {
        let o = run(pdt("thin_migrate").args(*args));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(err.contains(want), "{args:?}: wanted '{want}' in: {err}");
    }
    let o = run(pdt("thin_migrate").arg("-h"));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("--delta-id"));
}
