//! `pdt thin_exec` and Debian's thin-provisioning-tools (0.9.0) on the same
//! metadata:
//!
//! * `thin_restore_interop`: we open and extend what `thin_restore` writes.
//! * `metadata_snapshot`: `thin_dump -m` shows the pool as of the reserve.
//! * `corrupted_blocks`: a flipped byte in any metadata block gives
//!   `error: ... block N ...`, never a panic nor a wrong answer.
//!
//! The tools are required: the test fails (does not skip) without them.

mod common;

use common::damage::{le32, le64};
use common::exec_model::*;
use common::tool::file as new_meta;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::Command;

// ---------------------------------------------------------------------------
// 3: thin_restore.

/// Builds a pool in the model alone, data blocks handed out in order.
fn simulate(ops: &[Op], st: &mut State, next: &mut u64) {
    for op in ops {
        let out = match op {
            Op::Provision(..) | Op::Alloc => {
                while st.cur.in_use(*next) || st.committed.in_use(*next) {
                    *next += 1;
                }
                *next += 1;
                (*next - 1).to_string()
            }
            _ => String::new(),
        };
        // For the other operations the model's own prediction stands.
        let out = if out.is_empty() {
            None
        } else {
            Some(out.as_str())
        };
        st.apply(op, out).unwrap();
    }
}

fn to_xml(p: &Pool) -> String {
    let mut s = format!(
        "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\" flags=\"0\" version=\"2\" \
         data_block_size=\"{}\" nr_data_blocks=\"{}\">\n",
        p.time, p.trans, p.block_size, p.nr_data
    );
    for (id, d) in &p.devs {
        let _ = writeln!(
            s,
            "  <device dev_id=\"{id}\" mapped_blocks=\"{}\" transaction=\"{}\" \
             creation_time=\"{}\" snap_time=\"{}\">",
            d.map.len(),
            d.trans,
            d.ctime,
            d.stime
        );
        let v: Vec<(u64, u64, u32)> = d.map.iter().map(|(k, (b, t))| (*k, *b, *t)).collect();
        let mut i = 0;
        while i < v.len() {
            let mut j = i + 1;
            while j < v.len()
                && v[j].0 == v[j - 1].0 + 1
                && v[j].1 == v[j - 1].1 + 1
                && v[j].2 == v[i].2
            {
                j += 1;
            }
            if j - i == 1 {
                let _ = writeln!(
                    s,
                    "    <single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"{}\"/>",
                    v[i].0, v[i].1, v[i].2
                );
            } else {
                let _ = writeln!(
                    s,
                    "    <range_mapping origin_begin=\"{}\" data_begin=\"{}\" length=\"{}\" time=\"{}\"/>",
                    v[i].0,
                    v[i].1,
                    j - i,
                    v[i].2
                );
            }
            i = j;
        }
        s.push_str("  </device>\n");
    }
    s.push_str("</superblock>\n");
    s
}

#[test]
fn thin_restore_interop() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = StdRng::seed_from_u64(77);

    // The pool, built in the model: an origin with runs, a chain of
    // snapshots that overwrite some blocks and share others, an unrelated
    // device, a shared insert.
    let mut st = State::new(128, 20_000, 4096);
    let mut ops = vec![Op::CreateThin(1)];
    ops.extend((0..600).map(|v| Op::Provision(1, v)));
    ops.extend((5000..5040).map(|v| Op::Provision(1, v)));
    ops.push(Op::CreateThin(5));
    for _ in 0..300 {
        ops.push(Op::Provision(5, rng.gen_range(0..100_000)));
    }
    ops.push(Op::CreateSnap(2, 1));
    ops.extend((0..600).step_by(7).map(|v| Op::Provision(2, v)));
    ops.push(Op::CreateSnap(3, 2));
    ops.extend((100..200).map(|v| Op::Provision(3, v)));
    ops.push(Op::Remove(3, 300));
    ops.push(Op::SetTid(0, 7));
    ops.push(Op::CreateThin(9));
    ops.push(Op::Commit);
    let mut next = 0;
    simulate(&ops, &mut st, &mut next);
    // Blocks shared across devices by insert: dev 1's block 3 in dev 2 at
    // 9000, and dev 1's block 10 twice more in dev 3.
    let b3 = st.cur.devs[&1].map[&3].0;
    let b10 = st.cur.devs[&1].map[&10].0;
    simulate(
        &[
            Op::Insert(2, 9000, b3),
            Op::Insert(3, 9001, b10),
            Op::Insert(3, 9002, b10),
            Op::Commit,
        ],
        &mut st,
        &mut next,
    );

    let xml = to_xml(&st.committed);
    let xml_path = dir.join("pool.xml");
    std::fs::write(&xml_path, &xml).unwrap();
    let meta = new_meta(dir, "meta.img", 16 << 20);
    let o = Command::new(THIN_RESTORE)
        .arg("-i")
        .arg(&xml_path)
        .arg("-o")
        .arg(&meta)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "thin_restore: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let ranges = check_disk("after thin_restore", &meta, &st);
    assert!(ranges > 0);

    let script = dir.join("script.txt");
    // Lookups of everything (and some unmapped blocks).
    let mut ops = Vec::new();
    for (id, d) in &st.committed.devs {
        for v in d.map.keys() {
            ops.push(Op::Lookup(*id, *v));
        }
        ops.push(Op::Lookup(*id, 77_777));
    }
    run_checked(&meta, &script, &mut st, &ops);

    // Changes.
    let mut ops = vec![Op::CreateSnap(10, 3)];
    ops.extend((0..50).map(|v| Op::Provision(10, v * 2)));
    ops.extend((600..700).map(|v| Op::Provision(1, v)));
    ops.extend((0..30).map(|v| Op::Provision(2, v)));
    ops.push(Op::Delete(5));
    ops.extend((150..160).map(|v| Op::Remove(3, v)));
    ops.push(Op::Remove(1, 3));
    ops.push(Op::RemoveRange(2, 100, 300));
    ops.push(Op::Insert(9, 0, b10));
    ops.push(Op::SetTid(7, 8));
    ops.push(Op::Lookup(10, 9001));
    ops.push(Op::Lookup(5, 0)); // deleted: error
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    check_disk("after thin_exec on thin_restore's metadata", &meta, &st);

    // And once more after reopening: everything still there.
    let mut ops = Vec::new();
    for (id, d) in &st.committed.devs {
        ops.extend(d.map.keys().step_by(3).map(|v| Op::Lookup(*id, *v)));
    }
    ops.push(Op::CreateThin(11));
    ops.push(Op::Provision(11, 5));
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    check_disk("after a second thin_exec", &meta, &st);
}

// ---------------------------------------------------------------------------
// 4: metadata snapshots.

#[test]
fn metadata_snapshot() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let meta = new_meta(dir, "meta.img", 16 << 20);
    let script = dir.join("script.txt");
    let mut st = State::new(128, 10_000, 4096);

    let mut ops = vec![
        Op::Format(128, 10_000),
        Op::CreateThin(1),
        Op::CreateThin(2),
    ];
    ops.extend((0..400).map(|v| Op::Provision(1, v)));
    ops.extend((0..100).map(|v| Op::Provision(2, v * 5)));
    ops.push(Op::CreateSnap(3, 1));
    ops.extend((0..400).step_by(4).map(|v| Op::Provision(3, v)));
    ops.push(Op::SetTid(0, 1));
    ops.push(Op::Reserve);
    // Changes after the reserve, in the same and the next transaction.
    ops.extend((0..400).step_by(3).map(|v| Op::Provision(1, v)));
    ops.push(Op::Delete(2));
    ops.extend((0..50).map(|v| Op::Remove(3, v)));
    ops.push(Op::SetTid(1, 2));
    ops.push(Op::CreateSnap(4, 3));
    ops.push(Op::Reserve); // already held: error
    ops.push(Op::Commit);
    ops.extend((1000..1100).map(|v| Op::Provision(4, v)));
    ops.push(Op::RemoveRange(1, 100, 250));
    ops.push(Op::CreateThin(2));
    ops.extend((0..20).map(|v| Op::Provision(2, v)));
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    let held = st
        .committed
        .held
        .clone()
        .expect("a metadata snapshot is held");
    assert_eq!(held.trans, 1);
    assert_eq!(held.devs.len(), 3);
    check_disk("metadata snapshot held", &meta, &st);

    // Release: every block only the snapshot used is free again (and not
    // reused before the release is committed).
    let mut ops = vec![Op::Release];
    ops.extend((20_000..20_300).map(|v| Op::Provision(1, v)));
    ops.push(Op::Release); // not held any more: error
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    assert!(st.committed.held.is_none());
    check_disk("metadata snapshot released", &meta, &st);

    // reserve commits what came before it; an abort then drops only the
    // snapshot.
    let ops = vec![
        Op::Provision(1, 30_000),
        Op::Reserve,
        Op::Provision(1, 30_001),
        Op::Abort,
    ];
    run_checked(&meta, &script, &mut st, &ops);
    assert!(st.committed.held.is_none());
    assert!(st.committed.devs[&1].map.contains_key(&30_000));
    check_disk("reserve then abort", &meta, &st);

    // A second snapshot; a release left uncommitted is dropped.
    let ops = vec![Op::Reserve, Op::Provision(4, 0), Op::Commit, Op::Release];
    run_checked(&meta, &script, &mut st, &ops);
    assert!(st.committed.held.is_some());
    check_disk("second metadata snapshot", &meta, &st);
}

// ---------------------------------------------------------------------------
// 5: corrupted blocks.

/// Every node of the btree at `root` (levels: 2 for the mapping tree, whose
/// top-level leaves hold subtree roots; 1 for the device details).
fn tree_blocks(img: &[u8], root: u64, levels: u32, out: &mut BTreeSet<u64>) {
    if !out.insert(root) {
        return;
    }
    let b = &img[root as usize * BLOCK_SIZE..][..BLOCK_SIZE];
    assert_eq!(le64(b, 8), root, "block {root}: not where it says it is");
    let flags = le32(b, 4);
    let nr = le32(b, 16) as usize;
    let max = le32(b, 20) as usize;
    let values = 32 + 8 * max;
    if flags == 1 {
        for i in 0..nr {
            tree_blocks(img, le64(b, values + 8 * i), levels, out);
        }
    } else {
        assert_eq!(flags, 2, "block {root}: not a btree node");
        if levels > 1 {
            for i in 0..nr {
                tree_blocks(img, le64(b, values + 8 * i), levels - 1, out);
            }
        }
    }
}

/// "block N" appears in `s` (not as a prefix of a longer number).
fn names_block(s: &str, b: u64) -> bool {
    let pat = format!("block {b}");
    s.match_indices(&pat).any(|(i, _)| {
        !s[i + pat.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn corrupted_blocks() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let meta = new_meta(dir, "meta.img", 16 << 20);
    let script = dir.join("script.txt");
    let mut rng = StdRng::seed_from_u64(5);
    let mut st = State::new(128, 100_000, 4096);
    let mut ops = vec![Op::Format(128, 100_000), Op::CreateThin(1)];
    ops.extend((0..1500).map(|v| Op::Provision(1, v)));
    ops.push(Op::CreateSnap(2, 1));
    ops.extend((0..1500).step_by(3).map(|v| Op::Provision(2, v)));
    ops.push(Op::CreateThin(3));
    for _ in 0..600 {
        ops.push(Op::Provision(3, rng.gen_range(0..1_000_000)));
    }
    for d in 10..40 {
        ops.push(Op::CreateThin(d));
        ops.push(Op::Provision(d, d));
    }
    ops.push(Op::Commit);
    run_checked(&meta, &script, &mut st, &ops);
    check_disk("corruption base", &meta, &st);

    let img = std::fs::read(&meta).unwrap();
    let sb = &img[..BLOCK_SIZE];
    let mut live = BTreeSet::new();
    tree_blocks(&img, le64(sb, 320), 2, &mut live);
    tree_blocks(&img, le64(sb, 328), 1, &mut live);
    assert!(live.len() > 10, "too small a tree: {live:?}");

    // Lookups of every mapping of every device: every live node is read.
    let mut lookups = Vec::new();
    for (id, d) in &st.committed.devs {
        for v in d.map.keys() {
            lookups.push(Op::Lookup(*id, *v));
        }
        lookups.push(Op::Lookup(*id, 5_000_000));
    }
    let text = script_of(&lookups);
    let nonzero: Vec<u64> = (1..img.len() / BLOCK_SIZE)
        .filter(|&b| img[b * BLOCK_SIZE..][..BLOCK_SIZE].iter().any(|&x| x != 0))
        .map(|b| b as u64)
        .collect();
    let copy = dir.join("copy.img");
    let mut detected = 0;
    for &b in &nonzero {
        let mut bad = img.clone();
        bad[b as usize * BLOCK_SIZE + 100] ^= 0xff;
        std::fs::write(&copy, &bad).unwrap();
        let r = run_exec(&copy, &script, &text);
        assert_eq!(
            r.lines.len(),
            lookups.len(),
            "block {b}: stderr {}",
            r.stderr
        );
        let mut errors = 0;
        let mut named = false;
        let mut model = st.clone();
        for (op, out) in lookups.iter().zip(&r.lines) {
            if out.starts_with("error: ") {
                errors += 1;
                assert!(
                    out.contains("block "),
                    "corrupt block {b}: an error that names no block: {out}"
                );
                named |= names_block(out, b);
            } else {
                // No wrong answers: what is not an error is right.
                model
                    .apply(op, Some(out))
                    .unwrap_or_else(|e| panic!("corrupt block {b}: `{}`: {e}", op.line()));
            }
        }
        assert_eq!(
            r.code,
            if errors > 0 { 1 } else { 0 },
            "block {b}: exit code"
        );
        if live.contains(&b) {
            assert!(
                named,
                "corrupt btree node {b}: no error names it; errors: {:?}",
                r.lines
                    .iter()
                    .filter(|l| l.starts_with("error"))
                    .take(3)
                    .collect::<Vec<_>>()
            );
            detected += 1;
        }
    }
    eprintln!(
        "{} non-zero metadata blocks corrupted in turn, {} live btree nodes, all {detected} detected",
        nonzero.len(),
        live.len()
    );
}
