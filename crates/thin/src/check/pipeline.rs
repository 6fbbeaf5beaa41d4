//! Reading many blocks in two stages on two threads: a worker reads batches
//! (sorted, coalesced, no cache) and verifies each block on its own; the
//! calling thread applies the verified blocks to the walk's state, in order.

use pdata::io::batch::read_sorted;
use pdata::io::BlockDevice;
use pdata::{Block, BLOCK_SIZE};
use std::sync::mpsc::sync_channel;

/// Blocks per batch.
const BATCH: usize = 128;
/// Batches in flight: one being read, one queued, one being applied.
const NR_BUFFERS: usize = 3;

/// Batch buffers, kept from one run to the next.
#[derive(Default)]
pub struct Buffers {
    free: Vec<Box<[Block]>>,
}

impl Buffers {
    fn take(&mut self) -> Box<[Block]> {
        self.free
            .pop()
            .unwrap_or_else(|| vec![[0u8; BLOCK_SIZE]; BATCH].into_boxed_slice())
    }
}

/// Reads the block of every job (`loc(job)`, ascending for speed), runs
/// `verify` on it (None: the read failed) on the worker, then `apply` on the
/// calling thread, job by job in order.
pub fn run<J, V>(
    dev: &dyn BlockDevice,
    jobs: &[J],
    buffers: &mut Buffers,
    loc: impl Fn(&J) -> u64 + Sync,
    verify: impl Fn(&J, Option<&Block>) -> V + Sync,
    mut apply: impl FnMut(&J, Option<&Block>, V),
) where
    J: Sync,
    V: Send,
{
    let read = |chunk: &[J], buf: &mut [Block]| -> (Vec<bool>, Vec<V>) {
        let locs: Vec<u64> = chunk.iter().map(&loc).collect();
        let mut ok = vec![false; chunk.len()];
        read_sorted(dev, &locs, buf, &mut ok);
        let verdicts = chunk
            .iter()
            .zip(buf.iter())
            .zip(&ok)
            .map(|((j, b), &ok)| verify(j, ok.then_some(b)))
            .collect();
        (ok, verdicts)
    };
    let mut apply_batch = |chunk: &[J], buf: &[Block], ok: Vec<bool>, verdicts: Vec<V>| {
        for (((j, b), ok), v) in chunk.iter().zip(buf).zip(ok).zip(verdicts) {
            apply(j, ok.then_some(b), v);
        }
    };

    if jobs.len() <= BATCH {
        let mut buf = buffers.take();
        let (ok, verdicts) = read(jobs, &mut buf);
        apply_batch(jobs, &buf, ok, verdicts);
        buffers.free.push(buf);
        return;
    }

    let (free_tx, free_rx) = sync_channel::<Box<[Block]>>(NR_BUFFERS);
    let (full_tx, full_rx) = sync_channel(NR_BUFFERS);
    for _ in 0..NR_BUFFERS {
        let _ = free_tx.send(buffers.take());
    }
    let returned = std::thread::scope(|s| {
        let read = &read;
        // The worker owns the sender, so a failing worker ends the loop
        // below; it hands all buffers back at the end.
        let worker = s.spawn(move || {
            for chunk in jobs.chunks(BATCH) {
                let Ok(mut buf) = free_rx.recv() else { break };
                let (ok, verdicts) = read(chunk, &mut buf);
                if full_tx.send((buf, ok, verdicts)).is_err() {
                    break;
                }
            }
            drop(full_tx);
            free_rx.iter().take(NR_BUFFERS).collect::<Vec<_>>()
        });
        for chunk in jobs.chunks(BATCH) {
            let Ok((buf, ok, verdicts)) = full_rx.recv() else {
                break;
            };
            apply_batch(chunk, &buf, ok, verdicts);
            let _ = free_tx.send(buf);
        }
        drop(free_tx);
        worker.join().unwrap_or_default()
    });
    buffers.free.extend(returned);
}
