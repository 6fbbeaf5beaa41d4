//! Reading on a second thread: the parser sends events in batches through a
//! bounded channel and the caller's thread applies them, so parsing and
//! building overlap. Generic over the event type: each client's schema
//! gives its reader and its applier.

use anyhow::{anyhow, Result};
use std::io::Read;
use std::sync::mpsc::{sync_channel, SyncSender};

/// Events per batch.
const BATCH: usize = 4096;
/// Batches in flight (bounds the memory between the threads).
const IN_FLIGHT: usize = 4;

/// What the reader pushes its events into; they cross to the applying
/// thread a batch at a time.
pub struct Batcher<E> {
    batch: Vec<E>,
    tx: SyncSender<Vec<E>>,
}

impl<E> Batcher<E> {
    /// Queues `ev`; an error once the applying side has stopped.
    #[inline]
    pub fn push(&mut self, ev: E) -> Result<()> {
        self.batch.push(ev);
        if self.batch.len() == BATCH {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            self.tx
                .send(full)
                .map_err(|_| anyhow!("the builder stopped"))?;
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        if !self.batch.is_empty() {
            self.tx
                .send(self.batch)
                .map_err(|_| anyhow!("the builder stopped"))?;
        }
        Ok(())
    }
}

/// Runs `read(input, batcher)` on another thread and `apply` on each event
/// it pushes, on this one, in order. The first error of `apply` stops both
/// and is the one returned; otherwise the reader's.
pub fn parse_in_background<E, R, F, A>(input: R, read: F, mut apply: A) -> Result<()>
where
    E: Send,
    R: Read + Send,
    F: FnOnce(R, &mut Batcher<E>) -> Result<()> + Send,
    A: FnMut(&E) -> Result<()>,
{
    let (tx, rx) = sync_channel::<Vec<E>>(IN_FLIGHT);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut batcher = Batcher {
                batch: Vec::with_capacity(BATCH),
                tx,
            };
            read(input, &mut batcher)?;
            batcher.finish()
        });
        let mut applied = Ok(());
        'batches: for batch in rx.iter() {
            for ev in &batch {
                applied = apply(ev);
                if applied.is_err() {
                    break 'batches;
                }
            }
        }
        // Dropping the receiver (end of the loop) stops the reader.
        drop(rx);
        let read: Result<()> = reader
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the XML reader panicked")));
        // The applier's error comes first: the reader's then only says it stopped.
        applied.and(read)
    })
}

/// [`parse_in_background`] for readers that give each event with the input
/// line it came from (for the applier's messages).
pub fn parse_lines_in_background<E, R, F, A>(input: R, read: F, mut apply: A) -> Result<()>
where
    E: Send,
    R: Read + Send,
    F: FnOnce(R, &mut dyn FnMut(E, usize) -> Result<()>) -> Result<()> + Send,
    A: FnMut(&E, usize) -> Result<()>,
{
    parse_in_background(
        input,
        |input, events: &mut Batcher<(E, usize)>| {
            read(input, &mut |ev, line| events.push((ev, line)))
        },
        |(ev, line)| apply(ev, *line),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    /// One event per byte of the input.
    fn bytes(input: &[u8], out: &mut Batcher<u8>) -> Result<()> {
        for &b in input {
            out.push(b)?;
        }
        Ok(())
    }

    #[test]
    fn events_arrive_in_order_across_batches() {
        let input: Vec<u8> = (0..3 * BATCH + 7).map(|i| i as u8).collect();
        let mut seen = Vec::new();
        parse_in_background(&input[..], bytes, |&b| {
            seen.push(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, input);
    }

    #[test]
    fn the_applier_error_wins_and_stops_the_reader() {
        let input = vec![0u8; 100 * BATCH];
        let mut n = 0;
        let e = parse_in_background(&input[..], bytes, |_| {
            n += 1;
            if n == 10 {
                bail!("tenth");
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "tenth");
        let e = parse_in_background(
            &b"abc"[..],
            |_, _: &mut Batcher<u8>| bail!("bad input"),
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "bad input");
    }
}
