//! A tool's answer written to a full disk (`/dev/full` as stdout): a
//! message on stderr and exit 1, never a panic (`println!` panics there,
//! with exit 101). Every tool's `-h` and `-V`, and the answers of the
//! tools that print one.

use std::fs::File;
use std::process::{Command, Stdio};

mod common;
use common::pool::exec_pool;
use common::tool::{pdt, s, PDT};

fn to_full_disk(cmd: &mut Command) -> (Option<i32>, String) {
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let o = cmd
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .expect("run pdt");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_refused(what: &str, cmd: &mut Command) {
    let (code, stderr) = to_full_disk(cmd);
    assert_eq!(code, Some(1), "{what} to a full disk: {stderr}");
    assert!(
        stderr.contains("No space left on device") && !stderr.contains("panicked"),
        "{what} to a full disk: {stderr}"
    );
}

#[test]
fn help_and_version_of_every_tool() {
    let o = Command::new(PDT)
        .arg("--help")
        .output()
        .expect("pdt --help");
    let listing = String::from_utf8_lossy(&o.stdout);
    let tools: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| !matches!(*t, "demo" | "torture"))
        .collect();
    assert!(tools.len() > 20, "pdt --help lists {tools:?}");
    for t in tools {
        assert_refused(&format!("{t} -V"), pdt(t).arg("-V"));
        assert_refused(&format!("{t} -h"), pdt(t).arg("-h"));
    }
    assert_refused("pdt -V", Command::new(PDT).arg("-V"));
    assert_refused("pdt --help", Command::new(PDT).arg("--help"));
}

#[test]
fn answers() {
    let dir = tempfile::tempdir().unwrap();
    let meta = exec_pool(
        dir.path(),
        "pool.md",
        4 << 20,
        "format 128 1000\ncreate_thin 1\nprovision 1 0\nprovision 1 7\ncommit\n",
    );
    let m = s(&meta);
    for args in [
        &["thin_check", m][..],
        &["thin_dump", m],
        &["thin_ls", m],
        &["thin_rmap", "--region", "0..10", m],
        &["thin_metadata_size", "-b", "64k", "-s", "1t", "-m", "10"],
        &[
            "cache_metadata_size",
            "--block-size",
            "64k",
            "--device-size",
            "1t",
        ],
    ] {
        assert_refused(&args.join(" "), pdt(args[0]).args(&args[1..]));
    }
}
