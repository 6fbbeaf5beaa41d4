//! Kernel oracle: Debian's real dm-thin-pool, booted under qemu by
//! `tests/kernel/run-guest.sh`, reads and writes metadata that
//! `pdt thin_exec` produces, and pdt reads what the kernel wrote.
//!
//! Nothing here skips itself. `tests/kernel/build-guest.sh` installs the
//! Debian packages it needs (qemu-system-x86, linux-image-amd64,
//! busybox-static, dmsetup, thin-provisioning-tools, ...) and builds the guest
//! into `$PDT_KERNEL_DIR` (default `~/.cache/pdt-kernel`); a guest that cannot
//! be built or booted fails the test. Each boot takes about 3.5 s under TCG.
//! At most two guests run at the same time; each has its own console log.

mod common;
use common::kernel::*;
use common::kernel_host::*;
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------- test 1

/// pdt formats a pool, creates thins 1 and 2 and snapshot 3 of 1, and
/// provisions blocks; the host fills those blocks with patterns. The kernel
/// must activate it, return the patterns through the thins, return zeros
/// elsewhere, accept writes (breaking sharing in the snapshot), and commit
/// metadata that thin_check finds clean and pdt can look up.
#[test]
fn kernel_serves_pool_made_by_pdt() {
    let Images { tmp, meta, data } = Images::new();
    let dir = tmp.path();

    // ---- pdt builds the pool
    let mut s = Script::default();
    s.op(format!("format {BS} {NR_BLOCKS}"));
    s.op("create_thin 1");
    s.op("create_thin 2");
    s.op("set_transaction_id 0 1");
    let mut prov: Vec<((u32, u64), usize)> = vec![];
    for k in [(1, 0), (1, 1), (1, 2), (1, 700), (2, 0), (2, 5)] {
        prov.push((k, s.op(format!("provision {} {}", k.0, k.1))));
    }
    s.op("create_snap 3 1");
    for k in [(1, 3), (3, 9)] {
        prov.push((k, s.op(format!("provision {} {}", k.0, k.1))));
    }
    s.op("commit");
    let out = thin_exec_ok(&meta, &s, "build the pool");

    // (dev, vblock) -> data block, as pdt said
    let mut map: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for (k, i) in &prov {
        map.insert(
            *k,
            parse_block(&out[*i], &format!("provision {} {}", k.0, k.1)),
        );
    }
    // snapshot 3 shares what 1 had before it was taken
    for v in [0, 1, 2, 700] {
        map.insert((3, v), map[&(1, v)]);
    }
    let distinct: BTreeSet<u64> = map.values().copied().collect();
    assert_eq!(
        distinct.len(),
        8,
        "pdt provisioned some data block twice: {map:?}"
    );
    assert!(
        distinct.iter().all(|b| *b < NR_BLOCKS),
        "data block out of range: {map:?}"
    );

    // ---- the host writes a pattern into every provisioned block
    let mut content: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (k, _) in &prov {
        let b = map[k];
        let p = pattern(&format!("d{}v{}", k.0, k.1), BLOCK);
        write_data_block(&data, b, &p);
        content.insert(b, p);
    }
    check_thin_check(&meta, "on the metadata pdt wrote (before any boot)", None);

    // ---- guest plan
    let mut g = GuestFiles::new(&dir.join("guest"));
    let mut reads: Vec<String> = read_lines(map.keys().copied(), rname);
    reads.push(read_line("thin2", 77, "zero-2-77.bin"));
    reads.push(read_line("thin3", 500, "zero-3-500.bin"));
    g.list("reads.txt", &reads);

    let partial = pattern("partial", BLOCK)[..4096].to_vec();
    for (name, bytes) in [
        ("w-2-300.bin", pattern("w2v300", BLOCK)), // new block in thin 2
        ("w-2-5.bin", pattern("w2v5", BLOCK)),     // overwrite of a block thin 2 owns
        ("w-3-0.bin", pattern("w3v0", BLOCK)),     // whole block shared with thin 1
        ("w-3-9.bin", pattern("w3v9", BLOCK)),     // overwrite of a block thin 3 owns
        ("w-3-1p.bin", partial.clone()),           // 4 KiB into a shared block (copy)
        ("w-1-700.bin", pattern("w1v700", BLOCK)), // the origin's copy of a shared block
    ] {
        g.file(name, &bytes);
    }
    g.list(
        "writes.txt",
        &[
            write_line("thin2", 300 * PAGES, "w-2-300.bin"),
            write_line("thin2", 5 * PAGES, "w-2-5.bin"),
            write_line("thin3", 0, "w-3-0.bin"),
            write_line("thin3", 9 * PAGES, "w-3-9.bin"),
            write_line("thin3", PAGES + 2, "w-3-1p.bin"),
            write_line("thin1", 700 * PAGES, "w-1-700.bin"),
        ],
    );
    let after_keys = [
        (1, 0),
        (1, 1),
        (1, 700),
        (2, 5),
        (2, 300),
        (3, 0),
        (3, 1),
        (3, 9),
        (3, 700),
    ];
    g.list(
        "reads-after.txt",
        &read_lines(after_keys.iter().copied(), after_name),
    );

    let b = boot_ok("pdt-pool", dir, &meta, &data, "pdt-pool.sh", &g.files);

    // ---- what the kernel saw
    let st = b.status("status-before.txt");
    let (trans, used) = pool_status(&st["pool"]);
    assert_eq!(
        trans,
        1,
        "kernel sees transaction id {trans}, pdt set 1\n{}",
        b.tail()
    );
    assert_eq!(
        used,
        8,
        "kernel counts {used} used data blocks, pdt allocated 8 (data space map)\n{}",
        b.tail()
    );
    for (dev, blocks, highest) in [(1u32, 5u64, 700u64), (2, 2, 5), (3, 5, 700)] {
        let (mapped, high) = thin_status(&st[&format!("thin{dev}")]);
        assert_eq!(
            (mapped, high),
            (blocks * BS, Some(highest * BS + BS - 1)),
            "thin {dev}: kernel status (mapped sectors, highest mapped sector) disagrees with pdt's mappings\n{}",
            b.tail()
        );
    }
    for (&(d, v), dblock) in &map {
        let want = &content[dblock];
        b.expect_file(
            &rname(d, v),
            want,
            &format!("thin {d} block {v} (data block {dblock}) read by the kernel"),
        );
    }
    for z in ["zero-2-77.bin", "zero-3-500.bin"] {
        let got = b.out_file(z);
        assert!(
            got.len() == BLOCK && got.iter().all(|&x| x == 0),
            "{z}: an unprovisioned block read non-zero\n{}",
            b.tail()
        );
    }

    // expected contents after the guest's writes
    let mut expect: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    expect.insert((1, 0), content[&map[&(1, 0)]].clone());
    expect.insert((1, 1), content[&map[&(1, 1)]].clone());
    expect.insert((1, 2), content[&map[&(1, 2)]].clone());
    expect.insert((3, 2), content[&map[&(1, 2)]].clone());
    expect.insert((2, 5), g.written["w-2-5.bin"].clone());
    expect.insert((2, 300), g.written["w-2-300.bin"].clone());
    expect.insert((3, 0), g.written["w-3-0.bin"].clone());
    expect.insert((3, 9), g.written["w-3-9.bin"].clone());
    expect.insert((1, 700), g.written["w-1-700.bin"].clone());
    expect.insert((3, 700), content[&map[&(1, 700)]].clone());
    let mut copied = content[&map[&(1, 1)]].clone();
    copied[8192..12288].copy_from_slice(&partial);
    expect.insert((3, 1), copied);
    for (d, v) in after_keys {
        b.expect_file(
            &after_name(d, v),
            &expect[&(d, v)],
            &format!("thin {d} block {v} after the guest's writes"),
        );
    }
    let st = b.status("status-after.txt");
    let (_, used) = pool_status(&st["pool"]);
    assert_eq!(
        used,
        12,
        "after the writes the kernel counts {used} used data blocks, want 12 (8 + thin2 block 300 + three broken shares; \
         the overwrites of thin 2 block 5 and thin 3 block 9 must be in place, i.e. pdt's mapping times must not \
         look older than the devices' snapshot times)\n{}",
        b.tail()
    );

    // ---- the metadata the kernel committed
    check_thin_check(&meta, "after the kernel used pdt's pool", Some(&b));
    let mut keys: Vec<(u32, u64)> = expect.keys().copied().collect();
    keys.extend([(1, 3), (2, 0), (2, 77), (3, 500)]);
    let found = lookups(&meta, &keys, "lookups after the kernel's writes");
    expect_pdt_maps(
        &data,
        &found,
        &expect,
        "after the kernel wrote it",
        Some(&b),
    );
    for k in [(3, 700), (1, 3), (2, 0), (2, 5), (3, 9)] {
        assert_eq!(
            found[&k],
            Some(map[&k]),
            "pdt lookup {k:?}: the kernel should not have moved this block"
        );
    }
    assert_eq!(
        found[&(3, 2)],
        found[&(1, 2)],
        "thin 1 and 3 block 2 should still share a data block"
    );
    assert_ne!(
        found[&(3, 0)],
        found[&(1, 0)],
        "writing thin 3 block 0 should have broken sharing"
    );
    assert_ne!(
        found[&(3, 1)],
        found[&(1, 1)],
        "writing into thin 3 block 1 should have broken sharing"
    );
    assert_ne!(
        found[&(1, 700)],
        found[&(3, 700)],
        "writing thin 1 block 700 should have broken sharing"
    );
    assert_eq!(found[&(2, 77)], None, "thin 2 block 77 was never written");
    assert_eq!(found[&(3, 500)], None, "thin 3 block 500 was never written");
}

// ---------------------------------------------------------------- test 2

/// The kernel formats a pool and writes to a thin and its snapshot; pdt then
/// reads those mappings, creates thin 7, provisions, snapshots 0 as 8,
/// deletes the kernel's snapshot 1 and commits. A second boot must find
/// everything, and both commits must pass thin_check.
#[test]
fn kernel_pool_extended_by_pdt() {
    let Images { tmp, meta, data } = Images::new();
    let dir = tmp.path();

    // ---- boot 1: the kernel formats and writes
    let mut g = GuestFiles::new(&dir.join("guest1"));
    let mut expect: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    let mut w0 = vec![];
    for v in [0u64, 1, 2, 3, 40] {
        let name = format!("w-0-{v}.bin");
        let p = pattern(&format!("k0v{v}"), BLOCK);
        g.file(&name, &p);
        w0.push(write_line("thin0", v * PAGES, &name));
        expect.insert((0, v), p.clone());
        expect.insert((1, v), p);
    }
    g.list("writes-0.txt", &w0);
    let mut w1 = vec![];
    for (d, v) in [(0u32, 1u64), (1, 2), (1, 50)] {
        let name = format!("w-{d}-{v}-b.bin");
        let p = pattern(&format!("k{d}v{v}b"), BLOCK);
        g.file(&name, &p);
        w1.push(write_line(&format!("thin{d}"), v * PAGES, &name));
        expect.insert((d, v), p);
    }
    g.list("writes-1.txt", &w1);
    g.list("reads.txt", &read_lines(expect.keys().copied(), rname));

    let b1 = boot_ok(
        "kernel-format",
        dir,
        &meta,
        &data,
        "kernel-format.sh",
        &g.files,
    );
    for (&(d, v), want) in &expect {
        b1.expect_file(
            &rname(d, v),
            want,
            &format!("boot 1: thin {d} block {v} read back wrong"),
        );
    }
    check_thin_check(&meta, "after the kernel formatted the pool", Some(&b1));

    // ---- pdt reads the kernel's mappings
    let mut keys: Vec<(u32, u64)> = expect.keys().copied().collect();
    keys.extend([(0, 41), (1, 41), (0, 600)]);
    let found = lookups(&meta, &keys, "lookups in the kernel-made pool");
    expect_pdt_maps(&data, &found, &expect, "in the kernel's pool", Some(&b1));
    for k in [(0, 41), (1, 41), (0, 600)] {
        assert_eq!(
            found[&k], None,
            "pdt: thin {} block {} should be unmapped",
            k.0, k.1
        );
    }
    let kernel_blocks: BTreeSet<u64> = found.values().flatten().copied().collect();

    // ---- pdt extends the pool
    let mut s = Script::default();
    s.op("set_transaction_id 1 2");
    s.op("create_thin 7");
    let p70 = s.op("provision 7 0");
    let p73 = s.op("provision 7 3");
    let p0600 = s.op("provision 0 600");
    s.op("create_snap 8 0");
    s.op("delete 1");
    s.op("commit");
    let out = thin_exec_ok(&meta, &s, "extend the kernel's pool");
    let mut host: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for ((d, v), i) in [((7u32, 0u64), p70), ((7, 3), p73), ((0, 600), p0600)] {
        let blk = parse_block(&out[i], &format!("provision {d} {v}"));
        assert!(
            blk < NR_BLOCKS && !kernel_blocks.contains(&blk),
            "pdt provisioned data block {blk} for thin {d} block {v}: in use or out of range"
        );
        let p = pattern(&format!("h{d}v{v}"), BLOCK);
        write_data_block(&data, blk, &p);
        host.insert((d, v), blk);
        expect.insert((d, v), p);
    }
    assert_eq!(
        host.values().collect::<BTreeSet<_>>().len(),
        3,
        "pdt provisioned one data block twice: {host:?}"
    );
    check_thin_check(&meta, "after pdt extended the kernel's pool", None);

    // what thin 0 holds now is also what snapshot 8 holds
    let dev0: Vec<(u64, Vec<u8>)> = expect
        .iter()
        .filter(|((d, _), _)| *d == 0)
        .map(|((_, v), p)| (*v, p.clone()))
        .collect();
    for (v, p) in &dev0 {
        expect.insert((8, *v), p.clone());
    }
    expect.retain(|(d, _), _| *d != 1);

    // ---- boot 2: the kernel opens the pool again
    let mut g = GuestFiles::new(&dir.join("guest2"));
    let mut reads: Vec<String> = read_lines(expect.keys().copied(), rname);
    reads.push(read_line("thin7", 1, "zero-7-1.bin"));
    g.list("reads.txt", &reads);
    let mut writes = vec![];
    let mut after: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    // thin 0 and snapshot 8 share their blocks: writing either side must
    // leave the other alone. Blocks 1 and 600 were mapped at the pool's
    // current time (after the kernel's snapshot), so only the snapshot times
    // pdt recorded for 0 and 8 make the kernel see them as shared.
    for v in [1, 600] {
        after.insert((8, v), expect[&(0, v)].clone());
    }
    after.insert((0, 0), expect[&(0, 0)].clone());
    for (d, v) in [(0u32, 5u64), (7, 1), (8, 0), (7, 3), (0, 1), (0, 600)] {
        let name = format!("w-{d}-{v}.bin");
        let p = pattern(&format!("k2d{d}v{v}"), BLOCK);
        g.file(&name, &p);
        writes.push(write_line(&format!("thin{d}"), v * PAGES, &name));
        after.insert((d, v), p);
    }
    g.list("writes.txt", &writes);
    g.list(
        "reads-after.txt",
        &read_lines(after.keys().copied(), after_name),
    );

    let b2 = boot_ok(
        "kernel-reopen",
        dir,
        &meta,
        &data,
        "kernel-reopen.sh",
        &g.files,
    );
    let st = b2.status("status-before.txt");
    let (trans, used) = pool_status(&st["pool"]);
    let mut live: BTreeSet<u64> = host.values().copied().collect();
    live.extend(
        keys.iter()
            .filter(|(d, _)| *d == 0)
            .filter_map(|k| found[k]),
    );
    assert_eq!(
        trans,
        2,
        "boot 2: kernel sees transaction {trans}, pdt set 2\n{}",
        b2.tail()
    );
    assert_eq!(used, live.len() as u64, "boot 2: kernel counts {used} used data blocks, want {} (thin 1's own blocks freed by delete)\n{}", live.len(), b2.tail());
    for (dev, n) in [(0u32, 6u64), (7, 2), (8, 6)] {
        let (mapped, _) = thin_status(&st[&format!("thin{dev}")]);
        assert_eq!(
            mapped,
            n * BS,
            "boot 2: thin {dev} mapped sectors per the kernel\n{}",
            b2.tail()
        );
    }
    for (&(d, v), want) in &expect {
        b2.expect_file(
            &rname(d, v),
            want,
            &format!("boot 2: thin {d} block {v} read wrong"),
        );
    }
    let z = b2.out_file("zero-7-1.bin");
    assert!(
        z.iter().all(|&x| x == 0),
        "boot 2: thin 7 block 1 (never written) is not zero\n{}",
        b2.tail()
    );
    for (&(d, v), want) in &after {
        b2.expect_file(
            &after_name(d, v),
            want,
            &format!("boot 2: thin {d} block {v} after writing"),
        );
    }
    check_thin_check(&meta, "after the second boot", Some(&b2));

    let keys: Vec<(u32, u64)> = after.keys().copied().collect();
    let found2 = lookups(&meta, &keys, "lookups after the second boot");
    expect_pdt_maps(&data, &found2, &after, "after boot 2", None);
    assert_eq!(
        found2[&(7, 3)],
        Some(host[&(7, 3)]),
        "overwriting thin 7 block 3 (not shared) should be in place"
    );
}
