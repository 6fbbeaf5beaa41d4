//! Our thin_dump and thin_check against Debian's on the same metadata:
//! dumps byte for byte, check verdicts equal on clean and damaged images.

use std::path::Path;
use std::process::Command;

mod common;
use common::oracle::debian;
use common::pool::exec_pool;
use common::tool::PDT;

fn output(cmd: &mut Command) -> (bool, Vec<u8>) {
    let o = cmd.output().expect("runs");
    (o.status.success(), o.stdout)
}

/// A pool with devices, a snapshot chain, runs, shared blocks and a held
/// metadata snapshot.
fn build(dir: &Path) -> std::path::PathBuf {
    let mut script = String::from("format 128 40000\n");
    for d in 0..5 {
        script += &format!("create_thin {d}\n");
        for v in 0..(300 + d * 200) {
            script += &format!("provision {d} {}\n", v * (d + 1));
        }
    }
    script += "commit\ncreate_snap 10 0\ncreate_snap 11 10\n";
    for v in (0..300).step_by(7) {
        script += &format!("provision 10 {v}\n");
    }
    script += "reserve_metadata_snap\nremove_range 2 100 400\ndelete 3\ncreate_snap 12 11\nset_transaction_id 0 4\ncommit\n";
    exec_pool(dir, "meta", 16 << 20, &script)
}

#[test]
fn dumps_match_debian() {
    let dir = tempfile::tempdir().unwrap();
    let meta = build(dir.path());
    for args in [
        &["--format", "xml"][..],
        &["-f", "human_readable"],
        &["--skip-mappings"],
        &["--dev-id", "10"],
    ] {
        let (ok1, theirs) = output(Command::new(debian("thin_dump")).args(args).arg(&meta));
        let (ok2, ours) = output(Command::new(PDT).arg("thin_dump").args(args).arg(&meta));
        assert!(ok1 && ok2, "{args:?}");
        assert!(theirs == ours, "thin_dump {args:?} differs from Debian's");
    }
    // The metadata snapshot: the same but for nr_data_blocks, which Debian
    // takes from the snapshot's zeroed space-map root and we from the pool.
    let (_, theirs) = output(Command::new(debian("thin_dump")).arg("-m").arg(&meta));
    let (ok, ours) = output(Command::new(PDT).args(["thin_dump", "-m"]).arg(&meta));
    assert!(ok);
    let fix = String::from_utf8(theirs).unwrap().replacen(
        "nr_data_blocks=\"0\"",
        "nr_data_blocks=\"40000\"",
        1,
    );
    assert_eq!(fix, String::from_utf8(ours).unwrap());
    // Round trip: our dump restored by Debian dumps the same again.
    let (_, xml) = output(Command::new(PDT).arg("thin_dump").arg(&meta));
    std::fs::write(dir.path().join("x.xml"), &xml).unwrap();
    let restored = dir.path().join("restored");
    std::fs::File::create(&restored)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let (ok, _) = output(
        Command::new(debian("thin_restore"))
            .arg("-i")
            .arg(dir.path().join("x.xml"))
            .arg("-o")
            .arg(&restored),
    );
    assert!(ok);
    let (_, again) = output(Command::new(PDT).arg("thin_dump").arg(&restored));
    assert!(again == xml, "dump of the restored metadata differs");
}

#[test]
fn check_verdicts_match_debian() {
    let dir = tempfile::tempdir().unwrap();
    let meta = build(dir.path());
    let status = |tool: &str, img: &Path| {
        Command::new(tool)
            .arg("-q")
            .arg(img)
            .status()
            .unwrap()
            .success()
    };
    let pdt_check = |img: &Path| {
        let o = Command::new(PDT)
            .args(["thin_check", "-q"])
            .arg(img)
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
        o.status.success()
    };
    assert!(status(&debian("thin_check"), &meta));
    assert!(pdt_check(&meta));
    let image = std::fs::read(&meta).unwrap();
    let blocks = image.len() / 4096;
    let mut damaged = 0;
    for b in 0..blocks {
        if image[b * 4096..(b + 1) * 4096].iter().all(|&x| x == 0) {
            continue;
        }
        let mut copy = image.clone();
        copy[b * 4096 + 200] ^= 0x10;
        let img = dir.path().join("damaged");
        std::fs::write(&img, &copy).unwrap();
        let theirs = status(&debian("thin_check"), &img);
        let ours = pdt_check(&img);
        assert_eq!(ours, theirs, "block {b}: ours {ours}, Debian {theirs}");
        damaged += usize::from(!ours);
    }
    assert!(damaged > 10, "only {damaged} damaged images were rejected");
}

#[test]
fn restore_round_trips_with_debian() {
    let dir = tempfile::tempdir().unwrap();
    let meta = build(dir.path());
    let (_, xml) = output(Command::new(debian("thin_dump")).arg(&meta));
    let xml_path = dir.path().join("in.xml");
    std::fs::write(&xml_path, &xml).unwrap();
    let out = dir.path().join("ours");
    std::fs::File::create(&out)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let (ok, _) = output(
        Command::new(PDT)
            .args(["thin_restore", "-i"])
            .arg(&xml_path)
            .arg("-o")
            .arg(&out),
    );
    assert!(ok, "our thin_restore failed");
    let o = Command::new(debian("thin_check"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "Debian thin_check rejects our restore");
    let (_, again) = output(Command::new(debian("thin_dump")).arg(&out));
    assert!(
        again == xml,
        "Debian's dump of our restore differs from the input"
    );
    // An output that is too small is a clear error, not a panic.
    let small = dir.path().join("small");
    std::fs::File::create(&small)
        .unwrap()
        .set_len(128 << 10)
        .unwrap();
    let o = Command::new(PDT)
        .args(["thin_restore", "-i"])
        .arg(&xml_path)
        .arg("-o")
        .arg(&small)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("too small") && !err.contains("panicked"),
        "{err}"
    );
}
