//! Command lines of thin_check, thin_dump, thin_restore and thin_repair:
//! the exit status of ours against Debian's (0.9.0) for each spelling —
//! clustered short options, attached values, `--opt=value`, abbreviated
//! long options, unknown options, missing values — and the 1.x spellings
//! Debian's tools do not know.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::pool::debian_restore;
use common::tool::{new_file, pdt, run, run_with_input, PDT};

const XML: &str = r#"<superblock uuid="" time="1" transaction="3" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="3" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="3" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="1" transaction="0" creation_time="1" snap_time="1">
    <single_mapping origin_block="5" data_block="10" time="1"/>
  </device>
</superblock>
"#;

const META_BYTES: u64 = 4 << 20;

/// A pool holding a metadata snapshot, and its XML.
struct Fixture {
    dir: tempfile::TempDir,
    xml: PathBuf,
    meta: PathBuf,
    /// The snapshot's block.
    held: u64,
}

fn build() -> Fixture {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let meta = debian_restore(dir, "pool.md", META_BYTES, XML);
    let xml = dir.join("pool.md.xml");
    let o = run_with_input(
        pdt("thin_exec").arg(&meta),
        Some("reserve_metadata_snap\ncommit\n"),
    );
    assert!(o.status.success());
    let sb = std::fs::read(&meta).unwrap();
    // The superblock's held_root (offset 56).
    let held = u64::from_le_bytes(sb[56..64].try_into().unwrap());
    assert_ne!(held, 0);
    Fixture {
        dir: d,
        xml,
        meta,
        held,
    }
}

/// Runs `tool` with `args` in a fresh copy of the inputs: IN is the pool
/// (a copy), XML its dump, OUT a blank output, NEW a path not yet made,
/// NONE a path that does not exist, SNAP the held snapshot's block.
fn status(f: &Fixture, ours: bool, tool: &str, args: &[&str]) -> i32 {
    let (xml, meta, held) = (&f.xml, &f.meta, f.held);
    let work = tempfile::tempdir_in(f.dir.path()).unwrap();
    let input = work.path().join("in.md");
    std::fs::copy(meta, &input).unwrap();
    let out = work.path().join("out.md");
    new_file(&out, META_BYTES);
    let subst = |a: &str| -> String {
        a.replace("IN", input.to_str().unwrap())
            .replace("XML", xml.to_str().unwrap())
            .replace("OUT", out.to_str().unwrap())
            .replace("NEW", work.path().join("new").to_str().unwrap())
            .replace("NONE", work.path().join("none").to_str().unwrap())
            .replace("SNAP", &held.to_string())
    };
    let mut c = if ours {
        let mut c = Command::new(PDT);
        c.arg(tool);
        c
    } else {
        Command::new(format!("/usr/sbin/{tool}"))
    };
    c.args(args.iter().map(|a| subst(a)));
    run(&mut c).status.code().unwrap_or(-1)
}

/// Ours and Debian's end alike.
fn same(f: &Fixture, tool: &str, cases: &[&[&str]]) {
    for args in cases {
        let theirs = status(f, false, tool, args);
        let ours = status(f, true, tool, args);
        assert_eq!(ours, theirs, "{tool} {args:?}");
    }
}

/// Ours ends with `code` (Debian's 0.9.0 does not know the spelling).
fn ours_only(f: &Fixture, tool: &str, code: i32, cases: &[&[&str]]) {
    for args in cases {
        assert_eq!(status(f, true, tool, args), code, "{tool} {args:?}");
    }
}

#[test]
fn thin_check_options() {
    let d = &build();
    same(
        d,
        "thin_check",
        &[
            &[],
            &["IN"],
            &["-h"],
            &["--he"],
            &["-V"],
            &["--vers"],
            &["-q"],
            &["-q", "IN"],
            &["-qm", "IN"],
            &["IN", "-m"],
            &["--meta", "IN"],
            &["--clear-needs", "IN"],
            &["-q", "--clear-needs-check-flag", "IN"],
            &["--auto-repair", "IN"],
            &["--super-block-only", "IN"],
            &["--skip-map", "IN"],
            &["--ignore-non-fatal-errors", "IN"],
            &["--bogus", "IN"],
            &["-x", "IN"],
            &["-qx", "IN"],
            &["--help=3"],
            &["--quiet=1", "IN"],
            &["--override-mapping-root"],
            &["--override-mapping-root=x", "IN"],
            &["NONE"],
            &["--", "-q"],
        ],
    );
    ours_only(
        d,
        "thin_check",
        0,
        &[&["--metadata-snapshot", "IN"], &["--async-io", "IN"]],
    );
    // Repairs only touch the live metadata.
    ours_only(d, "thin_check", 1, &[&["-m", "--auto-repair", "IN"]]);
}

#[test]
fn thin_dump_options() {
    let d = &build();
    same(
        d,
        "thin_dump",
        &[
            &[],
            &["IN"],
            &["-h"],
            &["-V"],
            &["-o", "NEW", "IN"],
            &["-oNEW", "IN"],
            &["--output=NEW", "IN"],
            &["--out", "NEW", "IN"],
            &["-f", "human_readable", "IN"],
            &["--form=xml", "IN"],
            &["-fbogus", "IN"],
            &["-r", "IN"],
            &["--repair", "IN"],
            &["-m", "IN"],
            &["-mSNAP", "IN"],
            &["--metadata-snap=SNAP", "IN"],
            &["--metadata-snap=1", "IN"],
            &["-mfoo", "IN"],
            &["--dev-id", "1", "IN"],
            &["--dev-id=x", "IN"],
            &["--skip-mappings", "IN"],
            &["-o"],
            &["--output"],
            &["--dev-id"],
            &["--bogus", "IN"],
            &["-i", "IN"],
            &["--skip-mappings=1", "IN"],
            &["NONE"],
        ],
    );
    // A block number in the next word, and 1.x's spellings.
    ours_only(
        d,
        "thin_dump",
        0,
        &[
            &["-m", "SNAP", "IN"],
            &["-m=SNAP", "IN"],
            &["--metadata-snapshot", "IN"],
            &["-q", "-o", "NEW", "IN"],
            &["--repair", "--transaction-id=7", "IN"],
            &["--async-io", "IN"],
        ],
    );
    ours_only(
        d,
        "thin_dump",
        1,
        &[
            &["-m", "1", "IN"],
            &["--repair", "--nr-data-blocks", "x", "IN"],
            &["--data-block-size", "64", "IN"],
        ],
    );
    // 1.x prints the superblock overrides without --repair too.
    ours_only(
        d,
        "thin_dump",
        0,
        &[
            &["--transaction-id=7", "IN"],
            &["--nr-data-blocks", "5000", "--data-block-size", "256", "IN"],
        ],
    );
}

#[test]
fn thin_restore_options() {
    let d = &build();
    same(
        d,
        "thin_restore",
        &[
            &[],
            &["-h"],
            &["-V"],
            &["-i", "XML", "-o", "OUT"],
            &["-iXML", "-oOUT"],
            &["--input=XML", "--output=OUT"],
            &["--in", "XML", "--out", "OUT"],
            &["-q", "-i", "XML", "-o", "OUT"],
            &["--transaction-id", "9", "-i", "XML", "-o", "OUT"],
            &["--transaction-id=x", "-i", "XML", "-o", "OUT"],
            &["--data-block-size=x", "-i", "XML", "-o", "OUT"],
            &["-i", "XML"],
            &["-o", "OUT"],
            &["-i"],
            &["--output"],
            &["-q"],
            &["XML"],
            &["--bogus", "-i", "XML", "-o", "OUT"],
            &["-x"],
            &["-i", "NONE", "-o", "OUT"],
            &["-i", "XML", "-o", "NONE"],
        ],
    );
    ours_only(
        d,
        "thin_restore",
        0,
        &[&["--async-io", "-i", "XML", "-o", "OUT"]],
    );
}

#[test]
fn thin_repair_options() {
    let d = &build();
    same(
        d,
        "thin_repair",
        &[
            &[],
            &["-h"],
            &["-V"],
            &["-i", "IN", "-o", "OUT"],
            &["-iIN", "-oOUT"],
            &["--input=IN", "--output=OUT"],
            &["--inp", "IN", "--outp", "OUT"],
            &["--transaction-id=x", "-i", "IN", "-o", "OUT"],
            &["--nr-data=4"],
            &["-i", "IN"],
            &["-o", "OUT"],
            &["-i"],
            &["--output"],
            &["--bogus", "-i", "IN", "-o", "OUT"],
            &["-x"],
            &["-i", "NONE", "-o", "OUT"],
        ],
    );
    // 1.x's -q and --async-io.
    ours_only(
        d,
        "thin_repair",
        0,
        &[
            &["-q", "-i", "IN", "-o", "OUT"],
            &["--async-io", "-i", "IN", "-o", "OUT"],
        ],
    );
}

/// Counts what the library reports.
#[derive(Default)]
struct Hook {
    total: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

impl thin::progress::ProgressHook for Hook {
    fn set_total(&self, total: u64) {
        self.total
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }
    fn add(&self, n: u64) {
        self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn progress_hooks() {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    let f = build();
    let dev = pdata::io::FileDevice::open(&f.meta, false).unwrap();
    // Check: every block in use is read about once.
    let hook = Hook::default();
    let report = thin::check::check_with_progress(&dev, &Default::default(), &hook);
    assert!(report.is_sound());
    let (total, done) = (hook.total.load(Relaxed), hook.done.load(Relaxed));
    assert!(total > 0 && done > 0 && done <= total, "{done} of {total}");
    // Repair: the total is the mappings written.
    let hook = Hook::default();
    let out = f.dir.path().join("repaired");
    new_file(&out, META_BYTES);
    let out: Arc<dyn pdata::io::BlockDevice> =
        Arc::new(pdata::io::FileDevice::open(&out, true).unwrap());
    let mut restorer = thin::restore::Restorer::new(out);
    let r = thin::repair::recover_with_progress(
        Arc::new(dev),
        &Default::default(),
        &mut restorer,
        &hook,
    )
    .unwrap();
    assert_eq!(hook.total.load(Relaxed), 4);
    assert_eq!(r.mappings, 4);
}
