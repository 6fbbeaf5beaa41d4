//! Tests of [`RefCounts`](super::RefCounts).

use super::*;

fn dense_bytes(rc: &RefCounts, i: u64) -> Vec<u8> {
    let mut out = vec![0u8; CHUNK];
    match rc.chunk(i) {
        None => {}
        Some(ChunkView::Dense(d)) => d.expand(&mut out),
        Some(ChunkView::Sparse(l)) => {
            for &e in l {
                let (o, x) = sparse_entry(e);
                out[o] = x;
            }
        }
    }
    out
}

#[test]
fn chunk_stays_small() {
    assert!(std::mem::size_of::<Chunk>() <= 24);
}

#[test]
fn small_and_big() {
    let mut c = RefCounts::new(10).unwrap();
    assert_eq!(c.inc(3), 0);
    assert_eq!(c.inc(3), 1);
    assert_eq!(c.get(3), Some(2));
    for i in 2..1000 {
        assert_eq!(c.inc(4), i - 2);
    }
    assert_eq!(c.get(4), Some(998));
    assert_eq!(c.get(99), Some(0));
    assert_eq!(c.nr_overflow(), 1);
    c.mark_overflow(4);
    assert_eq!(c.get(4), None);
    c.mark_overflow(12);
    c.mark_overflow(5);
    assert_eq!(c.get(5), Some(0));
    assert_eq!(RefCounts::new(0).unwrap().nr_blocks(), 0);
    assert!(RefCounts::new(u64::MAX).is_err());
}

#[test]
fn counts_across_chunks_and_past_a_byte() {
    let mut rc = RefCounts::new(3 * CHUNK as u64).unwrap();
    rc.inc_range(CHUNK as u64 - 2, 4).unwrap();
    for _ in 0..300 {
        rc.inc_range(5, 1).unwrap();
    }
    assert_eq!(rc.get(CHUNK as u64 - 3), Some(0));
    assert_eq!(rc.get(CHUNK as u64 - 2), Some(1));
    assert_eq!(rc.get(CHUNK as u64 + 1), Some(1));
    assert_eq!(rc.get(CHUNK as u64 + 2), Some(0));
    assert_eq!(rc.get(5), Some(300));
    assert!(rc.chunk(2).is_none());
    assert!(rc.chunk(1).is_some());
    assert_eq!(rc.nr_overflow(), 1);
    assert!(rc.inc_range(3 * CHUNK as u64 - 1, 2).is_err());
    assert!(rc.inc_range(u64::MAX, 2).is_err());
}

/// A chunk that fills up turns dense with every count, big ones and
/// marks included, kept.
#[test]
fn sparse_turns_dense() {
    let mut rc = RefCounts::new(2 * CHUNK as u64).unwrap();
    let mut want = vec![0u32; CHUNK];
    let mut x = 7u64;
    let mut n = 0;
    while matches!(rc.chunk(1), None | Some(ChunkView::Sparse(_))) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        let off = (x >> 33) as usize % CHUNK;
        let times = if off.is_multiple_of(97) {
            300
        } else {
            1 + off % 3
        };
        for _ in 0..times {
            assert_eq!(rc.inc((CHUNK + off) as u64), want[off]);
            want[off] += 1;
        }
        n += 1;
        assert!(n < 10 * SPARSE_MAX);
    }
    for (off, &w) in want.iter().enumerate() {
        assert_eq!(rc.get((CHUNK + off) as u64), Some(w), "{off}");
    }
    // The batch form, across chunks and into the dense one.
    let batch: Vec<u64> = (0..600u64)
        .map(|k| CHUNK as u64 - 300 + k * 7 % 600)
        .collect();
    rc.inc_all(&batch);
    rc.inc_all(&batch);
    for &b in &batch {
        if b >= CHUNK as u64 {
            want[b as usize - CHUNK] += 2;
        } else {
            assert_eq!(rc.get(b), Some(2));
        }
    }
    let bytes = dense_bytes(&rc, 1);
    for (off, &w) in want.iter().enumerate() {
        assert_eq!(rc.resolve((CHUNK + off) as u64, bytes[off]), w);
    }
    assert_eq!(
        rc.nr_overflow(),
        want.iter().filter(|&&w| w >= 3).count() as u64
    );
}

/// A chunk of half-bytes, counted in batches past twelve, widens to
/// bytes and keeps every count.
#[test]
fn half_bytes_widen() {
    let mut rc = RefCounts::new(2 * CHUNK as u64).unwrap();
    let blocks: Vec<u64> = (0..3000u64).map(|k| (k * 5) % CHUNK as u64).collect();
    rc.inc_all(&blocks);
    assert!(matches!(
        rc.chunk(0),
        Some(ChunkView::Dense(DenseView::Nibbles(_)))
    ));
    for round in 2..=20 {
        rc.inc_all(&blocks[..100]);
        assert_eq!(rc.get(blocks[0]), Some(round));
    }
    assert!(matches!(
        rc.chunk(0),
        Some(ChunkView::Dense(DenseView::Bytes(_)))
    ));
    assert_eq!(rc.get(blocks[99]), Some(20));
    assert_eq!(rc.get(blocks[100]), Some(1));
    assert_eq!(rc.get(1), Some(0));
    assert_eq!(rc.nr_overflow(), 100);
}

/// Memory follows the blocks counted: one block in each of the 263,000
/// bitmaps of a 2^32-block device costs a few MB, not a byte per block.
#[test]
fn scattered_counts_over_a_huge_device_are_cheap() {
    let nr = 1u64 << 32;
    let mut rc = RefCounts::new(nr).unwrap();
    let step = 14_321;
    for b in (0..nr).step_by(step) {
        rc.inc(b);
    }
    assert!(rc.heap_bytes() < 16 << 20, "{}", rc.heap_bytes());
    assert_eq!(rc.get(step as u64 * 1000), Some(1));
    assert_eq!(rc.get(step as u64 * 1000 + 1), Some(0));
    let s = step as u64;
    assert_eq!(rc.first_counted_in(1..nr), Some(s));
    assert_eq!(rc.first_counted_in(s * 7 + 1..s * 9), Some(s * 8));
    assert_eq!(rc.first_counted_in(s * 7 + 1..s * 8), None);
    assert_eq!(rc.first_counted_in(nr - 10..nr + 10), None);
    let mut dense = RefCounts::new(3 * CHUNK as u64).unwrap();
    dense.inc_range(CHUNK as u64 + 2000, 2000).unwrap();
    assert_eq!(
        dense.first_counted_in(5..3 * CHUNK as u64),
        Some(CHUNK as u64 + 2000)
    );
    assert_eq!(
        dense.first_counted_in(CHUNK as u64 + 4000..3 * CHUNK as u64),
        None
    );
}

/// Counting window by window under a budget gives every block the count
/// one pass gives, whatever the budget.
#[test]
fn windows_count_what_one_pass_counts() {
    let nr = 40 * CHUNK as u64 + 123;
    // Dense runs, sparse spots, shared blocks (counts of 2..20).
    let mut refs = Vec::new();
    let mut x = 11u64;
    for k in 0..120_000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = if k % 3 == 0 {
            (x >> 20) % nr
        } else {
            (k * 7) % (25 * CHUNK as u64)
        };
        for _ in 0..1 + (x >> 60) % 3 {
            refs.push(b);
        }
    }
    refs.push(nr - 1);
    let mut one = RefCounts::new(nr).unwrap();
    for piece in refs.chunks(200) {
        one.inc_all(piece);
    }
    for budget in [1, 20_000, 100_000, 1 << 30] {
        let (mut from, mut passes) = (0, 0);
        while from < nr {
            let mut w = RefCounts::window(nr, from, budget).unwrap();
            for piece in refs.chunks(200) {
                w.inc_all(piece);
            }
            assert!(w.heap_bytes() < budget.max(DENSE_BYTES * 2) + (1 << 20));
            let end = w.window_end();
            assert!(end > from && end <= nr, "{budget}: {from}..{end}");
            for b in 0..nr {
                let want = if (from..end).contains(&b) {
                    one.get(b)
                } else {
                    Some(0)
                };
                assert_eq!(w.get(b), want, "{budget}: block {b} in {from}..{end}");
            }
            assert_eq!(
                w.nr_overflow(),
                (from..end).filter(|&b| one.get(b).unwrap() >= 3).count() as u64
            );
            from = end;
            passes += 1;
        }
        assert_eq!(passes > 1, budget < 1 << 30, "{budget}: {passes}");
    }
}

#[test]
fn keep_window_keeps_the_window_in_order() {
    let rc = RefCounts::window(10 * CHUNK as u64, 2 * CHUNK as u64, 1 << 20).unwrap();
    let c = CHUNK as u64;
    let mut blocks = [5, 2 * c, 9 * c, 3 * c + 7, 1, 2 * c + 1];
    let n = rc.keep_window(&mut blocks);
    assert_eq!(&blocks[..n], &[2 * c, 9 * c, 3 * c + 7, 2 * c + 1]);
}
