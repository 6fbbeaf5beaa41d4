//! The kernel's own NBD client (nbd.ko driven by Debian's nbd-client, in
//! qemu) against `pdt thin_serve` run in the guest: an ext4 file system is
//! made, written, checked and read back over NBD; on the host the pool
//! passes Debian's thin_check and the volume, copied out by thin_migrate,
//! is the same file system.

mod common;
use common::kernel::*;
use common::kernel_host::*;
use common::tool::*;
use std::process::Command;

/// Files written into the file system: name, tag, bytes (odd sizes too).
const FILES: [(&str, &str, usize); 3] = [
    ("big.bin", "big", 3 << 20),
    ("odd.bin", "odd", 200 * 1024 + 48),
    ("small.txt", "small", 4096 + 16),
];

#[test]
fn kernel_nbd_client_ext4_on_thin_serve() {
    let Images { tmp, meta, data } = Images::new();
    let dir = tmp.path();
    let mut script = Script::default();
    script.op(format!("format {BS} {NR_BLOCKS}"));
    script.op("create_thin 1");
    script.op("commit");
    thin_exec_ok(&meta, &script, "format the pool");

    let gdir = dir.join("guest");
    let mut g = GuestFiles::new(&gdir);
    let mut sums = Vec::new();
    let mut want = Vec::new();
    for (name, tag, len) in FILES {
        let bytes = pattern(tag, len);
        g.file(name, &bytes);
        sums.push(
            String::from_utf8_lossy(&ok(Command::new("md5sum").arg(name).current_dir(&gdir)))
                .into_owned(),
        );
        want.push((name, bytes));
    }
    g.file("files.txt", sums.concat().as_bytes());
    g.files.push(guest_pdt(&gdir.join("pdt")));
    let extras = guest_extras(
        &gdir.join("extras"),
        &[
            "/usr/sbin/nbd-client",
            "/usr/sbin/mkfs.ext4",
            "/usr/sbin/e2fsck",
        ],
        &["nbd", "ext4"],
    );
    std::fs::copy("/etc/mke2fs.conf", extras.join("mke2fs.conf")).expect("copy mke2fs.conf");
    g.files.push(extras);

    let b = boot_ok("nbd-client", dir, &meta, &data, "nbd-client.sh", &g.files);
    for (name, bytes) in &want {
        b.expect_file(name, bytes, &format!("{name} read back in the guest"));
    }
    check_thin_check(&meta, "after thin_serve in the guest", Some(&b));

    // Offline, the volume is the same file system.
    let img = dir.join("vol1.img");
    ok(pdt("thin_migrate")
        .args(["-q", "--metadata-dev", s(&meta), "--data-dev", s(&data)])
        .args(["--size", &POOL_SECTORS.to_string()])
        .args(["--dev-id", "1", "--dest-file", s(&img)]));
    ok(Command::new("e2fsck").arg("-fn").arg(&img));
    for (name, bytes) in &want {
        let got = ok(Command::new("debugfs")
            .args(["-R", &format!("cat /{name}")])
            .arg(&img));
        assert!(
            &got == bytes,
            "{name} in the migrated volume: {}",
            diff_at(&got, bytes)
        );
    }
}
