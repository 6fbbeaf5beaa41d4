//! Reading many blocks in two stages: workers read batches (sorted,
//! coalesced, no cache) and verify each block on its own; the calling
//! thread applies the verified blocks to the walk's state, in order.

use crate::io::BlockDevice;
use crate::io::{read_sorted, will_need_sorted};
use crate::progress::ProgressHook;
use crate::{Block, BLOCK_SIZE};
use std::sync::mpsc::sync_channel;

/// Blocks per batch.
const BATCH: usize = 128;
/// Reading threads at most (the calling thread applies).
const MAX_WORKERS: usize = 2;
/// Batches per worker: one being read while the other waits or is applied.
const PER_WORKER: usize = 2;

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
/// calling thread, job by job in order; `progress` is told after each batch.
#[allow(clippy::too_many_arguments)]
pub fn run<J, V>(
    dev: &dyn BlockDevice,
    progress: &dyn ProgressHook,
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
        progress.add(chunk.len() as u64);
    };

    will_need_sorted(dev, jobs.iter().map(&loc));
    if jobs.len() <= BATCH {
        let mut buf = buffers.take();
        let (ok, verdicts) = read(jobs, &mut buf);
        apply_batch(jobs, &buf, ok, verdicts);
        buffers.free.push(buf);
        return;
    }

    // Worker w reads batches w, w + WORKERS, ...; the batches are applied
    // in order, so batch i comes from worker i % WORKERS.
    let workers_n = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS));
    let mut free_txs = Vec::new();
    let mut full_rxs = Vec::new();
    let returned = std::thread::scope(|s| {
        let mut workers = Vec::new();
        for w in 0..workers_n {
            let (free_tx, free_rx) = sync_channel::<Box<[Block]>>(PER_WORKER);
            let (full_tx, full_rx) = sync_channel(PER_WORKER);
            for _ in 0..PER_WORKER {
                let _ = free_tx.send(buffers.take());
            }
            free_txs.push(free_tx);
            full_rxs.push(full_rx);
            let read = &read;
            // A worker owns its sender, so a failing worker ends the loop
            // below; it hands its buffers back at the end.
            workers.push(s.spawn(move || {
                for chunk in jobs.chunks(BATCH).skip(w).step_by(workers_n) {
                    let Ok(mut buf) = free_rx.recv() else { break };
                    let (ok, verdicts) = read(chunk, &mut buf);
                    if full_tx.send((buf, ok, verdicts)).is_err() {
                        break;
                    }
                }
                drop(full_tx);
                free_rx.iter().take(PER_WORKER).collect::<Vec<_>>()
            }));
        }
        for (i, chunk) in jobs.chunks(BATCH).enumerate() {
            let w = i % workers_n;
            let Ok((buf, ok, verdicts)) = full_rxs[w].recv() else {
                break;
            };
            apply_batch(chunk, &buf, ok, verdicts);
            let _ = free_txs[w].send(buf);
        }
        free_txs.clear();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    buffers.free.extend(returned);
}
