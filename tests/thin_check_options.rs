//! `pdt thin_check`'s options against Debian's `thin_check` (0.9.0) on the
//! damage corpus: `-q`, `--super-block-only`, `--skip-mappings`, `-m`,
//! `--ignore-non-fatal-errors`, `--auto-repair`, `--clear-needs-check-flag`
//! and `--override-mapping-root`: the same exit status, and what ours
//! writes in place.

mod common;

use common::damage::{sb, Image, Role, Tree};
use common::damage_cases::*;
use common::tool::{run, PDT};
use std::path::Path;
use std::process::Command;

/// Exit status, stdout and stderr of a checker (which must not panic).
fn check_with(tool: &[&str], args: &[&str], img: &Path) -> (i32, String, String) {
    let o = run(Command::new(tool[0]).args(&tool[1..]).args(args).arg(img));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn write(dir: &Path, name: &str, img: &Image) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, &img.0).unwrap();
    p
}

/// The first block whose role matches.
fn find(img: &Image, f: impl Fn(&Role) -> bool) -> (u64, Role) {
    img.roles()
        .into_iter()
        .find(|(b, r)| f(r) && img.nr(*b) >= 2)
        .expect("such a block")
}

/// `img` with a free metadata block counted once: a leak.
fn leak_metadata_block(img: &Image) -> Image {
    let mut leaky = img.clone();
    let meta_bm = leaky.le64(leaky.sm(sb::META_SM, sb::BITMAP_ROOT), 16);
    let free_meta = find_count(&leaky, meta_bm, 1024, 0).unwrap();
    set_count(&mut leaky, meta_bm, free_meta, 1);
    leaky
}

/// `img` with the needs_check flag set.
fn flag_needs_check(img: &Image) -> Image {
    let mut flagged = img.clone();
    flagged.put32(0, sb::FLAGS, 1);
    flagged.reseal(0, Role::Superblock);
    flagged
}

fn swap_keys(img: &Image, b: u64, r: Role) -> Image {
    let mut img = img.clone();
    let (k0, k1) = (img.key(b, 0), img.key(b, 1));
    img.put64(b, 32, k1);
    img.put64(b, 40, k0);
    img.reseal(b, r);
    img
}

#[test]
fn options_match_debian() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ours: &[&str] = &[PDT, "thin_check"];
    let theirs: &[&str] = &[DEBIAN];
    let exec = exec_image(d);
    let restored = restored_image(d);
    let both = |args: &[&str], img: &Path, want: i32, what: &str| {
        for tool in [ours, theirs] {
            let (rc, _, err) = check_with(tool, args, img);
            assert_eq!(rc, want, "{tool:?} {args:?} on {what}: {err}");
        }
    };

    // -m checks the metadata snapshot's trees, and wants one.
    let snap_only = find(&exec, |r| {
        matches!(
            r,
            Role::Node {
                snap: true,
                leaf: true,
                ..
            }
        )
    });
    let in_snap = exec.snapshot_blocks();
    let live_leaf = exec
        .roles()
        .into_iter()
        .find(|(b, r)| {
            matches!(
                r,
                Role::Node {
                    leaf: true,
                    tree: Tree::Bottom,
                    ..
                }
            ) && !in_snap.contains(b)
                && exec.nr(*b) >= 2
        })
        .expect("a leaf only the live pool has");
    let p = write(d, "exec", &exec);
    both(&["-m"], &p, 0, "a pool with a metadata snapshot");
    both(
        &["-m"],
        &write(d, "restored", &restored),
        1,
        "a pool without one",
    );
    let bad_snap = write(d, "bad-snap", &swap_keys(&exec, snap_only.0, snap_only.1));
    both(&["-m"], &bad_snap, 1, "a damaged snapshot");
    let bad_live = write(d, "bad-live", &swap_keys(&exec, live_leaf.0, live_leaf.1));
    both(&["-m"], &bad_live, 0, "a damaged live tree");
    both(&[], &bad_live, 1, "a damaged live tree");

    // --super-block-only and --skip-mappings look no further.
    both(
        &["--super-block-only"],
        &bad_live,
        0,
        "a damaged mapping tree",
    );
    both(&["--skip-mappings"], &bad_live, 0, "a damaged mapping tree");
    let mut bad_sb = exec.clone();
    bad_sb.flip(0, 100, 1);
    both(
        &["--super-block-only"],
        &write(d, "bad-sb", &bad_sb),
        1,
        "a bad superblock",
    );
    let top = find(&exec, |r| {
        matches!(
            r,
            Role::Node {
                snap: false,
                tree: Tree::Top,
                ..
            }
        )
    });
    let bad_top = write(d, "bad-top", &swap_keys(&exec, top.0, top.1));
    both(&["--skip-mappings"], &bad_top, 1, "a damaged top level");

    // -q: nothing but the exit status.
    let (rc, out, err) = check_with(ours, &["-q"], &bad_live);
    assert!(rc == 1 && out.is_empty() && err.is_empty(), "{out}{err}");
    let (rc, out, err) = check_with(ours, &[], &bad_live);
    assert!(rc == 1 && out.contains("TRANSACTION_ID=3"), "{out}");
    assert!(
        err.contains(&format!("node {}", live_leaf.0)),
        "the problem names its node: {err}"
    );

    // --auto-repair sets leaked blocks free in both space maps.
    let mut leaky = leak_metadata_block(&exec);
    let index_leaf = find(&exec, |r| {
        matches!(
            r,
            Role::Node {
                tree: Tree::DataIndex,
                ..
            }
        )
    })
    .0;
    let data_bm = leaky.value64(index_leaf, 0);
    let free_data = find_count(&leaky, data_bm, 16320, 0).unwrap();
    set_count(&mut leaky, data_bm, free_data, 1);
    let p = write(d, "leaky", &leaky);
    assert_eq!(verdict(ours, &p), NonFatal);
    let (_, before, _) = check_with(ours, &[], &p);
    let (rc, _, err) = check_with(ours, &["--auto-repair"], &p);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(verdict(ours, &p), Clean);
    assert_eq!(verdict(theirs, &p), Clean);
    let (_, after, _) = check_with(ours, &[], &p);
    let free = |s: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix("METADATA_FREE_BLOCKS="))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(free(&after), free(&before) + 1, "nr_allocated follows");
    let (rc, _, _) = check_with(ours, &["--auto-repair", "-m"], &p);
    assert_eq!(rc, 1, "no repair of the snapshot");

    // --clear-needs-check-flag clears the flag only when the check passes.
    let flagged = flag_needs_check(&exec);
    let p = write(d, "flagged", &flagged);
    let (rc, _, err) = check_with(ours, &["--clear-needs-check-flag"], &p);
    assert_eq!(rc, 0, "{err}");
    let cleared = Image(std::fs::read(&p).unwrap());
    assert_eq!(cleared.le32(0, sb::FLAGS), 0);
    assert_eq!(verdict(theirs, &p), Clean);
    let mut damaged = swap_keys(&flagged, live_leaf.0, live_leaf.1);
    damaged.put32(0, sb::FLAGS, 1);
    damaged.reseal(0, Role::Superblock);
    let p = write(d, "flagged-damaged", &damaged);
    let (rc, _, _) = check_with(ours, &["--clear-needs-check-flag"], &p);
    assert_eq!(rc, 1);
    assert_eq!(Image(std::fs::read(&p).unwrap()).le32(0, sb::FLAGS), 1);

    // No input: an error, as Debian's.
    for tool in [ours, theirs] {
        let o = Command::new(tool[0]).args(&tool[1..]).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("No input file provided"));
    }
}

/// 1.x's `--auto-repair`: it fixes the leaks and clears needs_check (which
/// stratisd relies on), and is refused with the options that would leave
/// part of the metadata unchecked or problems unreported.
#[test]
fn auto_repair_clears_needs_check_and_refuses_partial_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ours: &[&str] = &[PDT, "thin_check"];
    let exec = exec_image(d);
    let leaky = flag_needs_check(&leak_metadata_block(&exec));
    let p = write(d, "leaky-flagged", &leaky);
    let (rc, _, err) = check_with(ours, &["--auto-repair"], &p);
    assert_eq!(rc, 0, "{err}");
    let repaired = Image(std::fs::read(&p).unwrap());
    assert_eq!(repaired.le32(0, sb::FLAGS), 0, "needs_check cleared");
    assert_eq!(verdict(&[DEBIAN], &p), Clean);

    // Flag set, nothing leaked: cleared as well.
    let flagged = flag_needs_check(&exec);
    let p = write(d, "flagged", &flagged);
    let (rc, _, err) = check_with(ours, &["--auto-repair"], &p);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(Image(std::fs::read(&p).unwrap()).le32(0, sb::FLAGS), 0);

    for with in [
        &["--skip-mappings"][..],
        &["--super-block-only"],
        &["-m"],
        &["--metadata-snap"],
        &["--ignore-non-fatal-errors"],
        &["--override-mapping-root", "1"],
        &["--override-details-root", "1"],
    ] {
        let p = write(d, "refused", &flagged);
        let args: Vec<&str> = ["--auto-repair"].iter().chain(with).copied().collect();
        let (rc, _, err) = check_with(ours, &args, &p);
        assert_eq!(rc, 1, "{args:?} refused: {err}");
        assert!(err.contains("Usage"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&p).unwrap(), flagged.0, "{args:?} wrote");
    }
    // LVM's lvm.conf may add --skip-mappings to --clear-needs-check-flag.
    let p = write(d, "skip", &flagged);
    let (rc, _, err) = check_with(ours, &["--clear-needs-check-flag", "--skip-mappings"], &p);
    assert_eq!(rc, 0, "{err}");

    // 1.x's --override-details-root: the tree it names is checked.
    let details = exec.le64(0, sb::DETAILS_ROOT);
    let p = write(d, "clean", &exec);
    let root = details.to_string();
    let (rc, _, err) = check_with(ours, &["--override-details-root", &root], &p);
    assert_eq!(rc, 0, "{err}");
    let (rc, _, _) = check_with(ours, &["--override-details-root", "0"], &p);
    assert_eq!(rc, 1, "block 0 is no details tree");
}
