//! What the thin tools take from the metadata, and what they refuse: a
//! metadata snapshot is read without the live metadata space map (which
//! may be damaged while the snapshot is intact), and data block sizes
//! follow the kernel (a multiple of 128 sectors from 128 to 2097152) in
//! every tool that takes or reads one.

mod common;

use common::damage::{sb, Image, Role};
use common::pool::exec_pool;
use common::tool::{file, ok, pdt, run, s};
use std::path::Path;
use std::process::Output;

/// A pool with two devices and a held metadata snapshot.
fn pool(dir: &Path) -> std::path::PathBuf {
    let mut script = String::from("format 128 4000\ncreate_thin 1\n");
    for v in 0..300 {
        script += &format!("provision 1 {}\n", 3 * v);
    }
    script += "commit\ncreate_snap 2 1\nprovision 2 1\nreserve_metadata_snap\ncommit\nprovision 1 1000\ncommit\n";
    exec_pool(dir, "pool.md", 8 << 20, &script)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn snapshot_reads_do_not_need_the_live_space_map() {
    let dir = tempfile::tempdir().unwrap();
    let meta = pool(dir.path());
    let m = s(&meta);
    let dump = ok(pdt("thin_dump").args(["-m", m]));
    let ls = ok(pdt("thin_ls").args(["-m", m, "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS"]));
    let delta = ok(pdt("thin_delta").args(["-m", "--thin1", "1", "--thin2", "2", m]));

    // The live metadata space map's index block claims another block.
    let mut img = Image(std::fs::read(&meta).unwrap());
    let index = img.sm(sb::META_SM, sb::BITMAP_ROOT);
    img.put64(index, 8, 0);
    img.reseal(index, Role::MetaIndex);
    std::fs::write(&meta, &img.0).unwrap();
    let live = run(pdt("thin_check").arg(m));
    assert_eq!(live.status.code(), Some(1), "the live metadata is damaged");

    assert_eq!(ok(pdt("thin_dump").args(["-m", m])), dump);
    assert_eq!(
        ok(pdt("thin_ls").args(["-m", m, "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS"])),
        ls
    );
    assert_eq!(
        ok(pdt("thin_delta").args(["-m", "--thin1", "1", "--thin2", "2", m])),
        delta
    );
    ok(pdt("thin_check").args(["-m", m]));
    // The live trees are intact too: a dump of them needs no space map.
    ok(pdt("thin_dump").arg(m));
}

#[test]
fn data_block_sizes_follow_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // thin_metadata_size: 0.9.0 wanted a power of two.
    for (size, good) in [
        ("64s", false),
        ("128s", true),
        ("384s", true),
        ("1g", true),
        ("2097152s", true),
        ("4194304s", false),
        ("200s", false),
    ] {
        let o = run(pdt("thin_metadata_size").args(["-b", size, "-s", "10t", "-m", "10", "-n"]));
        assert_eq!(o.status.success(), good, "{size}: {}", err(&o));
    }

    let meta = pool(d);
    let xml = d.join("pool.xml");
    std::fs::write(&xml, ok(pdt("thin_dump").arg(&meta))).unwrap();
    let text = std::fs::read_to_string(&xml).unwrap();
    let out = file(d, "out.md", 8 << 20);
    let restore = |xml: &Path, extra: &[&str]| {
        run(pdt("thin_restore")
            .args(["-i", s(xml), "-o", s(&out)])
            .args(extra))
    };
    for (size, good) in [
        ("64", false),
        ("192", false),
        ("384", true),
        ("4194304", false),
    ] {
        let o = restore(&xml, &["--data-block-size", size]);
        assert_eq!(
            o.status.success(),
            good,
            "--data-block-size {size}: {}",
            err(&o)
        );
        let other = d.join(format!("dbs{size}.xml"));
        let changed = text.replacen(
            "data_block_size=\"128\"",
            &format!("data_block_size=\"{size}\""),
            1,
        );
        std::fs::write(&other, changed).unwrap();
        let o = restore(&other, &[]);
        assert_eq!(o.status.success(), good, "XML {size}: {}", err(&o));
        let o = run(pdt("thin_repair").args([
            "-i",
            s(&meta),
            "-o",
            s(&out),
            "--data-block-size",
            size,
        ]));
        assert_eq!(o.status.success(), good, "repair {size}: {}", err(&o));
    }

    // A superblock with a size the kernel refuses fails the check.
    let mut img = Image(std::fs::read(&meta).unwrap());
    img.put32(0, 336, 64);
    img.reseal(0, Role::Superblock);
    let bad = d.join("dbs64.md");
    std::fs::write(&bad, &img.0).unwrap();
    for args in [&[][..], &["--super-block-only"]] {
        let o = run(pdt("thin_check").args(args).arg(&bad));
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(err(&o).contains("data block size 64"), "{}", err(&o));
    }
}
