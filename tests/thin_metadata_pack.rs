//! thin_metadata_pack / thin_metadata_unpack: round trips of thin, cache and
//! era metadata of several shapes (the unpacked file equals the original
//! byte for byte and passes Debian's checker), packs written by the
//! upstream 1.3.3 tool (tests/data/packs) restored to their originals, and
//! bad input refused promptly with a clear message.

mod common;

use common::cache::{gen_xml, restore};
use common::era::exec as era_exec;
use common::oracle::debian_cmd;
use common::pool::exec_pool;
use common::tool::{fifo, file, ok, pdt, run, s};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

fn pack(meta: &Path, out: &Path, extra: &[&str]) -> Output {
    run(pdt("thin_metadata_pack")
        .args(["-i", s(meta), "-o", s(out)])
        .args(extra))
}

fn unpack(pack: &Path, out: &Path, extra: &[&str]) -> Output {
    run(pdt("thin_metadata_unpack")
        .args(["-i", s(pack), "-o", s(out)])
        .args(extra))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Packs `meta`, unpacks it to a new file: the bytes must be the same.
/// The unpacked file's path.
fn round_trip(meta: &Path) -> PathBuf {
    let packed = meta.with_extension("pack");
    let back = meta.with_extension("unpacked");
    let o = pack(meta, &packed, &["-q"]);
    assert!(o.status.success(), "pack: {}", stderr(&o));
    let o = unpack(&packed, &back, &["-q"]);
    assert!(o.status.success(), "unpack: {}", stderr(&o));
    let (a, b) = (std::fs::read(meta).unwrap(), std::fs::read(&back).unwrap());
    assert_eq!(a.len(), b.len(), "{}: sizes differ", meta.display());
    assert!(a == b, "{}: the unpacked bytes differ", meta.display());
    let packed_len = std::fs::metadata(&packed).unwrap().len();
    assert!(packed_len < a.len() as u64 / 4, "a pack compresses");
    back
}

fn debian_ok(tool: &str, meta: &Path) {
    let o = run(debian_cmd(tool).arg(meta));
    assert!(o.status.success(), "Debian's {tool}: {}", stderr(&o));
}

/// A pool with devices, snapshots, a removed range and a held metadata
/// snapshot.
fn snapshot_pool(dir: &Path) -> PathBuf {
    let mut script = String::from("format 128 20000\n");
    for d in 0..3 {
        script += &format!("create_thin {d}\n");
        for v in 0..(150 + d * 300) {
            script += &format!("provision {d} {}\n", v * (d + 1));
        }
    }
    script += "commit\ncreate_snap 10 0\n";
    for v in (0..150).step_by(3) {
        script += &format!("provision 10 {v}\n");
    }
    script += "reserve_metadata_snap\nremove_range 2 40 400\ncreate_snap 11 10\ncommit\n";
    exec_pool(dir, "snap.md", 8 << 20, &script)
}

#[test]
fn thin_pools_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = exec_pool(d, "empty.md", 4 << 20, "format 128 1000\ncommit\n");
    let snap = snapshot_pool(d);
    for meta in [empty, snap] {
        let back = round_trip(&meta);
        debian_ok("thin_check", &back);
    }
}

#[test]
fn cache_and_era_metadata_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let xml = gen_xml(700, 3);
    for (name, version) in [("cache1.md", 1), ("cache2.md", 2)] {
        let back = round_trip(&restore(d, &xml, name, version, true));
        debian_ok("cache_check", &back);
    }
    let era = file(d, "era.md", 4 << 20);
    let mut script = String::from("format 3000 128\n");
    for i in 0..60u64 {
        let b = i * 97 % 3000;
        script += &format!("write {b} {}\ncommit\n", (b + 30).min(3000));
        if i % 15 == 14 {
            script += "checkpoint\n";
        }
        if i == 30 {
            script += "take_metadata_snap\n";
        }
    }
    era_exec(&era, &(script + "commit\n"));
    debian_ok("era_check", &round_trip(&era));
}

fn gunzip(path: &Path) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn upstream_packs_restore_to_their_originals() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/packs");
    let dir = tempfile::tempdir().unwrap();
    for (name, checker) in [
        ("thin", "thin_check"),
        ("cache", "cache_check"),
        ("era", "era_check"),
    ] {
        let out = dir.path().join(format!("{name}.md"));
        let o = unpack(&data.join(format!("{name}.pack")), &out, &["-q"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let want = gunzip(&data.join(format!("{name}.md.gz")));
        assert!(std::fs::read(&out).unwrap() == want, "{name}: bytes differ");
        debian_ok(checker, &out);
    }
}

/// Runs `o`, which must fail without a panic (checked by `run`) and say
/// `words`.
fn refused(o: Output, words: &str) {
    assert!(!o.status.success(), "succeeded, expected: {words}");
    let e = stderr(&o);
    assert!(e.contains(words), "expected '{words}' in: {e}");
}

#[test]
fn bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let meta = snapshot_pool(d);
    let good = d.join("good.pack");
    ok(pdt("thin_metadata_pack").args(["-i", s(&meta), "-o", s(&good)]));
    let bytes = std::fs::read(&good).unwrap();
    let out = d.join("out.md");
    let variant = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (meta.clone(), "not a metadata pack"),
        (
            variant("v2.pack", &|b| b[8] = 2),
            "unsupported pack version 2",
        ),
        (variant("short.pack", &|b| b.truncate(20)), "truncated"),
        (
            variant("cut.pack", &|b| b.truncate(b.len() - 10)),
            "truncated",
        ),
        (variant("zlib.pack", &|b| b[45] ^= 0xff), "chunk at byte 32"),
        (
            variant("range.pack", &|b| {
                b[24..32].copy_from_slice(&3u64.to_le_bytes())
            }),
            "out of range",
        ),
        (
            variant("len.pack", &|b| {
                b[32..40].copy_from_slice(&u64::MAX.to_le_bytes())
            }),
            "larger than any chunk",
        ),
        (file(d, "empty.pack", 0), "not a metadata pack"),
        (d.to_path_buf(), "directory"),
    ];
    for (input, words) in &cases {
        refused(unpack(input, &out, &[]), words);
        assert!(
            !out.exists(),
            "{}: a failed unpack leaves no output",
            input.display()
        );
    }

    // FIFOs are refused before they are opened (which would wait).
    let fifo = fifo(d, "fifo");
    refused(unpack(&fifo, &out, &[]), "FIFO");
    refused(pack(&fifo, &d.join("p"), &[]), "FIFO");
    refused(pack(d, &d.join("p"), &[]), "directory");
    refused(
        pack(&file(d, "zero", 0), &d.join("p"), &[]),
        "less than one",
    );

    // The same file in and out.
    refused(pack(&meta, &meta, &["-f"]), "the same file");
    refused(unpack(&good, &good, &["-f"]), "the same file");

    // A non-empty output needs -f; an empty one does not.
    let taken = file(d, "taken", 10);
    refused(pack(&meta, &taken, &[]), "-f");
    refused(unpack(&good, &taken, &[]), "-f");
    assert_eq!(std::fs::metadata(&taken).unwrap().len(), 10, "left alone");
    assert!(pack(&meta, &file(d, "blank", 0), &[]).status.success());
    let o = unpack(&good, &taken, &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&taken).unwrap() == std::fs::read(&meta).unwrap());
    refused(pack(&meta, d, &["-f"]), "directory");

    // Usage errors, help and version.
    refused(
        run(pdt("thin_metadata_pack").args(["-i", s(&meta)])),
        "output",
    );
    refused(run(pdt("thin_metadata_unpack").arg("-x")), "");
    let help = ok(pdt("thin_metadata_pack").arg("-h"));
    assert!(String::from_utf8_lossy(&help).contains("--force"));
    let version = ok(pdt("thin_metadata_unpack").arg("-V"));
    assert!(!version.is_empty());
}
