//! Interop of `pdt thin_serve` with the kernel (qemu): a pool written over
//! NBD (random writes, trims and zeroes on two thins and a snapshot) is
//! activated by dm-thin, which reads every volume back byte for byte and
//! writes; served again by us, the kernel's writes read back the same.

mod common;
use common::kernel::*;
use common::kernel_host::*;
use common::nbd::*;
use common::rng::XorShift;
use std::collections::BTreeMap;

/// Bytes of each volume exercised (the thins are larger; the rest reads
/// as zeros and is not compared).
const VOL: u64 = 2 << 20;

/// Formats the oracle tests' pool with thin devices `devs`.
fn format_pool(meta: &std::path::Path, devs: &[u32]) {
    let mut s = Script::default();
    s.op(format!("format {BS} {NR_BLOCKS}"));
    for d in devs {
        s.op(format!("create_thin {d}"));
    }
    s.op("commit");
    thin_exec_ok(meta, &s, "format the pool");
}

#[test]
fn kernel_reads_what_thin_serve_wrote_and_back() {
    let Images { tmp, meta, data } = Images::new();
    let dir = tmp.path();
    format_pool(&meta, &[1, 2]);

    let size = format!("--size={VOL}");
    let srv = Server::start(dir, &meta, &data, &[&size]);
    let mut model: BTreeMap<u32, Vec<u8>> = [1, 2].map(|d| (d, vec![0u8; VOL as usize])).into();
    let mut rng = XorShift(0x6b65_726e);
    // Before the snapshot on 1 and 2, after it on all three (writes to 1
    // and 3 break the sharing).
    for (phase, devs) in [(0, &[1u32, 2][..]), (1, &[1, 2, 3][..])] {
        if phase == 1 {
            assert_eq!(srv.control("create_snap 3 1"), "ok");
            model.insert(3, model[&1].clone());
        }
        for &dev in devs {
            let m = model.get_mut(&dev).expect("a volume");
            let mut c = srv.client(&dev.to_string());
            for step in 0..100 {
                let what = format!("phase {phase} dev {dev} step {step}");
                random_request(&mut c, m, &mut rng, &what);
            }
            c.disconnect();
        }
    }
    srv.shutdown();
    check_thin_check(&meta, "after thin_serve", None);

    // The kernel reads each volume whole, then writes a block into 2 and 3.
    let mut g = GuestFiles::new(&dir.join("guest"));
    let pages = VOL / 4096;
    let reads: Vec<String> = model
        .keys()
        .map(|d| format!("r thin{d} 0 {pages} vol-{d}.bin"))
        .collect();
    g.list("reads.txt", &reads);
    let kw2 = pattern("kernel2", BLOCK);
    let kw3 = pattern("kernel3", 4096);
    g.file("k2.bin", &kw2);
    g.file("k3.bin", &kw3);
    g.list(
        "writes.txt",
        &[
            write_line("thin2", 3 * PAGES, "k2.bin"),
            write_line("thin3", 5, "k3.bin"),
        ],
    );
    let b = boot_ok("serve-pool", dir, &meta, &data, "serve-pool.sh", &g.files);
    for (d, m) in &model {
        b.expect_file(
            &format!("vol-{d}.bin"),
            m,
            &format!("thin {d} read by the kernel"),
        );
    }
    check_thin_check(&meta, "after the kernel", Some(&b));

    // Served again: the kernel's writes and everything else.
    let m2 = model.get_mut(&2).expect("volume 2");
    m2[(3 * BLOCK)..(4 * BLOCK)].copy_from_slice(&kw2);
    let m3 = model.get_mut(&3).expect("volume 3");
    m3[5 * 4096..6 * 4096].copy_from_slice(&kw3);
    let ro = dir.join("again");
    std::fs::create_dir_all(&ro).unwrap();
    let srv = Server::start(&ro, &meta, &data, &[&size, "--read-only"]);
    for (d, m) in &model {
        let mut c = srv.client(&d.to_string());
        let got = c.read(0, VOL as u32);
        assert!(
            &got == m,
            "thin {d} served after the kernel: {}",
            diff_at(&got, m)
        );
        c.disconnect();
    }
    srv.shutdown();
}

/// A pool the kernel holds is refused: thin_serve, run in the guest while
/// the pool is active, fails at once saying the device is busy.
#[test]
fn kernel_held_pool_is_refused() {
    let Images { tmp, meta, data } = Images::new();
    let dir = tmp.path();
    format_pool(&meta, &[1]);
    let mut g = GuestFiles::new(&dir.join("guest"));
    // The test binary, stripped (a few MB) to travel to the guest.
    let pdt = dir.join("guest").join("pdt");
    let o = std::process::Command::new("strip")
        .arg("-o")
        .arg(&pdt)
        .arg(common::tool::PDT)
        .output()
        .expect("run strip");
    assert!(o.status.success(), "strip: {o:?}");
    g.files.push(pdt);
    let b = boot_ok("serve-held", dir, &meta, &data, "serve-held.sh", &g.files);
    let out = String::from_utf8_lossy(&b.out_file("serve.txt")).into_owned();
    assert!(
        out.contains("busy") && out.contains("rc=1"),
        "thin_serve in the guest said: {out}\n{}",
        b.tail()
    );
}
