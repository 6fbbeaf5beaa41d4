use super::format::{ArrayBlockMut, NR_ENTRIES_OFFSET};
use super::test_util::Env;
use super::*;
use crate::block_manager::put_le32;
use crate::checksum::{seal, SALT_ARRAY};
use crate::transaction_manager::TransactionManager;
use proptest::prelude::*;

/// Fails unless `e` says block `at` is corrupt.
#[track_caller]
fn assert_corrupt_at(e: &Error, at: u64) {
    assert!(
        matches!(e, Error::Corrupt { block, .. } if *block == at),
        "{e}"
    );
}

/// A value of `vs` bytes derived from `seed`.
fn value(vs: usize, seed: u8) -> Vec<u8> {
    (0..vs)
        .map(|k| seed.wrapping_mul(31).wrapping_add(k as u8))
        .collect()
}

fn contents(tm: &TransactionManager, root: u64, vs: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    walk(tm, root, vs, |i, v| {
        assert_eq!(i, out.len() as u64);
        out.push(v.to_vec());
        Ok(())
    })
    .unwrap();
    out
}

/// Array blocks of the array, in index order.
fn blocks(tm: &TransactionManager, root: u64) -> Vec<u64> {
    let mut out = Vec::new();
    btree::walk(tm, root, &mut |_, v| {
        out.push(u64::from_le_bytes(v.try_into().unwrap()));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn empty_array() {
    let mut env = Env::new(256);
    let root = new(&mut env.tm, 8, 0, &[0; 8]).unwrap();
    assert!(contents(&env.tm, root, 8).is_empty());
    assert_eq!(nr_entries(&env.tm, root, 8).unwrap(), 0);
    let mut out = [0u8; 8];
    assert!(matches!(
        get(&env.tm, root, 8, 0, &mut out),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        set(&mut env.tm, root, 8, 0, &[1; 8]),
        Err(Error::NotFound)
    ));
    env.commit(&[root]).unwrap();
    assert_eq!(env.audit(&[root]), 1);
}

#[test]
fn shape_and_get() {
    let mut env = Env::new(256);
    let root = new(&mut env.tm, 4, 2 * 1018 + 5, &7u32.to_le_bytes()).unwrap();
    let bs = blocks(&env.tm, root);
    assert_eq!(bs.len(), 3);
    let nrs: Vec<usize> = bs
        .iter()
        .map(|&b| ArrayBlock(&env.tm.read_lock(b, &ARRAY_VALIDATOR).unwrap()).nr_entries())
        .collect();
    assert_eq!(nrs, vec![1018, 1018, 5]);
    assert_eq!(nr_entries(&env.tm, root, 4).unwrap(), 2041);
    let mut out = [0u8; 4];
    get(&env.tm, root, 4, 2040, &mut out).unwrap();
    assert_eq!(out, 7u32.to_le_bytes());
    assert!(matches!(
        get(&env.tm, root, 4, 2041, &mut out),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        get(&env.tm, root, 4, 1 << 40, &mut out),
        Err(Error::NotFound)
    ));
    // Wrong value sizes are caller errors, not corruption.
    assert!(matches!(
        get(&env.tm, root, 8, 0, &mut [0; 8]),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        get(&env.tm, root, 4, 0, &mut [0; 3]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        new(&mut env.tm, 0, 1, &[]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        new(&mut env.tm, 4073, 1, &[0; 4073]),
        Err(Error::Invalid(_))
    ));
    let root = set(&mut env.tm, root, 4, 1500, &9u32.to_le_bytes()).unwrap();
    get(&env.tm, root, 4, 1500, &mut out).unwrap();
    assert_eq!(out, 9u32.to_le_bytes());
    env.commit(&[root]).unwrap();
    assert_eq!(env.audit(&[root]), 4);
    env.reopen().unwrap();
    get(&env.tm, root, 4, 1500, &mut out).unwrap();
    assert_eq!(out, 9u32.to_le_bytes());
    get(&env.tm, root, 4, 1499, &mut out).unwrap();
    assert_eq!(out, 7u32.to_le_bytes());
}

#[test]
fn set_copies_committed_blocks_once() {
    let mut env = Env::new(256);
    let root = new(&mut env.tm, 8, 600, &[0; 8]).unwrap();
    env.commit(&[root]).unwrap();
    let before = blocks(&env.tm, root);
    let r1 = set(&mut env.tm, root, 8, 3, &[1; 8]).unwrap();
    let r2 = set(&mut env.tm, r1, 8, 4, &[2; 8]).unwrap();
    assert_eq!(r1, r2);
    let after = blocks(&env.tm, r2);
    assert_ne!(before[0], after[0]);
    assert_eq!(before[1], after[1]);
    // Writing the value already there changes nothing.
    assert_eq!(set(&mut env.tm, r2, 8, 4, &[2; 8]).unwrap(), r2);
    env.commit(&[r2]).unwrap();
    env.audit(&[r2]);
    assert_eq!(set(&mut env.tm, r2, 8, 4, &[2; 8]).unwrap(), r2);
}

/// Two owners of one array (a reference taken on the root): changing one
/// leaves the other alone, and every count stays right.
#[test]
fn shared_spine() {
    for commit_between in [false, true] {
        let mut env = Env::new(2048);
        // value_size 4072: one value per block, so 600 blocks, 3 spine leaves.
        let vs = MAX_VALUE_SIZE;
        let a = new(&mut env.tm, vs, 600, &value(vs, 1)).unwrap();
        if commit_between {
            env.commit(&[a]).unwrap();
        }
        env.tm.inc(a).unwrap();
        let mut b = a;
        if commit_between {
            env.commit(&[a, b]).unwrap();
            env.audit(&[a, b]);
        }
        b = set(&mut env.tm, b, vs, 5, &value(vs, 2)).unwrap();
        b = set(&mut env.tm, b, vs, 599, &value(vs, 3)).unwrap();
        b = resize(&mut env.tm, b, vs, 600, 700, &value(vs, 4)).unwrap();
        let a2 = resize(&mut env.tm, a, vs, 600, 10, &value(vs, 5)).unwrap();
        let ca = contents(&env.tm, a2, vs);
        let cb = contents(&env.tm, b, vs);
        assert_eq!(ca, vec![value(vs, 1); 10]);
        assert_eq!(cb.len(), 700);
        assert_eq!(cb[4], value(vs, 1));
        assert_eq!(cb[5], value(vs, 2));
        assert_eq!(cb[599], value(vs, 3));
        assert_eq!(cb[650], value(vs, 4));
        env.commit(&[a2, b]).unwrap();
        env.audit(&[a2, b]);
        delete(&mut env.tm, a2).unwrap();
        env.commit(&[b]).unwrap();
        env.audit(&[b]);
        delete(&mut env.tm, b).unwrap();
        env.commit(&[]).unwrap();
        env.audit(&[]);
    }
}

#[test]
fn resize_to_zero_and_back() {
    let mut env = Env::new(512);
    let mut root = new(&mut env.tm, 8, 2000, &[3; 8]).unwrap();
    env.commit(&[root]).unwrap();
    root = resize(&mut env.tm, root, 8, 2000, 0, &[0; 8]).unwrap();
    assert!(contents(&env.tm, root, 8).is_empty());
    root = resize(&mut env.tm, root, 8, 0, 3, &[4; 8]).unwrap();
    assert_eq!(contents(&env.tm, root, 8), vec![vec![4; 8]; 3]);
    env.commit(&[root]).unwrap();
    assert_eq!(env.audit(&[root]), 2);
}

#[test]
fn resize_with_wrong_old_len_is_refused() {
    let mut env = Env::new(256);
    let root = new(&mut env.tm, 8, 600, &[0; 8]).unwrap();
    for wrong in [0, 599, 601, 509, 1100] {
        assert!(
            resize(&mut env.tm, root, 8, wrong, 700, &[0; 8]).is_err(),
            "old_len {wrong}"
        );
    }
    assert_eq!(contents(&env.tm, root, 8).len(), 600);
}

fn committed_array(vs: usize, len: u64) -> (Env, u64, Vec<u64>) {
    let mut env = Env::new(256);
    let root = new_with(&mut env.tm, vs, len, |i, v| v[0] = i as u8).unwrap();
    env.commit(&[root]).unwrap();
    let bs = blocks(&env.tm, root);
    (env, root, bs)
}

#[test]
fn corrupt_checksum_names_the_block() {
    let (mut env, root, bs) = committed_array(8, 1500);
    env.corrupt_on_disk(bs[1], |b| b[100] ^= 0x40);
    env.reopen().unwrap();
    let mut out = [0u8; 8];
    get(&env.tm, root, 8, 0, &mut out).unwrap();
    let e = get(&env.tm, root, 8, 600, &mut out).unwrap_err();
    assert!(
        matches!(e, Error::Checksum { block, .. } if block == bs[1]),
        "{e}"
    );
    let e = walk(&env.tm, root, 8, |_, _| Ok(())).unwrap_err();
    assert!(
        matches!(e, Error::Checksum { block, .. } if block == bs[1]),
        "{e}"
    );
    let e = set(&mut env.tm, root, 8, 600, &[1; 8]).unwrap_err();
    assert!(
        matches!(e, Error::Checksum { block, .. } if block == bs[1]),
        "{e}"
    );
}

#[test]
fn corrupt_header_names_the_block() {
    let (mut env, root, bs) = committed_array(8, 1500);
    // nr_entries > max_entries, with a valid checksum.
    env.corrupt_on_disk(bs[2], |b| {
        put_le32(&mut b[..], NR_ENTRIES_OFFSET, 600);
        seal(&mut b[..], SALT_ARRAY);
    });
    // Wrong location.
    env.corrupt_on_disk(bs[0], |b| {
        crate::block_manager::put_le64(&mut b[..], format::BLOCKNR_OFFSET, 3);
        seal(&mut b[..], SALT_ARRAY);
    });
    env.reopen().unwrap();
    let mut out = [0u8; 8];
    let e = get(&env.tm, root, 8, 1200, &mut out).unwrap_err();
    assert_corrupt_at(&e, bs[2]);
    let e = get(&env.tm, root, 8, 0, &mut out).unwrap_err();
    assert!(
        matches!(e, Error::BlockNumber { block, found: 3, .. } if block == bs[0]),
        "{e}"
    );
    // Reading the array with the wrong value size.
    let e = get(&env.tm, root, 4, 1200, &mut [0; 4]).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

#[test]
fn walk_finds_shape_errors() {
    // A short block in the middle.
    let (mut env, root, _) = committed_array(8, 1500);
    let (r, mut w) = spine::shadow_block(&mut env.tm, root, Geometry::new(8).unwrap(), 1).unwrap();
    ArrayBlockMut(&mut w).set_nr_entries(100);
    let short = w.loc();
    drop(w);
    let e = walk(&env.tm, r, 8, |_, _| Ok(())).unwrap_err();
    assert_corrupt_at(&e, short);
    assert!(e.to_string().contains("not the last"), "{e}");

    // A gap in the spine.
    let (mut env, root, _) = committed_array(8, 1500);
    let r = btree::remove(&mut env.tm, root, &[1], &mut SpineRefs).unwrap();
    let e = walk(&env.tm, r, 8, |_, _| Ok(())).unwrap_err();
    assert_corrupt_at(&e, r);
    assert!(e.to_string().contains("gap"), "{e}");

    // An empty last block.
    let (mut env, root, _) = committed_array(8, 1500);
    let (r, mut w) = spine::shadow_block(&mut env.tm, root, Geometry::new(8).unwrap(), 2).unwrap();
    ArrayBlockMut(&mut w).set_nr_entries(0);
    let empty = w.loc();
    drop(w);
    let e = walk(&env.tm, r, 8, |_, _| Ok(())).unwrap_err();
    assert_corrupt_at(&e, empty);

    // A spine pointing at a block that is not an array block.
    let (mut env, root, _) = committed_array(8, 1500);
    let other = btree::empty_tree(&mut env.tm, 8).unwrap();
    let r = btree::insert(
        &mut env.tm,
        root,
        &[1],
        &other.to_le_bytes(),
        &mut btree::NoRefs(8),
    )
    .unwrap()
    .0;
    let e = walk(&env.tm, r, 8, |_, _| Ok(())).unwrap_err();
    assert!(
        matches!(&e, Error::ValidatorMismatch { block, .. } if *block == other),
        "{e}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    New { len: u16, seed: u8 },
    Set { arr: usize, idx: u64, seed: u8 },
    Get { arr: usize, idx: u64 },
    Resize { arr: usize, len: u16, seed: u8 },
    Clone { arr: usize },
    Delete { arr: usize },
    Commit,
    Reopen,
}

fn op(max_len: u16) -> impl Strategy<Value = Op> {
    let len = move || 0..=max_len;
    prop_oneof![
        1 => (len(), any::<u8>()).prop_map(|(len, seed)| Op::New { len, seed }),
        6 => (any::<usize>(), any::<u64>(), any::<u8>())
            .prop_map(|(arr, idx, seed)| Op::Set { arr, idx, seed }),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(arr, idx)| Op::Get { arr, idx }),
        3 => (any::<usize>(), len(), any::<u8>())
            .prop_map(|(arr, len, seed)| Op::Resize { arr, len, seed }),
        1 => any::<usize>().prop_map(|arr| Op::Clone { arr }),
        1 => any::<usize>().prop_map(|arr| Op::Delete { arr }),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

/// Runs `ops` on arrays of `vs`-byte values against a model: one seed per
/// value. After every step each array reads back as its model; after every
/// commit every block's count is audited.
fn run(vs: usize, ops: &[Op]) {
    let mut env = Env::new(8192);
    let mut arrays: Vec<(u64, Vec<u8>)> = Vec::new();
    let roots = |a: &[(u64, Vec<u8>)]| a.iter().map(|x| x.0).collect::<Vec<_>>();
    for op in ops {
        match op.clone() {
            Op::New { len, seed } if arrays.len() < 4 => {
                let root = new(&mut env.tm, vs, len as u64, &value(vs, seed)).unwrap();
                arrays.push((root, vec![seed; len as usize]));
            }
            Op::Set { arr, idx, seed } if !arrays.is_empty() => {
                let n = arrays.len();
                let (root, model) = &mut arrays[arr % n];
                if model.is_empty() {
                    let e = set(&mut env.tm, *root, vs, idx, &value(vs, seed)).unwrap_err();
                    assert!(matches!(e, Error::NotFound));
                    continue;
                }
                let i = idx % model.len() as u64;
                *root = set(&mut env.tm, *root, vs, i, &value(vs, seed)).unwrap();
                model[i as usize] = seed;
            }
            Op::Get { arr, idx } if !arrays.is_empty() => {
                let (root, model) = &arrays[arr % arrays.len()];
                let mut out = vec![0u8; vs];
                let len = model.len() as u64;
                if len > 0 {
                    let i = idx % len;
                    get(&env.tm, *root, vs, i, &mut out).unwrap();
                    assert_eq!(out, value(vs, model[i as usize]));
                }
                let past = len + idx % 3000;
                assert!(matches!(
                    get(&env.tm, *root, vs, past, &mut out),
                    Err(Error::NotFound)
                ));
            }
            Op::Resize { arr, len, seed } if !arrays.is_empty() => {
                let n = arrays.len();
                let (root, model) = &mut arrays[arr % n];
                let old = model.len() as u64;
                *root = resize(&mut env.tm, *root, vs, old, len as u64, &value(vs, seed)).unwrap();
                model.resize(len as usize, seed);
            }
            Op::Clone { arr } if !arrays.is_empty() && arrays.len() < 4 => {
                let a = arrays[arr % arrays.len()].clone();
                env.tm.inc(a.0).unwrap();
                arrays.push(a);
            }
            Op::Delete { arr } if !arrays.is_empty() => {
                let (root, _) = arrays.remove(arr % arrays.len());
                delete(&mut env.tm, root).unwrap();
            }
            Op::Commit => {
                env.commit(&roots(&arrays)).unwrap();
                env.audit(&roots(&arrays));
            }
            Op::Reopen => {
                env.commit(&roots(&arrays)).unwrap();
                assert_eq!(env.reopen().unwrap(), roots(&arrays));
                env.audit(&roots(&arrays));
            }
            _ => {}
        }
        for (root, model) in &arrays {
            let got = contents(&env.tm, *root, vs);
            assert_eq!(got.len(), model.len());
            for (i, (g, &m)) in got.iter().zip(model).enumerate() {
                assert_eq!(g, &value(vs, m), "value {i}");
            }
            assert_eq!(nr_entries(&env.tm, *root, vs).unwrap(), model.len() as u64);
        }
    }
    env.commit(&roots(&arrays)).unwrap();
    env.audit(&roots(&arrays));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Small values: few array blocks, one spine leaf.
    #[test]
    fn model_small_values(
        vs in prop::sample::select(vec![1usize, 4, 8, 12]),
        ops in prop::collection::vec(op(3000), 1..40),
    ) {
        run(vs, &ops);
    }

    /// Large values: hundreds of array blocks, a spine of several levels.
    #[test]
    fn model_large_values(
        vs in prop::sample::select(vec![1000usize, MAX_VALUE_SIZE]),
        ops in prop::collection::vec(op(700), 1..25),
    ) {
        run(vs, &ops);
    }
}
