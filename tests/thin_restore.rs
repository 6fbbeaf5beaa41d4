//! `pdt thin_restore` against Debian's thin tools (0.9.0, the oracle):
//! round trips both ways, the Rust 1.x def/ref form, options, and errors
//! (clear message, exit 1, no panic).

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::oracle::debian;
use common::tool::{file, ok, run, PDT};

fn restore_with(tool: &str, xml: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = if tool == "pdt" {
        let mut c = Command::new(PDT);
        c.arg("thin_restore");
        c
    } else {
        Command::new(debian("thin_restore"))
    };
    run(cmd.arg("-i").arg(xml).arg("-o").arg(out).args(extra))
}

/// A pool as the C++ dump writes it: origins with runs of fresh blocks,
/// snapshots sharing an earlier device's blocks with some rewritten.
fn pool_xml(seed: u64, devices: u64, per_dev: u64) -> String {
    let mut x = seed;
    let mut rnd = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let mut next_data = 0;
    // (id, creation time, snap time, [(origin, data, time)])
    type Dev = (u64, u32, u32, Vec<(u64, u64, u32)>);
    let mut devs: Vec<Dev> = Vec::new();
    for d in 0..devices {
        let time = d as u32 + 1;
        if d > 0 && rnd(2) == 0 {
            let (_, _, _, base) = devs[rnd(devs.len() as u64) as usize].clone();
            let mut m = base;
            for e in m.iter_mut() {
                if rnd(5) == 0 {
                    *e = (e.0, next_data, time);
                    next_data += 1 + rnd(3);
                }
            }
            devs.push((d, time, time, m));
        } else {
            let mut m = Vec::new();
            let mut origin = rnd(100);
            while (m.len() as u64) < per_dev {
                let len = 1 + rnd(9);
                for k in 0..len {
                    m.push((origin + k, next_data + k, time));
                }
                next_data += len;
                origin += len + if rnd(3) == 0 { rnd(50) } else { 0 };
            }
            devs.push((d, time, 0, m));
        }
    }
    let nr_data = next_data + 1000;
    let mut s = format!(
        "<superblock uuid=\"\" time=\"{devices}\" transaction=\"{devices}\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"{nr_data}\">\n"
    );
    for (d, ctime, stime, m) in devs {
        s += &format!(
            "  <device dev_id=\"{d}\" mapped_blocks=\"{}\" transaction=\"{d}\" creation_time=\"{ctime}\" snap_time=\"{stime}\">\n",
            m.len()
        );
        let mut i = 0;
        while i < m.len() {
            let (o, b, t) = m[i];
            let mut len = 1;
            while i + len < m.len() && m[i + len] == (o + len as u64, b + len as u64, t) {
                len += 1;
            }
            if len == 1 {
                s += &format!(
                    "    <single_mapping origin_block=\"{o}\" data_block=\"{b}\" time=\"{t}\"/>\n"
                );
            } else {
                s += &format!("    <range_mapping origin_begin=\"{o}\" data_begin=\"{b}\" length=\"{len}\" time=\"{t}\"/>\n");
            }
            i += len;
        }
        s += "  </device>\n";
    }
    s + "</superblock>\n"
}

#[test]
fn our_restore_dumps_as_the_input_with_both_tools() {
    let dir = tempfile::tempdir().unwrap();
    let xml = pool_xml(1, 12, 3000);
    let input = dir.path().join("in.xml");
    std::fs::write(&input, &xml).unwrap();
    let out = file(dir.path(), "ours", 8 << 20);
    let o = restore_with("pdt", &input, &out, &["-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    ok(Command::new(debian("thin_check")).arg(&out));
    ok(Command::new(PDT).args(["thin_check"]).arg(&out));
    let theirs = ok(Command::new(debian("thin_dump")).arg(&out));
    assert!(
        theirs == xml.as_bytes(),
        "Debian's dump differs from the input"
    );
    let ours = ok(Command::new(PDT).arg("thin_dump").arg(&out));
    assert!(ours == xml.as_bytes(), "our dump differs from the input");
}

#[test]
fn debian_restore_then_ours_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    std::fs::write(&input, pool_xml(7, 9, 2000)).unwrap();
    let deb = file(dir.path(), "deb", 8 << 20);
    let o = restore_with("debian", &input, &deb, &[]);
    assert!(o.status.success());
    let dumped = ok(Command::new(PDT).arg("thin_dump").arg(&deb));
    let again_xml = dir.path().join("again.xml");
    std::fs::write(&again_xml, &dumped).unwrap();
    let ours = file(dir.path(), "ours", 8 << 20);
    assert!(restore_with("pdt", &again_xml, &ours, &[]).status.success());
    ok(Command::new(debian("thin_check")).arg(&ours));
    let a = ok(Command::new(debian("thin_dump")).arg(&deb));
    let b = ok(Command::new(debian("thin_dump")).arg(&ours));
    assert!(a == b, "the two restores dump differently");
}

#[test]
fn def_and_ref_expand() {
    let dir = tempfile::tempdir().unwrap();
    let sb = "<superblock uuid=\"\" time=\"2\" transaction=\"3\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"1000\">\n";
    let defs = "  <def name=\"17\">\n    <range_mapping origin_begin=\"0\" data_begin=\"100\" length=\"300\" time=\"1\"/>\n  </def>\n";
    let dev = |id: u32, tail: &str| {
        format!("  <device dev_id=\"{id}\" mapped_blocks=\"301\" transaction=\"0\" creation_time=\"1\" snap_time=\"2\">\n{tail}  </device>\n")
    };
    let with_refs = format!(
        "{sb}{defs}{}{}</superblock>\n",
        dev(1, "    <ref name=\"17\"/>\n    <single_mapping origin_block=\"400\" data_block=\"7\" time=\"2\"/>\n"),
        dev(2, "    <ref name=\"17\"/>\n    <single_mapping origin_block=\"300\" data_block=\"8\" time=\"2\"/>\n"),
    );
    let input = dir.path().join("refs.xml");
    std::fs::write(&input, with_refs).unwrap();
    let out = file(dir.path(), "ours", 4 << 20);
    assert!(restore_with("pdt", &input, &out, &[]).status.success());
    ok(Command::new(debian("thin_check")).arg(&out));
    let dumped = String::from_utf8(ok(Command::new(debian("thin_dump")).arg(&out))).unwrap();
    let expanded = format!(
        "<superblock uuid=\"\" time=\"2\" transaction=\"3\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"1000\">\n{}{}</superblock>\n",
        dev(1, "    <range_mapping origin_begin=\"0\" data_begin=\"100\" length=\"300\" time=\"1\"/>\n    <single_mapping origin_block=\"400\" data_block=\"7\" time=\"2\"/>\n"),
        dev(2, "    <range_mapping origin_begin=\"0\" data_begin=\"100\" length=\"300\" time=\"1\"/>\n    <single_mapping origin_block=\"300\" data_block=\"8\" time=\"2\"/>\n"),
    );
    assert_eq!(dumped, expanded);
}

#[test]
fn overrides_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    std::fs::write(&input, pool_xml(3, 3, 200)).unwrap();
    let extra = [
        "--transaction-id",
        "2345",
        "--data-block-size=256",
        "--nr-data-blocks",
        "234500",
    ];
    let ours = file(dir.path(), "ours", 4 << 20);
    let deb = file(dir.path(), "deb", 4 << 20);
    assert!(restore_with("pdt", &input, &ours, &extra).status.success());
    assert!(restore_with("debian", &input, &deb, &extra)
        .status
        .success());
    let a = String::from_utf8(ok(Command::new(debian("thin_dump")).arg(&ours))).unwrap();
    assert!(a.contains("transaction=\"2345\"") && a.contains("data_block_size=\"256\""));
    assert!(a.contains("nr_data_blocks=\"234500\""));
    // Debian keeps the input's version attribute; we always write 2.
    let b = String::from_utf8(ok(Command::new(debian("thin_dump")).arg(&deb))).unwrap();
    assert_eq!(a, b);

    let help = ok(Command::new(PDT).args(["thin_restore", "-h"]));
    assert!(String::from_utf8_lossy(&help).contains("--nr-data-blocks"));
    ok(Command::new(PDT).args(["thin_restore", "-V"]));
    for args in [&["--bogus"][..], &["-i"], &["-o", "x"], &[]] {
        let o = run(Command::new(PDT).arg("thin_restore").args(args));
        assert_eq!(o.status.code(), Some(1), "{args:?}");
    }
}

/// Runs our restore expecting failure; gives stderr.
fn fails(xml: &str, out_bytes: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    std::fs::write(&input, xml).unwrap();
    let out = file(dir.path(), "out", out_bytes);
    let o = restore_with("pdt", &input, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.starts_with("thin_restore: "), "{err}");
    // No superblock is left behind.
    let image = std::fs::read(&out).unwrap();
    assert!(image.iter().take(4096).all(|&b| b == 0));
    err
}

#[test]
fn errors_are_clear() {
    let xml = pool_xml(5, 4, 1000);
    let e = fails(&xml[..xml.len() / 2], 4 << 20);
    assert!(
        e.contains("ends inside a tag") || e.contains("truncated"),
        "{e}"
    );
    let e = fails(&xml.replacen("data_begin=\"", "data_begin=\"x", 1), 4 << 20);
    assert!(e.contains("line 3") && e.contains("not a number"), "{e}");
    let e = fails(&xml, 64 << 10);
    assert!(
        e.contains("the output is too small for this metadata") && e.contains("16 available"),
        "{e}"
    );
    let past = xml.replace(
            "</superblock>",
            "  <device dev_id=\"99\" mapped_blocks=\"1\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n    <single_mapping origin_block=\"0\" data_block=\"99999999\" time=\"0\"/>\n  </device>\n</superblock>",
        );
    let e = fails(&past, 4 << 20);
    assert!(e.contains("data block 99999999 is beyond the end"), "{e}");

    // A missing output file and a missing input.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    std::fs::write(&input, &xml).unwrap();
    let o = restore_with("pdt", &input, &dir.path().join("nope"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    let out = file(dir.path(), "out", 4 << 20);
    let o = restore_with("pdt", &dir.path().join("nope.xml"), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open"));
}
