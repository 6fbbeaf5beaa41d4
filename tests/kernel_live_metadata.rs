//! Live metadata under the real dm-thin (qemu): with a pool active, every
//! pdt writer refuses its metadata device (the kernel holds it; O_EXCL
//! fails) with a clear message, as Debian's thin_restore refuses it, and
//! leaves the pool intact; readers warn that the answer may be
//! inconsistent unless `-m` reads the metadata snapshot.

mod common;

use common::kernel::{boot_ok, guest_pdt, Scratch};
use common::tool::{file, pdt, run};

const POOL_XML: &str = r#"<superblock uuid="" time="0" transaction="9" flags="0" version="2" data_block_size="128" nr_data_blocks="1024">
  <device dev_id="7" mapped_blocks="2" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="0" data_begin="0" length="2" time="0"/>
  </device>
</superblock>
"#;

#[test]
fn writers_refuse_a_live_pool_and_readers_warn() {
    let scratch = Scratch::new("pdt-live-metadata-", "images and the guest's output");
    let dir = scratch.path();
    let meta = file(dir, "meta.img", 8 << 20);
    let data = file(dir, "data.img", 1024 * 64 * 1024);
    let bin = guest_pdt(&dir.join("pdt"));
    let xml = dir.join("pool.xml");
    std::fs::write(&xml, POOL_XML).unwrap();
    let boot = boot_ok(
        "live-metadata",
        dir,
        &meta,
        &data,
        "live-metadata.sh",
        &[bin, xml],
    );

    let text = |name: &str| String::from_utf8_lossy(&boot.out_file(name)).into_owned();
    let debian = text("debian-restore.txt");
    assert!(debian.contains("live metadata"), "Debian's: {debian}");
    for name in ["restore", "repair", "clear", "auto-repair", "trim", "exec"] {
        let err = text(&format!("{name}.txt"));
        assert!(
            err.contains("busy") && err.contains("live metadata"),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
    }
    let live = text("dump-live.txt");
    assert!(
        live.contains("in use by the kernel") && live.contains("-m"),
        "{live}"
    );
    assert!(live.ends_with("rc=0\n"), "{live}");
    let snap = text("dump-snap.txt");
    assert!(
        !snap.contains("warning") && snap.ends_with("rc=0\n"),
        "{snap}"
    );
    // Debian's readers refuse the device without -m (ours read and warn).
    let readers = text("debian-readers.txt");
    for t in ["thin_check", "thin_dump", "thin_ls"] {
        let line = readers
            .lines()
            .find(|l| l.starts_with(&format!("== {t}: ")))
            .unwrap_or_default();
        assert!(
            line.contains("rc=1") && line.contains("live metadata"),
            "{line}"
        );
    }
    assert!(readers.contains("== thin_dump -m: rc=0"), "{readers}");
    for name in ["ls-live.txt", "check-live.txt"] {
        assert!(text(name).contains("in use by the kernel"), "{name}");
    }

    // The kernel's pool is intact: its thin 1, none of pool.xml's.
    let o = run(pdt("thin_ls")
        .args(["--no-headers", "-o", "DEV"])
        .arg(&meta));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    let o = run(pdt("thin_check").arg(&meta));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
