//! thin_migrate against the real dm-thin (qemu, one boot): the kernel
//! writes known data into thin volumes 1 and 3 and a snapshot 2 of 1, then
//! overwrites and discards blocks of 1 and 2, and reads each volume back.
//! In the guest, our live form (`--source-dev`, under a metadata snapshot
//! it reserves and releases) copies volumes to a file and to a disk, and
//! `--delta-id 2` turns the snapshot's copy into the origin's; with a
//! snapshot already held it refuses and leaves it held, and interrupted it
//! leaves none held; a volume over an external origin is copied whole,
//! origin included. On the host, our offline form extracts each volume
//! from the pool's images to a file equal to what the kernel served, and
//! the incremental form turns the snapshot's copy into the origin's.

mod common;
use common::kernel::{boot_with, diff_at, guest_pdt, pattern, Scratch, BLOCK, BS};
use common::kernel_host::GuestFiles;
use common::tool::{file, ok, pdt, s};
use std::path::Path;

/// 4 MiB volumes (64 blocks of 64 KiB) in a pool of 256 blocks.
const THIN_SECTORS: u64 = 8192;
const NR_BLOCKS: u64 = 256;
const VOLUME: usize = THIN_SECTORS as usize * 512;
const PAGE: usize = 4096;

/// The volumes' content as the writes and discards leave it.
struct Model {
    vols: [Vec<u8>; 5],
}

impl Model {
    fn write(&mut self, dev: usize, page: usize, bytes: &[u8]) {
        self.vols[dev][page * PAGE..page * PAGE + bytes.len()].copy_from_slice(bytes);
    }
    fn discard(&mut self, dev: usize, block: usize, n: usize) {
        self.vols[dev][block * BLOCK..(block + n) * BLOCK].fill(0);
    }
}

/// An io list of writes `(thin, first page, pages)`, each of its own
/// pattern, applied to the model.
fn writes(g: &mut GuestFiles, m: &mut Model, list: &str, ws: &[(usize, usize, usize)]) {
    let mut lines = Vec::new();
    for (i, &(dev, page, pages)) in ws.iter().enumerate() {
        let name = format!("{list}-{i}.bin");
        let bytes = pattern(&format!("{list}.{i}"), pages * PAGE);
        m.write(dev, page, &bytes);
        g.file(&name, &bytes);
        lines.push(format!("w thin{dev} {page} {name}"));
    }
    g.list(&format!("{list}.txt"), &lines);
}

fn same(got: &[u8], want: &[u8], what: &str) {
    assert!(got == want, "{what}: {}", diff_at(got, want));
}

fn migrate(meta: &Path, data: &Path, args: &[&str]) {
    ok(pdt("thin_migrate")
        .args(["-q", "--metadata-dev", s(meta), "--data-dev", s(data)])
        .args(["--size", &THIN_SECTORS.to_string()])
        .args(args));
}

#[test]
fn kernel_volumes_migrate_offline_and_live() {
    let tmp = Scratch::new("pdt-kernel-migrate.", "images, console logs, guest output");
    let dir = tmp.path();
    let meta = file(dir, "meta.img", 4 << 20);
    let data = file(dir, "data.img", NR_BLOCKS * BLOCK as u64);
    let disk = file(dir, "extra.img", VOLUME as u64);

    let mut m = Model {
        vols: std::array::from_fn(|_| vec![0; VOLUME]),
    };
    let mut g = GuestFiles::new(&dir.join("guest"));
    g.file(
        "migrate.params",
        format!("BS={BS}\nNR_BLOCKS={NR_BLOCKS}\nTHIN_SECTORS={THIN_SECTORS}\n").as_bytes(),
    );
    // Whole blocks, partial ones, a run across a block boundary, the last page.
    let first = [
        (1, 0, 48),
        (1, 100, 1),
        (1, 320, 64),
        (1, 640, 80),
        (1, 1023, 1),
        (3, 16, 16),
        (3, 500, 16),
    ];
    writes(&mut g, &mut m, "writes-1", &first);
    m.vols[2] = m.vols[1].clone();
    let second = [
        (2, 20, 4),
        (2, 336, 16),
        (2, 128, 32),
        (2, 900, 1),
        (1, 0, 16),
        (1, 101, 1),
    ];
    writes(&mut g, &mut m, "writes-2", &second);
    m.discard(1, 40, 4);
    m.discard(2, 8, 2);
    // Thin 4 reads the origin's copy (on the disk) where it maps nothing.
    m.vols[4] = m.vols[1].clone();
    writes(&mut g, &mut m, "writes-3", &[(4, 8, 24), (4, 1000, 1)]);
    g.files.push(guest_pdt(&dir.join("guest").join("pdt")));

    let b = boot_with(
        "migrate",
        dir,
        &[&meta, &data, &disk],
        "migrate.sh",
        &g.files,
    );
    b.assert_ok();
    for dev in 1..=3 {
        let served = b.out_file(&format!("thin{dev}.img"));
        same(
            &served,
            &m.vols[dev],
            &format!("the kernel serves volume {dev}"),
        );
    }

    // The live form, in the guest.
    same(
        &b.out_file("live2.img"),
        &m.vols[2],
        "live, snapshot to a file",
    );
    same(
        &std::fs::read(&disk).unwrap(),
        &m.vols[1],
        "live, origin to a disk",
    );
    same(&b.out_file("delta.img"), &m.vols[1], "live, --delta-id 2");
    let held = String::from_utf8(b.out_file("held-after.txt")).unwrap();
    assert_eq!(
        held.trim(),
        "-",
        "the snapshots were released\n{}",
        b.tail()
    );
    // Interrupted (rc 1) or done (0) first: nothing held either way.
    let int = String::from_utf8(b.out_file("int-rc.txt")).unwrap();
    let int: Vec<&str> = int.lines().collect();
    assert!(["rc=0", "rc=1"].contains(&int[0]), "{int:?}\n{}", b.tail());
    assert_eq!(int[1], "-", "held after an interrupt\n{}", b.tail());
    let err = String::from_utf8(b.out_file("held-err.txt")).unwrap();
    assert!(err.contains("cannot reserve a metadata snapshot"), "{err}");
    same(
        &b.out_file("thin4.img"),
        &m.vols[4],
        "the kernel serves volume 4",
    );
    same(
        &b.out_file("live4.img"),
        &m.vols[4],
        "live, over an external origin",
    );
    let err = String::from_utf8(b.out_file("ext-delta.txt")).unwrap();
    assert!(err.contains("external origin"), "{err}");
    let err = String::from_utf8(b.out_file("not-thin.txt")).unwrap();
    assert!(err.contains("is not a thin device"), "{err}");

    // Offline, on the host, from the committed pool.
    for dev in 1..=3 {
        let out = dir.join(format!("off{dev}.img"));
        migrate(
            &meta,
            &data,
            &["--dev-id", &dev.to_string(), "--dest-file", s(&out)],
        );
        same(
            &std::fs::read(&out).unwrap(),
            &m.vols[dev],
            &format!("offline, volume {dev}"),
        );
    }
    // Offline there is no table naming the external origin: volume 4 is
    // its own blocks (the ones written: 0, 1 and 62), zeros elsewhere.
    let out = dir.join("off4.img");
    migrate(&meta, &data, &["--dev-id", "4", "--dest-file", s(&out)]);
    let mut own = vec![0; VOLUME];
    for blk in [0, 1, 62] {
        own[blk * BLOCK..(blk + 1) * BLOCK]
            .copy_from_slice(&m.vols[4][blk * BLOCK..(blk + 1) * BLOCK]);
    }
    same(&std::fs::read(&out).unwrap(), &own, "offline, volume 4");
    let out = dir.join("off2.img");
    migrate(
        &meta,
        &data,
        &["--dev-id", "1", "--delta-id", "2", "--dest-file", s(&out)],
    );
    same(
        &std::fs::read(&out).unwrap(),
        &m.vols[1],
        "offline, --delta-id 2",
    );
    // And back: the origin's copy becomes the snapshot's again.
    migrate(
        &meta,
        &data,
        &["--dev-id", "2", "--delta-id", "1", "--dest-file", s(&out)],
    );
    same(
        &std::fs::read(&out).unwrap(),
        &m.vols[2],
        "offline, --delta-id 1",
    );
}
