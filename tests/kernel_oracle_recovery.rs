//! Kernel oracle, recovery: Debian's real dm-thin-pool, booted under qemu
//! by `tests/kernel/run-guest.sh`, fails a commit (what is left must be
//! the last transaction), and serves pools that `pdt thin_restore` and
//! `pdt thin_repair` build, which pdt's tools then read as Debian's do.
//!
//! Nothing here skips itself (see kernel_oracle.rs).

mod common;
use common::kernel::*;
use common::kernel_host::*;
use common::oracle::debian_cmd;
use common::tool::{new_file as sparse_file, ok, pdt};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

// ---------------------------------------------------------------- test 3

/// Metadata writes fail (dm-flakey error_writes) while the pool commits
/// transaction 2. What is left on disk must be transaction 1 exactly: clean
/// for thin_check, and pdt must see only transaction 1's mappings.
#[test]
fn failed_kernel_commit_leaves_transaction_1() {
    let Images { tmp, meta, data } = Images::new();
    let dir = tmp.path();

    let mut g = GuestFiles::new(&dir.join("guest"));
    let a = pattern("txn1", BLOCK);
    let bpat = pattern("txn2", BLOCK);
    g.file("a.bin", &a);
    g.file("b.bin", &bpat);
    g.list(
        "writes-1.txt",
        &(0..4)
            .map(|v| write_line("thin0", v * PAGES, "a.bin"))
            .collect::<Vec<_>>(),
    );
    g.list(
        "writes-2.txt",
        &(100..104)
            .map(|v| write_line("thin0", v * PAGES, "b.bin"))
            .collect::<Vec<_>>(),
    );
    g.list(
        "reads.txt",
        &[
            read_line("rthin0", 0, "ro-0.bin"),
            read_line("rthin0", 100, "ro-100.bin"),
        ],
    );

    let b = boot_ok(
        "flakey-commit",
        dir,
        &meta,
        &data,
        "flakey-commit.sh",
        &g.files,
    );
    let st = b.status("status-ro.txt");
    let (trans, _) = pool_status(&st["rpool"]);
    assert_eq!(
        trans,
        1,
        "read-only reactivation: kernel sees transaction {trans}, want 1\n{}",
        b.tail()
    );
    assert!(
        b.out_file("ro-0.bin") == a,
        "read-only reactivation: thin 0 block 0 lost\n{}",
        b.tail()
    );
    assert!(
        b.out_file("ro-100.bin").iter().all(|&x| x == 0),
        "read-only reactivation: uncommitted block 100 is mapped\n{}",
        b.tail()
    );

    check_thin_check(&meta, "after the failed commit", Some(&b));
    let keys: Vec<(u32, u64)> = (0..4).chain(100..104).map(|v| (0, v)).collect();
    let found = lookups(&meta, &keys, "lookups after the failed commit");
    let committed: BTreeMap<(u32, u64), Vec<u8>> = (0..4).map(|v| ((0, v), a.clone())).collect();
    expect_pdt_maps(&data, &found, &committed, "(committed)", Some(&b));
    for v in 100..104u64 {
        assert_eq!(
            found[&(0, v)],
            None,
            "pdt: thin 0 block {v} was never committed but is mapped\n{}",
            b.tail()
        );
    }
    // the on-disk transaction id must be 1: only then does this op succeed
    let mut s = Script::default();
    s.op("set_transaction_id 1 3");
    s.op("abort");
    thin_exec_ok(&meta, &s, "transaction id after the failed commit");
}

// ---------------------------------------------------------------- test 4

/// Runs `pdt TOOL ARGS` (or Debian's with `debian`), wants success, returns stdout.
fn tool_ok(debian: bool, tool: &str, args: &[&str]) -> String {
    let mut cmd = if debian { debian_cmd(tool) } else { pdt(tool) };
    String::from_utf8_lossy(&ok(cmd.args(args))).into_owned()
}

/// `pdt thin_restore` builds a pool from XML: thin 1, thin 2 a snapshot of 1
/// sharing 50 blocks, thin 3 on its own. The kernel must serve the restored
/// mappings, break sharing on writes, take a metadata snapshot and commit;
/// then pdt's thin_check, thin_dump and thin_dump -m must agree with
/// Debian's on what the kernel wrote. Then the top-level mapping root is
/// lost, and the pool pdt thin_repair rebuilds must be served by the kernel
/// with every mapping.
#[test]
fn kernel_serves_pool_restored_by_pdt() {
    let Images { tmp, meta, data } = Images::new();
    let dir = tmp.path();

    // (dev, vblock) -> data block. Thin 2 was snapshotted from thin 1 at
    // time 1: mappings older than that are shared.
    let mut map: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for v in 0..50 {
        map.insert((1, v), v);
        map.insert((2, v), v);
    }
    for v in 100..120 {
        map.insert((1, v), 100 + v);
    }
    map.insert((2, 60), 300);
    for v in 0..10 {
        map.insert((3, v), 400 + v);
    }
    let xml = format!(
        r#"<superblock uuid="" time="2" transaction="5" flags="0" version="2" data_block_size="{BS}" nr_data_blocks="{NR_BLOCKS}">
  <device dev_id="1" mapped_blocks="70" transaction="3" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="50" time="0"/>
    <range_mapping origin_begin="100" data_begin="200" length="20" time="1"/>
  </device>
  <device dev_id="2" mapped_blocks="51" transaction="4" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="50" time="0"/>
    <single_mapping origin_block="60" data_block="300" time="2"/>
  </device>
  <device dev_id="3" mapped_blocks="10" transaction="5" creation_time="2" snap_time="0">
    <range_mapping origin_begin="0" data_begin="400" length="10" time="2"/>
  </device>
</superblock>
"#
    );
    let xml_path = dir.join("pool.xml");
    fs::write(&xml_path, &xml).unwrap();
    let meta_s = meta.to_str().unwrap();
    tool_ok(
        false,
        "thin_restore",
        &["-i", xml_path.to_str().unwrap(), "-o", meta_s],
    );
    assert_eq!(
        tool_ok(false, "thin_dump", &[meta_s]),
        xml,
        "pdt thin_dump of the restored pool differs from the XML restored"
    );
    check_thin_check(&meta, "on the metadata pdt restored", None);
    let content = |dblock: u64| pattern(&format!("b{dblock}"), BLOCK);
    for &dblock in map.values() {
        write_data_block(&data, dblock, &content(dblock));
    }

    let mut g = GuestFiles::new(&dir.join("guest"));
    let reads: Vec<(u32, u64)> = vec![(1, 0), (1, 49), (1, 110), (2, 0), (2, 49), (2, 60), (3, 9)];
    let mut lines: Vec<String> = read_lines(reads.iter().copied(), rname);
    lines.push(read_line("thin2", 100, "zero-2-100.bin"));
    g.list("reads.txt", &lines);
    for (name, bytes) in [
        ("w-2-0.bin", pattern("w2v0", BLOCK)), // shared with thin 1: copy
        ("w-1-49.bin", pattern("w1v49", BLOCK)), // shared with thin 2: copy
        ("w-3-20.bin", pattern("w3v20", BLOCK)), // new block
        ("w-1-500.bin", pattern("w1v500", BLOCK)), // after the metadata snapshot
    ] {
        g.file(name, &bytes);
    }
    g.list(
        "writes.txt",
        &[
            write_line("thin2", 0, "w-2-0.bin"),
            write_line("thin1", 49 * PAGES, "w-1-49.bin"),
            write_line("thin3", 20 * PAGES, "w-3-20.bin"),
        ],
    );
    g.list(
        "writes-after-snap.txt",
        &[write_line("thin1", 500 * PAGES, "w-1-500.bin")],
    );
    let after: Vec<(u32, u64)> = vec![(1, 0), (2, 0), (1, 49), (2, 49), (3, 20), (1, 500)];
    g.list(
        "reads-after.txt",
        &read_lines(after.iter().copied(), after_name),
    );

    let b = boot_ok(
        "restored-pool",
        dir,
        &meta,
        &data,
        "restored-pool.sh",
        &g.files,
    );

    let st = b.status("status-before.txt");
    let (trans, used) = pool_status(&st["pool"]);
    assert_eq!(
        (trans, used),
        (5, 81),
        "kernel status of the restored pool: (transaction, used data blocks)\n{}",
        b.tail()
    );
    for &(d, v) in &reads {
        let want = content(map[&(d, v)]);
        b.expect_file(
            &rname(d, v),
            &want,
            &format!("thin {d} block {v} read by the kernel"),
        );
    }
    let z = b.out_file("zero-2-100.bin");
    assert!(z.iter().all(|&x| x == 0), "thin 2 block 100 is unmapped");
    let expect: BTreeMap<(u32, u64), Vec<u8>> = [
        ((1, 0), content(0)),
        ((2, 0), g.written["w-2-0.bin"].clone()),
        ((1, 49), g.written["w-1-49.bin"].clone()),
        ((2, 49), content(49)),
        ((3, 20), g.written["w-3-20.bin"].clone()),
        ((1, 500), g.written["w-1-500.bin"].clone()),
    ]
    .into_iter()
    .collect();
    for (k, want) in &expect {
        b.expect_file(
            &format!("after-{}-{}.bin", k.0, k.1),
            want,
            &format!("thin {} block {} after the writes", k.0, k.1),
        );
    }

    // ---- what the kernel committed, read by pdt and by Debian
    tool_ok(false, "thin_check", &[meta_s]);
    check_thin_check(&meta, "after the kernel used the restored pool", Some(&b));
    let ours = tool_ok(false, "thin_dump", &[meta_s]);
    assert_eq!(ours, tool_ok(true, "thin_dump", &[meta_s]), "thin_dump");
    // Debian takes nr_data_blocks from the snapshot's zeroed space-map root.
    let snap_ours = tool_ok(false, "thin_dump", &["-m", meta_s]);
    let snap_debian = tool_ok(true, "thin_dump", &["-m", meta_s]).replace(
        "nr_data_blocks=\"0\"",
        &format!("nr_data_blocks=\"{NR_BLOCKS}\""),
    );
    assert_eq!(snap_ours, snap_debian, "thin_dump -m");
    assert!(
        ours.contains("origin_block=\"500\"") && !snap_ours.contains("origin_block=\"500\""),
        "the write after the metadata snapshot belongs to the live dump only:\n{ours}\n{snap_ours}"
    );
    assert!(
        snap_ours.contains("origin_block=\"20\""),
        "the metadata snapshot holds the writes before it:\n{snap_ours}"
    );

    // ---- lose the top-level mapping root; pdt thin_repair must rebuild a
    // pool that the kernel serves with every mapping the dump above showed.
    let root = {
        let dev: std::sync::Arc<dyn pdata::io::BlockDevice> = std::sync::Arc::new(
            pdata::io::FileDevice::open(&meta, false).expect("open the metadata"),
        );
        thin::ThinMetadata::open(dev, false)
            .expect("read the superblock")
            .superblock()
            .data_mapping_root
    };
    let mut f = OpenOptions::new().write(true).open(&meta).unwrap();
    f.seek(SeekFrom::Start(root * 4096)).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    assert!(
        thin_check(&meta).is_err(),
        "zeroing block {root} went unnoticed"
    );
    let repaired = dir.join("repaired.img");
    sparse_file(&repaired, META_BYTES);
    let repaired_s = repaired.to_str().unwrap();
    tool_ok(false, "thin_repair", &["-i", meta_s, "-o", repaired_s]);
    check_thin_check(&repaired, "on the metadata pdt repaired", None);
    assert_eq!(
        tool_ok(false, "thin_dump", &[repaired_s]),
        ours,
        "the repaired pool lost or changed mappings"
    );
    let mut g2 = GuestFiles::new(&dir.join("guest2"));
    let mut want: Vec<((u32, u64), Vec<u8>)> = expect.into_iter().collect();
    for k in [(1, 110), (2, 60), (3, 9)] {
        want.push((k, content(map[&k])));
    }
    g2.list(
        "reads.txt",
        &want
            .iter()
            .map(|&((d, v), _)| read_line(&format!("thin{d}"), v, &rname(d, v)))
            .collect::<Vec<_>>(),
    );
    let b2 = boot_ok(
        "repaired-pool",
        dir,
        &repaired,
        &data,
        "read-pool.sh",
        &g2.files,
    );
    for ((d, v), bytes) in &want {
        b2.expect_file(
            &rname(*d, *v),
            bytes,
            &format!("thin {d} block {v} read by the kernel from the repaired pool"),
        );
    }
    check_thin_check(
        &repaired,
        "after the kernel used the repaired pool",
        Some(&b2),
    );
}
