//! thin_ls's usage counts and thin_trim's free runs computed window by
//! window, as they are when the data counts would pass their memory budget
//! (pools of more than about 60M data blocks in use), give exactly what one
//! pass gives, and Debian's thin_ls output. A tiny budget
//! (`PDT_DATA_BUDGET`) makes a window of every bitmap's blocks here.

mod common;

use common::oracle::debian_cmd;
use common::pool::{
    debian_restore, far_apart_runs, free_in_space_map, runs_xml, spread_pool_devices, CHUNK,
    SPREAD_NR_DATA,
};
use common::tool::{new_file, ok, pdt, run, s};
use std::fmt::Write as _;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

const NR_DATA: u64 = SPREAD_NR_DATA;
const BLOCK_BYTES: u64 = 128 * 512;
/// A budget of one bitmap's blocks, and the default.
const BUDGETS: [Option<&str>; 2] = [Some("1"), None];

/// The spread pool of the harness, device 4: a few scattered blocks in the
/// gaps that stay exclusive (no snapshot shares them), and device 5 with
/// leaves that refer to blocks far apart.
fn pool_xml() -> String {
    let mut devices = spread_pool_devices();
    devices.push((
        4,
        (0..NR_DATA / 5600).map(|k| (k * 5600 + 700, 1)).collect(),
    ));
    devices.push((5, far_apart_runs()));
    runs_xml(NR_DATA, &devices)
}

/// The pool above, then snapshots that share sub-trees with their origins
/// and break some of them by writes all over the thin devices (so blocks
/// of late windows turn exclusive), a held metadata snapshot, and changes
/// after it.
fn pool(dir: &Path) -> std::path::PathBuf {
    let md = debian_restore(dir, "pool.md", 64 << 20, &pool_xml());
    let mut script = String::from("create_snap 10 0\ncreate_snap 11 1\n");
    for v in [5, 1000, 60_000, 120_000, 200_000, 240_000] {
        writeln!(script, "provision 10 {v}").unwrap();
    }
    script += "remove_range 11 50000 52000\ncreate_snap 12 3\nprovision 12 30\n";
    script += "reserve_metadata_snap\ndelete 2\nprovision 0 7\nremove_range 1 100 9000\ncommit\n";
    let path = dir.join("script");
    std::fs::write(&path, script).unwrap();
    ok(pdt("thin_exec").arg(&md).arg(&path));
    md
}

fn with_budget(mut c: Command, budget: Option<&str>) -> Output {
    if let Some(b) = budget {
        c.env("PDT_DATA_BUDGET", b);
    }
    run(&mut c)
}

const ALL_FIELDS: &str = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME";

#[test]
fn thin_ls_windows_print_what_one_pass_prints() {
    let dir = tempfile::tempdir().unwrap();
    let md = pool(dir.path());
    let ours_only = format!("{ALL_FIELDS},HIGHEST_BLOCK,HIGHEST_MAPPED");
    for args in [
        &["-o", ALL_FIELDS, s(&md)][..],
        &["-m", "-o", ALL_FIELDS, s(&md)],
        &["-o", &ours_only, s(&md)],
        &["--json", "-m", "-o", &ours_only, s(&md)],
    ] {
        let outs: Vec<Output> = BUDGETS
            .iter()
            .map(|&b| {
                let mut c = pdt("thin_ls");
                c.args(args);
                with_budget(c, b)
            })
            .collect();
        for o in &outs {
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(outs[0].stdout == outs[1].stdout, "{args:?}: windows differ");
        if args[1] != ours_only && args[0] != "--json" {
            let theirs = ok(debian_cmd("thin_ls").args(args));
            assert!(
                outs[0].stdout == theirs,
                "{args:?}:\n--- debian\n{}\n--- ours\n{}",
                String::from_utf8_lossy(&theirs),
                String::from_utf8_lossy(&outs[0].stdout)
            );
        }
    }
    // Exclusive blocks in every window, so that the test means something.
    let o = ok(pdt("thin_ls").args(["--no-headers", "-o", "DEV,EXCLUSIVE_BLOCKS", s(&md)]));
    let text = String::from_utf8(o).unwrap();
    let want = (NR_DATA / 5600).to_string();
    assert!(
        text.lines().any(|l| l.split_whitespace().eq(["4", &want])),
        "{text}"
    );
}

/// Whether bytes [start, start+len) of the file are one hole.
fn is_hole(f: &std::fs::File, start: u64, len: u64) -> bool {
    // SAFETY: lseek on an open descriptor.
    let next_data = unsafe { libc::lseek(f.as_raw_fd(), start as libc::off_t, libc::SEEK_DATA) };
    next_data < 0 || next_data as u64 >= start + len
}

/// The data blocks sampled: both ends of every run of free or used blocks,
/// and every 97th; with whether each is free.
fn samples(md: &Path) -> Vec<(u64, bool)> {
    let dev: Arc<dyn pdata::io::BlockDevice> =
        Arc::new(pdata::io::FileDevice::open(md, false).unwrap());
    let mut md = thin::ThinMetadata::open(dev, false).unwrap();
    let free: Vec<bool> = (0..NR_DATA)
        .map(|b| md.data_ref_count(b).unwrap() == 0)
        .collect();
    (0..NR_DATA)
        .filter(|&b| {
            let i = b as usize;
            b % 97 == 0
                || (i > 0 && free[i - 1] != free[i])
                || free.get(i + 1).is_some_and(|&n| n != free[i])
        })
        .map(|b| (b, free[b as usize]))
        .collect()
}

/// A sparse data device with a mark in each sampled block.
fn data_device(path: &Path, samples: &[(u64, bool)]) -> std::fs::File {
    new_file(path, NR_DATA * BLOCK_BYTES);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    for &(b, _) in samples {
        f.write_all_at(&[0xa5; 4096], b * BLOCK_BYTES).unwrap();
    }
    f
}

fn trim(md: &Path, data: &Path, budget: Option<&str>) -> Output {
    let mut c = pdt("thin_trim");
    c.args(["--metadata-dev", s(md), "--data-dev", s(data)]);
    with_budget(c, budget)
}

#[test]
fn thin_trim_windows_discard_what_one_pass_discards() {
    let dir = tempfile::tempdir().unwrap();
    let md = pool(dir.path());
    let samples = samples(&md);
    let nr_free = samples.iter().filter(|s| s.1).count();
    assert!(nr_free > 1000 && samples.len() - nr_free > 1000);
    let data = dir.path().join("data");
    for budget in BUDGETS {
        let f = data_device(&data, &samples);
        let o = trim(&md, &data, budget);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for &(b, free) in &samples {
            assert_eq!(
                is_hole(&f, b * BLOCK_BYTES, 4096),
                free,
                "block {b}, budget {budget:?}"
            );
        }
    }

    // A space map that lost mapped blocks in two late windows: nothing is
    // discarded, and the lowest is named.
    for b in [20 * CHUNK + 10, 8 * CHUNK + 10] {
        free_in_space_map(&md, b);
    }
    for budget in BUDGETS {
        let f = data_device(&data, &samples);
        let o = trim(&md, &data, budget);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        let want = format!("data block {} is mapped", 8 * CHUNK + 10);
        assert!(err.contains(&want), "{budget:?}: {err}");
        assert!(samples
            .iter()
            .all(|&(b, _)| !is_hole(&f, b * BLOCK_BYTES, 4096)));
    }
}
