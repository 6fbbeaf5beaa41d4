//! The metadata walk that produces the event stream (era_dump): the
//! archived writesets by era, the current writeset when it holds a write
//! (as the writeset of the current era, so that no record of a write is
//! lost; Debian 0.9.0 leaves it out), then the era array. `logical` folds
//! the writesets into the era array instead, as the kernel's digest would (the newest
//! era a block was written in wins; Debian 0.9.0 keeps the oldest).

use crate::check::read_superblock;
use crate::error::{EraError, Result};
use crate::format::superblock::SUPERBLOCK_LOCATION;
use crate::format::writeset::WritesetDisk;
use crate::ir::{Event, Sink};
use crate::metadata::query::EraView;
use crate::metadata::ERA_VALUE_SIZE;
use pdata::array;
use pdata::bitset::{nr_words, BITS_PER_WORD, WORD_SIZE};
use pdata::block_manager::{le32, le64, BlockManager, BlockRead};
use pdata::io::BlockDevice;
use std::sync::Arc;

/// Blocks of cache for a walk: each block is read once, so a few suffice.
pub const CACHE_BLOCKS: usize = 64;

/// Walks the metadata on `dev` into `sink`.
pub fn dump(dev: Arc<dyn BlockDevice>, logical: bool, sink: &mut dyn Sink) -> Result<()> {
    let sb = read_superblock(dev.as_ref(), SUPERBLOCK_LOCATION).map_err(EraError::Invalid)?;
    let bm = BlockManager::new(dev, CACHE_BLOCKS, false);
    let view = EraView::live(&sb);
    sink.event(&Event::Superblock {
        block_size: sb.data_block_size,
        nr_blocks: sb.nr_blocks,
        current_era: sb.current_era,
    })?;
    let mut sets = view.writesets(&bm)?;
    if let Some(ws) = view.current_writeset {
        if writeset_has_bits(&bm, &ws)? {
            sets.push((sb.current_era, ws));
        }
    }
    let n = u64::from(sb.nr_blocks);
    if logical {
        let mut eras = view.era_array(&bm)?;
        for (era, ws) in &sets {
            words(&bm, ws, &mut |i, w| {
                let mut w = w;
                while w != 0 {
                    let b = i * BITS_PER_WORD + u64::from(w.trailing_zeros());
                    if b < n {
                        eras[b as usize] = *era;
                    }
                    w &= w - 1;
                }
                Ok(())
            })?;
        }
        return era_events(&eras, sink);
    }
    for (era, ws) in &sets {
        sink.event(&Event::WritesetBegin {
            era: *era,
            nr_bits: ws.nr_bits,
        })?;
        let nr_bits = u64::from(ws.nr_bits);
        let mut run: Option<(u64, bool)> = None;
        let emit = |sink: &mut dyn Sink, begin: u64, end: u64, value: bool| {
            sink.event(&Event::Bits { begin, end, value })
        };
        let mut pos = 0u64;
        words(&bm, ws, &mut |i, w| {
            let first = i * BITS_PER_WORD;
            let live = (nr_bits - first).min(BITS_PER_WORD);
            let mut b = 0;
            while b < live {
                let value = (w >> b) & 1 == 1;
                // The rest of the run within this word.
                let rest = if value { !(w >> b) } else { w >> b };
                let len = (u64::from(rest.trailing_zeros())).min(live - b);
                match run {
                    Some((start, v)) if v == value => {
                        let _ = start;
                    }
                    Some((start, v)) => {
                        emit(sink, start, first + b, v)?;
                        run = Some((first + b, value));
                    }
                    None => run = Some((first + b, value)),
                }
                b += len;
            }
            pos = first + live;
            Ok(())
        })?;
        if let Some((start, v)) = run {
            emit(sink, start, pos, v)?;
        }
        sink.event(&Event::WritesetEnd)?;
    }
    stream_era_array(&bm, &view, sink)
}

/// The era array's events straight from the walk, equal entries in runs
/// (nothing held but the run).
fn stream_era_array(r: &impl BlockRead, view: &EraView, sink: &mut dyn Sink) -> Result<()> {
    sink.event(&Event::EraArrayBegin)?;
    let n = u64::from(view.nr_blocks);
    let mut run: Option<(u64, u64, u32)> = None;
    let mut stopped = None;
    let walked = array::walk(r, view.era_array_root, ERA_VALUE_SIZE, |b, v| {
        if b >= n {
            return Err(pdata::Error::corrupt(
                view.era_array_root,
                "era array",
                "longer than nr_blocks",
            ));
        }
        let era = le32(v, 0);
        match &mut run {
            Some((_, end, e)) if *e == era && *end == b => *end = b + 1,
            _ => {
                if let Some((begin, end, era)) = run.replace((b, b + 1, era)) {
                    if let Err(e) = sink.event(&Event::Eras { begin, end, era }) {
                        stopped = Some(e);
                        return Err(pdata::Error::corrupt(
                            view.era_array_root,
                            "era array",
                            "walk stopped",
                        ));
                    }
                }
            }
        }
        Ok(())
    });
    if let Some(e) = stopped {
        return Err(e);
    }
    walked?;
    let seen = run.map_or(0, |r| r.1);
    if seen != n {
        return Err(EraError::Invalid(format!(
            "the era array has {seen} entries for {n} blocks"
        )));
    }
    if let Some((begin, end, era)) = run {
        sink.event(&Event::Eras { begin, end, era })?;
    }
    sink.event(&Event::EraArrayEnd)?;
    sink.event(&Event::End)
}

/// The era array's events, equal entries in runs.
pub(crate) fn era_events(eras: &[u32], sink: &mut dyn Sink) -> Result<()> {
    sink.event(&Event::EraArrayBegin)?;
    let mut i = 0;
    while i < eras.len() {
        let era = eras[i];
        let mut j = i + 1;
        while j < eras.len() && eras[j] == era {
            j += 1;
        }
        sink.event(&Event::Eras {
            begin: i as u64,
            end: j as u64,
            era,
        })?;
        i = j;
    }
    sink.event(&Event::EraArrayEnd)?;
    sink.event(&Event::End)
}

/// Each word of the writeset's bitset, bits past its size cleared; it must
/// hold exactly the words its size needs.
pub(crate) fn words(
    r: &impl BlockRead,
    ws: &WritesetDisk,
    f: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<()> {
    let nr_bits = u64::from(ws.nr_bits);
    let want = nr_words(nr_bits);
    let mut seen = 0;
    // The consumer's error, carried out of the walk.
    let mut stopped = None;
    let walked = array::walk(r, ws.root, WORD_SIZE, |i, v| {
        if i >= want {
            return Err(pdata::Error::corrupt(
                ws.root,
                "bitset",
                "longer than its bits need",
            ));
        }
        let live = (nr_bits - i * BITS_PER_WORD).min(BITS_PER_WORD);
        let mask = if live == BITS_PER_WORD {
            !0
        } else {
            (1u64 << live) - 1
        };
        seen = i + 1;
        f(i, le64(v, 0) & mask).map_err(|e| {
            stopped = Some(e);
            pdata::Error::corrupt(ws.root, "bitset", "walk stopped")
        })
    });
    if let Some(e) = stopped {
        return Err(e);
    }
    walked?;
    if seen != want {
        return Err(EraError::Invalid(format!(
            "a writeset of {nr_bits} bits holds {seen} words, not {want}"
        )));
    }
    Ok(())
}

fn writeset_has_bits(r: &impl BlockRead, ws: &WritesetDisk) -> Result<bool> {
    let mut any = false;
    words(r, ws, &mut |_, w| {
        any |= w != 0;
        Ok(())
    })?;
    Ok(any)
}
