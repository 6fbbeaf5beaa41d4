//! `thin::pool` under contention: four writers interleaved 4 KiB apart in
//! the same data blocks (partial writes, zeroing, reads, flushes) while a
//! fifth thread takes and drops snapshots of the volume and the metadata
//! snapshot. Each writer checks its own pages as it goes; at the end the
//! metadata passes the full check with no leak and every page reads back.

use pdata::io::{BlockDevice, MemoryDevice};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use thin::pool::{Message, Pool, PoolError};
use thin::ThinMetadata;

const PAGE: usize = 4096;
/// Volume pages: 32 data blocks of 64 KiB.
const PAGES: u64 = 32 * 16;
const WRITERS: u64 = 4;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Metadata of `meta_blocks` blocks formatted for `nr_data` data blocks of
/// 64 KiB, with thin device 0; and a data device of that size.
fn formatted(meta_blocks: u64, nr_data: u64) -> (Arc<dyn BlockDevice>, Arc<dyn BlockDevice>) {
    let meta: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(meta_blocks));
    let mut md = ThinMetadata::format(meta.clone(), 128, nr_data, false).unwrap();
    md.create_thin(0).unwrap();
    md.commit().unwrap();
    (meta, Arc::new(MemoryDevice::new(nr_data * 16)))
}

#[test]
fn writers_snapshots_and_flushes_at_once() {
    let (meta, data) = formatted(1024, 256);
    let pool = Arc::new(Pool::open(meta.clone(), data.clone(), true).unwrap());
    let done = AtomicBool::new(false);
    let snaps = AtomicU64::new(0);
    let models: Vec<Vec<u8>> = std::thread::scope(|sc| {
        let snapper = sc.spawn(|| {
            let mut next = 1;
            // Bounded: should a writer fail, the scope still ends.
            while !done.load(Ordering::Relaxed) && next < 5000 {
                pool.message(&Message::CreateSnap {
                    dev: next,
                    origin: 0,
                })
                .unwrap();
                if next > 1 {
                    pool.message(&Message::Delete(next - 1)).unwrap();
                }
                if next % 3 == 0 {
                    pool.message(&Message::ReserveMetadataSnap).unwrap();
                    pool.message(&Message::ReleaseMetadataSnap).unwrap();
                }
                next += 1;
                snaps.store(next, Ordering::Relaxed);
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (pool, snaps) = (&pool, &snaps);
                sc.spawn(move || {
                    // This writer's pages: those with page % WRITERS == t.
                    let mut m = vec![0u8; (PAGES as usize / WRITERS as usize) * PAGE];
                    let mut seed = 0x1234_5678 + t;
                    for i in 0u64.. {
                        // Until enough snapshots came in between.
                        // (Or a bound, should the snapshot thread fail.)
                        if i >= 2000 && snaps.load(Ordering::Relaxed) >= 20 || i >= 200_000 {
                            break;
                        }
                        let k = xorshift(&mut seed) % (PAGES / WRITERS);
                        let page = k * WRITERS + t;
                        let at = page * PAGE as u64;
                        let mine = &mut m[k as usize * PAGE..(k as usize + 1) * PAGE];
                        match xorshift(&mut seed) % 8 {
                            0..=3 => {
                                let buf = vec![(i as u8) ^ (t as u8 * 64) | 1; PAGE];
                                pool.write(0, at, &buf, i % 50 == 0).unwrap();
                                mine.copy_from_slice(&buf);
                            }
                            4 => {
                                pool.write_zeroes(0, at, PAGE as u64, true, false).unwrap();
                                mine.fill(0);
                            }
                            5 => pool.flush().unwrap(),
                            _ => {
                                let mut got = vec![0u8; PAGE];
                                pool.read(0, at, &mut got).unwrap();
                                assert!(got == mine, "writer {t} page {page} at step {i}");
                            }
                        }
                    }
                    m
                })
            })
            .collect();
        let models = writers.into_iter().map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        snapper.join().unwrap();
        models
    });
    pool.close().unwrap();
    for page in 0..PAGES {
        let (t, k) = ((page % WRITERS) as usize, (page / WRITERS) as usize);
        let mut got = vec![0u8; PAGE];
        pool.read(0, page * PAGE as u64, &mut got).unwrap();
        assert!(got == models[t][k * PAGE..(k + 1) * PAGE], "page {page}");
    }
    drop(pool);
    let report = thin::check::check(meta).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.leaks.is_empty(), "{:?}", report.leaks);
}

#[test]
fn enospc_then_reads_and_overwrites() {
    let (meta, data) = formatted(256, 4);
    let pool = Pool::open(meta, data, true).unwrap();
    let block = pool.block_bytes();
    for b in 0..4 {
        pool.write(0, b * block + 100, &[7u8; 300], false).unwrap();
    }
    assert!(matches!(
        pool.write(0, 4 * block, &[1u8; 512], false),
        Err(PoolError::NoSpace)
    ));
    pool.write(0, 200, &[9u8; 10], false).unwrap();
    let mut got = vec![0u8; 512];
    pool.read(0, 0, &mut got).unwrap();
    let mut want = vec![0u8; 512];
    want[100..400].fill(7);
    want[200..210].fill(9);
    assert_eq!(got, want);
}

/// Data-device errors: a failed write is an error for that request only
/// (its new block is released at the next commit); a failed flush fails the
/// pool for writes (what it covered is unknown), reads go on.
#[test]
fn data_device_errors() {
    use pdata::io::{FlakeyDevice, IoKinds, Rule, Trigger};
    let (meta, mem) = formatted(256, 8);
    let data = Arc::new(FlakeyDevice::new(mem));
    let pool = Pool::open(meta.clone(), data.clone(), true).unwrap();
    pool.write(0, 0, &[1u8; 4096], false).unwrap();
    data.add_rule(Rule::fail(IoKinds::WRITE, Trigger::Nth(0)));
    assert!(matches!(
        pool.write(0, 65536, &[2u8; 4096], false),
        Err(PoolError::Io(_))
    ));
    data.clear_rules();
    pool.flush().unwrap();
    assert_eq!(
        pool.nr_free_data_blocks(),
        7,
        "the failed write's block is free again"
    );
    let mut got = vec![0u8; 4096];
    pool.read(0, 65536, &mut got).unwrap();
    assert_eq!(got, vec![0u8; 4096]);

    pool.write(0, 8192, &[3u8; 4096], false).unwrap();
    data.add_rule(Rule::fail(IoKinds::FLUSH, Trigger::Nth(0)));
    assert!(pool.flush().is_err());
    data.clear_rules();
    assert!(matches!(
        pool.write(0, 0, &[4u8; 512], false),
        Err(PoolError::Failed(_))
    ));
    assert!(pool.flush().is_err(), "a failed pool promises nothing");
    pool.read(0, 0, &mut got).unwrap();
    assert_eq!(got, vec![1u8; 4096], "reads go on from the last commit");
    drop(pool);
    let report = thin::check::check(meta).unwrap();
    assert!(report.errors.is_empty() && report.leaks.is_empty());
}

/// `read_now` (the server's read without waiting) reads what `read` does,
/// or declines: unmapped blocks read as zeros, cached data as written, also
/// across data blocks; a request not 4 KiB aligned is declined.
#[test]
fn read_now_reads_as_read_does_or_declines() {
    use pdata::io::FileDevice;
    let dir = tempfile::tempdir().unwrap();
    let (meta, _) = formatted(256, 8);
    let data: Arc<dyn BlockDevice> =
        Arc::new(FileDevice::create(&dir.path().join("data"), 8 * 16).unwrap());
    let pool = Pool::open(meta, data, true).unwrap();
    let block = pool.block_bytes();
    for (i, at) in [0, 3 * PAGE as u64, block + 5 * PAGE as u64]
        .into_iter()
        .enumerate()
    {
        pool.write(0, at, &[i as u8 + 1; PAGE], false).unwrap();
    }
    let mut answered = 0;
    for at in (0..3 * block).step_by(PAGE) {
        let (mut now, mut want) = (vec![0xaau8; PAGE], vec![0u8; PAGE]);
        pool.read(0, at, &mut want).unwrap();
        if pool.read_now(0, at, &mut now).unwrap() {
            assert!(now == want, "at {at}");
            answered += 1;
        }
    }
    // The unmapped block at least (data just written is cached too, where
    // the filesystem has RWF_NOWAIT).
    assert!(answered >= 16);
    let mut all = vec![0u8; 3 * block as usize];
    pool.read(0, 0, &mut all).unwrap();
    let mut now = vec![0xaau8; 3 * block as usize];
    if pool.read_now(0, 0, &mut now).unwrap() {
        assert!(now == all, "across data blocks");
    }
    assert!(!pool.read_now(0, 512, &mut now[..PAGE]).unwrap());
    assert!(!pool.read_now(0, 0, &mut now[..100]).unwrap());
}
