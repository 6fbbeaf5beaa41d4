//! Kernel shrink test: Debian's real dm-thin, booted under qemu, writes
//! thin volumes and a snapshot on a pool whose data device is larger than
//! it needs, and deletes a volume (freeing low blocks); on the host our
//! `thin_shrink` moves the data above the new size and writes the new
//! metadata, and the data image is cut to the new size; the kernel then
//! activates the shrunk pool on the smaller data device, every volume
//! reads back byte for byte (md5sums the guest saves at both boots), and
//! the pool allocates new blocks within its new size.

mod common;

use common::dump::parse_dump;
use common::kernel::{boot_ok, Scratch, BLOCK, BS};
use common::kernel_host::GuestFiles;
use common::oracle::debian_cmd;
use common::tool::{file, ok, pdt, s};
use std::collections::BTreeSet;
use std::path::Path;

const NR_BLOCKS: u64 = 256;
/// Each thin volume: 128 data blocks (8 MiB).
const THIN_SECTORS: u64 = 128 * BS;

fn params(dir: &Path, phase: &str, nr_blocks: u64) -> GuestFiles {
    let mut g = GuestFiles::new(dir);
    g.file(
        "shrink.params",
        format!("PHASE={phase}\nBS={BS}\nNR_BLOCKS={nr_blocks}\nTHIN_SECTORS={THIN_SECTORS}\n")
            .as_bytes(),
    );
    g
}

#[test]
fn the_kernel_reads_a_shrunk_pool_back() {
    let tmp = Scratch::new("pdt-kernel-shrink.", "images, console logs, guest output");
    let dir = tmp.path();
    let meta = file(dir, "meta.img", 4 << 20);
    let data = file(dir, "data.img", NR_BLOCKS * BLOCK as u64);
    let g = params(&dir.join("write"), "write", NR_BLOCKS);
    let written = boot_ok("shrink-write", dir, &meta, &data, "shrink.sh", &g.files);
    ok(pdt("thin_check").arg(&meta));

    // The smallest size that holds every mapped block, plus a little.
    let xml = String::from_utf8(ok(pdt("thin_dump").arg(&meta))).unwrap();
    let (before, _) = parse_dump(&xml).unwrap();
    let mapped: BTreeSet<u64> = before
        .devs
        .values()
        .flat_map(|d| d.map.values().map(|m| m.0))
        .collect();
    let n = mapped.len() as u64 + 8;
    let above = mapped.iter().filter(|&&b| b >= n).count();
    assert!(above > 0, "nothing to move: {mapped:?}\n{}", written.tail());
    eprintln!(
        "{above} of {} mapped blocks lie at or above {n}",
        mapped.len()
    );

    let shrunk = file(dir, "shrunk.img", 4 << 20);
    ok(pdt("thin_shrink").args([
        "-i",
        s(&meta),
        "-o",
        s(&shrunk),
        "--data",
        s(&data),
        "--nr-blocks",
        &n.to_string(),
    ]));
    ok(debian_cmd("thin_check").arg(&shrunk));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(n * BLOCK as u64)
        .unwrap();

    let g = params(&dir.join("read"), "read", n);
    let read = boot_ok("shrink-read", dir, &shrunk, &data, "shrink.sh", &g.files);
    let sums = |b: &common::kernel::Boot| String::from_utf8(b.out_file("sums.txt")).unwrap();
    assert_eq!(
        sums(&read),
        sums(&written),
        "{} blocks moved\n{}",
        above,
        read.tail()
    );
    assert_eq!(sums(&read).lines().count(), 3);
    // Data blocks used/total: the new size, 4 more blocks in use.
    let status = read.status("status.txt");
    let usage = &status["pool"][2];
    assert_eq!(
        usage,
        &format!("{}/{n}", mapped.len() + 4),
        "{}",
        read.tail()
    );
    ok(pdt("thin_check").arg(&shrunk));
    ok(debian_cmd("thin_check").arg(&shrunk));
}
