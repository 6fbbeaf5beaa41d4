//! Reading on a second thread: the parser sends events in batches through a
//! bounded channel and the caller's thread applies them to the visitor, so
//! parsing and building overlap.

use super::read::{apply, read_events, Event};
use anyhow::{anyhow, Result};
use std::io::Read;
use std::sync::mpsc::sync_channel;
use thin::ir::Visitor;

/// Events per batch.
const BATCH: usize = 4096;
/// Batches in flight (bounds the memory between the threads).
const IN_FLIGHT: usize = 4;

/// As [`super::parse`], with the parsing on another thread.
pub fn parse_in_background<R: Read + Send>(input: R, out: &mut dyn Visitor) -> Result<()> {
    let (tx, rx) = sync_channel::<Vec<(Event, usize)>>(IN_FLIGHT);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            read_events(input, &mut |ev, line| {
                batch.push((ev, line));
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    tx.send(full).map_err(|_| anyhow!("the builder stopped"))?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                tx.send(batch).map_err(|_| anyhow!("the builder stopped"))?;
            }
            Ok(())
        });
        let mut applied = Ok(());
        'batches: for batch in rx.iter() {
            for (ev, line) in &batch {
                applied = apply(out, ev, *line);
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
        // The builder's error comes first: the reader's then only says it stopped.
        applied.and(read)
    })
}
