//! Kernel era test: Debian's real dm-era, booted under qemu, on metadata
//! that `pdt era_exec` formatted. While the target runs, our
//! `era_invalidate --metadata-snapshot` on the live metadata device lists
//! exactly the blocks written since each era up to the snapshot; after the
//! target is removed our era_check (and Debian's) is clean, our dump's
//! eras and every era_invalidate answer match what was written, and the
//! kernel-written metadata round-trips through our dump and restore.

mod common;
use common::era::{exec, invalidated, our_invalidate, EraModel};
use common::kernel::*;
use common::kernel_host::GuestFiles;
use common::oracle::{debian_cmd, xml_num};
use common::tool::{file, ok, pdt, s};
use std::collections::BTreeSet;

const BS: u32 = 128;
const NR_BLOCKS: u32 = 1024;

/// The era a status line reports (fields after the target name:
/// metadata block size, used/total, current era, held root).
fn status_era(b: &Boot, file: &str) -> u32 {
    let st = b.status(file);
    st["era"][2]
        .parse()
        .unwrap_or_else(|_| panic!("era status {:?}\n{}", st, b.tail()))
}

#[test]
fn kernel_era_on_pdt_metadata() {
    let tmp = Scratch::new("pdt-kernel-era.", "images, console logs, guest output");
    let dir = tmp.path();
    let meta = file(dir, "meta.img", 4 << 20);
    let data = file(dir, "data.img", u64::from(NR_BLOCKS) * u64::from(BS) * 512);
    exec(&meta, &format!("format {NR_BLOCKS} {BS}\ncommit\n"));

    // Overlapping sets: a later era wins.
    let sets: [Vec<u64>; 4] = [
        vec![0, 1, 2, 100, 500, 1023],
        vec![2, 3, 200, 501, 502],
        vec![3, 4, 300, 700],
        vec![0, 5, 300, 900],
    ];
    let mut g = GuestFiles::new(&dir.join("guest"));
    g.file(
        "era.params",
        format!("BS={BS}\nNR_BLOCKS={NR_BLOCKS}\n").as_bytes(),
    );
    for (i, set) in sets.iter().enumerate() {
        let lines: Vec<String> = set.iter().map(|b| b.to_string()).collect();
        g.list(&format!("writes-{}.txt", i + 1), &lines);
    }
    g.files.push(guest_pdt(&dir.join("guest").join("pdt")));

    let b = boot_ok("era-live", dir, &meta, &data, "era-live.sh", &g.files);
    let e0 = status_era(&b, "status-0.txt");
    let snap_era = status_era(&b, "status-snap.txt");
    assert_eq!(
        snap_era,
        e0 + 3,
        "checkpoint, checkpoint, snapshot\n{}",
        b.tail()
    );

    // The model: set i written in era e0 + i.
    let mut model = EraModel::new(NR_BLOCKS);
    let mut at_snapshot = None;
    for (i, set) in sets.iter().enumerate() {
        model.era = e0 + i as u32;
        if i == 3 {
            at_snapshot = Some(model.clone());
        }
        for &blk in set {
            model.write(blk, blk + 1);
        }
    }
    let at_snapshot = at_snapshot.expect("set");
    for n in 0..=snap_era + 1 {
        let xml = String::from_utf8(b.out_file(&format!("inv-{n}.xml"))).unwrap();
        assert_eq!(
            invalidated(&xml),
            at_snapshot.written_since(n),
            "live snapshot, since {n}\n{}",
            b.tail()
        );
    }

    // After the target is gone.
    ok(pdt("era_check").arg(s(&meta)));
    ok(debian_cmd("era_check").arg(s(&meta)));
    for n in 1..=model.era + 1 {
        assert_eq!(
            our_invalidate(&meta, n, false),
            model.written_since(n),
            "since {n}"
        );
    }
    let logical = String::from_utf8(ok(pdt("era_dump").args(["--logical", s(&meta)]))).unwrap();
    let eras: Vec<u32> = logical
        .lines()
        .filter(|l| l.contains("<era "))
        .map(|l| xml_num(l, "era") as u32)
        .collect();
    let written: BTreeSet<u64> = (0..u64::from(NR_BLOCKS))
        .filter(|&b| eras[b as usize] != 0)
        .collect();
    assert_eq!(written, model.written_since(1));
    for blk in &written {
        assert_eq!(
            eras[*blk as usize], model.last[*blk as usize],
            "block {blk}"
        );
    }

    // The kernel's metadata round-trips through our dump and restore.
    let xml = dir.join("kernel.xml");
    ok(pdt("era_dump").args(["-o", s(&xml), s(&meta)]));
    let again = file(dir, "again.img", 4 << 20);
    ok(pdt("era_restore").args(["-i", s(&xml), "-o", s(&again)]));
    ok(debian_cmd("era_check").arg(s(&again)));
    let dumped = String::from_utf8(ok(pdt("era_dump").arg(s(&again)))).unwrap();
    assert_eq!(dumped, std::fs::read_to_string(&xml).unwrap());
    for n in 1..=model.era + 1 {
        let theirs =
            ok(debian_cmd("era_invalidate").args(["--written-since", &n.to_string(), s(&again)]));
        assert_eq!(
            invalidated(&String::from_utf8(theirs).unwrap()),
            model.written_since(n)
        );
    }
}
