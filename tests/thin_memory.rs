//! Memory that does not grow with the data device: every thin tool on a
//! pool of 2^32 data blocks (256 TiB at 64 KiB) with 40,000 scattered
//! mappings stays under 64 MiB of peak RSS (each child measured
//! on its own with wait4). A byte per data block, one page touched per
//! mapping, was 170 MB here (1 GB at 300,000 mappings).

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

#[path = "common/oracle.rs"]
mod oracle;

const PDT: &str = env!("CARGO_BIN_EXE_pdt");
const LIMIT_KB: i64 = 64 << 10;
const NR_DATA: u64 = 1 << 32;

/// Runs `pdt args` with stdout to `out` (or nowhere); its exit status,
/// stderr, and peak RSS in KiB.
// The child is reaped by wait4, which Child::wait cannot do with rusage.
#[allow(clippy::zombie_processes)]
fn measured(args: &[&str], out: Option<&Path>) -> (ExitStatus, String, i64) {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let stdout = match out {
        Some(p) => Stdio::from(File::create(p).unwrap()),
        None => Stdio::null(),
    };
    let child = Command::new(PDT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let stderr = std::fs::read_to_string(&err).unwrap();
    (ExitStatus::from_raw(status), stderr, usage.ru_maxrss)
}

fn within_limit(args: &[&str], out: Option<&Path>) {
    let (status, stderr, kb) = measured(args, out);
    assert!(status.success(), "{args:?}: {status}: {stderr}");
    assert!(kb < LIMIT_KB, "{args:?}: peak RSS {kb} KiB");
    eprintln!("{:<12} {kb:>7} KiB", args[0]);
}

/// Three devices: 40,000 mappings spread over the whole data device, each
/// in its own space-map bitmap; the second shares 5,000 of them, the third
/// 1,000 (counts of 3: overflow entries).
fn pool_xml() -> String {
    let step = NR_DATA / 40_000;
    let mut x = format!(
        "<superblock uuid=\"\" time=\"1\" transaction=\"1\" flags=\"0\" version=\"2\" \
         data_block_size=\"128\" nr_data_blocks=\"{NR_DATA}\">\n"
    );
    for (dev, n) in [(0u32, 40_000u64), (1, 5_000), (2, 1_000)] {
        writeln!(
            x,
            "<device dev_id=\"{dev}\" mapped_blocks=\"{n}\" transaction=\"0\" \
             creation_time=\"0\" snap_time=\"0\">"
        )
        .unwrap();
        for k in 0..n {
            writeln!(
                x,
                "<single_mapping origin_block=\"{k}\" data_block=\"{}\" time=\"0\"/>",
                k * step + k % 7
            )
            .unwrap();
        }
        x.push_str("</device>\n");
    }
    x.push_str("</superblock>\n");
    x
}

/// In `dir`: the XML `xml`, and two blank metadata files of `bytes`
/// (restored, repaired); their paths.
fn pool_files(dir: &Path, xml: &str, bytes: u64) -> [String; 3] {
    let [x, md, out] = ["pool.xml", "pool.md", "out.md"].map(|n| dir.join(n));
    std::fs::write(&x, xml).unwrap();
    for f in [&md, &out] {
        File::create(f).unwrap().set_len(bytes).unwrap();
    }
    [x, md, out].map(|p| p.to_str().unwrap().to_owned())
}

#[test]
fn every_tool_stays_small_on_a_2_to_the_32_block_data_device() {
    let dir = tempfile::tempdir().unwrap();
    // The data space map alone takes 263,000 bitmaps (1 GiB).
    let [xml, md, out] = pool_files(dir.path(), &pool_xml(), 1280 << 20);
    within_limit(&["thin_restore", "-q", "-i", &xml, "-o", &md], None);
    within_limit(&["thin_check", "-q", &md], None);
    let dump = dir.path().join("dump.xml");
    within_limit(&["thin_dump", &md], Some(&dump));
    within_limit(&["thin_repair", "-i", &md, "-o", &out], None);
    within_limit(&["thin_check", "-q", &out], None);
    within_limit(&["thin_ls", &md], None);
    let fields = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS";
    within_limit(&["thin_ls", "-o", fields, &md], None);
    within_limit(&["thin_rmap", "--region", "0..4294967296", &md], None);
    within_limit(&["thin_delta", "--snap1", "0", "--snap2", "1", &md], None);
    // What was written is what Debian's tools read.
    let theirs = oracle::run(Command::new(oracle::debian("thin_dump")).arg(&md));
    assert!(theirs.status.success());
    assert_eq!(std::fs::read(&dump).unwrap(), theirs.stdout);
}

/// Many mappings over a large data device: 1,100 mapped blocks in each of
/// 8,300 space-map bitmaps (9.1M mappings), so that the data counts alone,
/// half a byte per block of every bitmap in use, take 68 MB. Restore, check,
/// repair, thin_ls's exclusive counts and thin_trim count them window by
/// window (a pass over the mapping leaves each) and stay under 64 MiB.
#[test]
fn counts_of_many_bitmaps_go_window_by_window() {
    const CHUNK: u64 = 16_320;
    const BITMAPS: u64 = 8_300;
    let nr_data = BITMAPS * CHUNK;
    let mut x = format!(
        "<superblock uuid=\"\" time=\"1\" transaction=\"1\" flags=\"0\" version=\"2\" \
         data_block_size=\"128\" nr_data_blocks=\"{nr_data}\">\n"
    );
    for (dev, every) in [(0u64, 1u64), (1, 8)] {
        let n = BITMAPS.div_ceil(every);
        writeln!(
            x,
            "<device dev_id=\"{dev}\" mapped_blocks=\"{}\" transaction=\"0\" \
             creation_time=\"0\" snap_time=\"0\">",
            n * 1_100
        )
        .unwrap();
        for (k, i) in (0..BITMAPS).step_by(every as usize).enumerate() {
            writeln!(
                x,
                "<range_mapping origin_begin=\"{}\" data_begin=\"{}\" length=\"1100\" time=\"0\"/>",
                k as u64 * 1_100,
                i * CHUNK + 3_000
            )
            .unwrap();
        }
        x.push_str("</device>\n");
    }
    x.push_str("</superblock>\n");
    let dir = tempfile::tempdir().unwrap();
    let [xml, md, out] = pool_files(dir.path(), &x, 512 << 20);
    within_limit(&["thin_restore", "-q", "-i", &xml, "-o", &md], None);
    within_limit(&["thin_check", "-q", &md], None);
    within_limit(&["thin_repair", "-i", &md, "-o", &out], None);
    within_limit(&["thin_check", "-q", &out], None);
    // thin_ls's exclusive counts and thin_trim's check of the free runs
    // count the data blocks too.
    let ls = dir.path().join("ls");
    let fields = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS";
    within_limit(&["thin_ls", "--no-headers", "-o", fields, &md], Some(&ls));
    let shared = BITMAPS.div_ceil(8) * 1_100;
    let want = format!(
        "0 {} {} {shared}\n1 {shared} 0 {shared}\n",
        BITMAPS * 1_100,
        BITMAPS * 1_100 - shared
    );
    let got = std::fs::read_to_string(&ls).unwrap();
    let got: Vec<String> = got
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    assert_eq!(got.concat(), want);
    let data = dir.path().join("data");
    File::create(&data)
        .unwrap()
        .set_len(nr_data * 128 * 512)
        .unwrap();
    let data = data.to_str().unwrap();
    within_limit(
        &["thin_trim", "--metadata-dev", &md, "--data-dev", data],
        None,
    );
    // What was written is what Debian's tools read.
    let theirs = oracle::run(Command::new(oracle::debian("thin_check")).arg(&md));
    assert!(
        theirs.status.success(),
        "{}",
        String::from_utf8_lossy(&theirs.stderr)
    );
}
