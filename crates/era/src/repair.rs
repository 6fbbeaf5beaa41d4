//! Recovery of damaged era metadata (era_repair, era_dump --repair): what
//! is readable, and for what is not, the safe answer. A writeset that
//! cannot be read, or a writeset tree that cannot be walked, or entries of
//! the era array that cannot be read, come back as written in the newest
//! era (the current one): a backup then copies those blocks again. Losing
//! a "this block changed" record would silently corrupt backups; copying
//! too much only costs time.

use crate::check::read_superblock;
use crate::dump::{era_events, words, CACHE_BLOCKS};
use crate::error::{EraError, Result};
use crate::format::superblock::SUPERBLOCK_LOCATION;
use crate::ir::{Event, Sink};
use crate::metadata::query::EraView;
use crate::metadata::ERA_VALUE_SIZE;
use pdata::array;
use pdata::bitset::BITS_PER_WORD;
use pdata::block_manager::{le32, BlockManager};
use pdata::io::BlockDevice;
use std::sync::Arc;

/// Recovers the metadata on `dev` into `sink` as an era array of the
/// last era each block was written in (the writesets folded in, as
/// `era_dump --logical` gives it).
pub fn recover(dev: Arc<dyn BlockDevice>, sink: &mut dyn Sink) -> Result<()> {
    let sb = read_superblock(dev.as_ref(), SUPERBLOCK_LOCATION)
        .map_err(|e| EraError::Invalid(format!("the superblock {e}: nothing to recover from")))?;
    let bm = BlockManager::new(dev, CACHE_BLOCKS, false);
    let view = EraView::live(&sb);
    let n = sb.nr_blocks as usize;
    let newest = sb.current_era;
    // The era array as far as it reads; the rest is unknown.
    let mut eras = Vec::with_capacity(n);
    let _ = array::walk(&bm, view.era_array_root, ERA_VALUE_SIZE, |_, v| {
        if eras.len() < n {
            eras.push(le32(v, 0).min(newest));
        }
        Ok(())
    });
    eras.resize(n, newest);
    let mut sets = match view.writesets(&bm) {
        Ok(s) => s,
        Err(_) => {
            // Which blocks the lost writesets held is unknown: all of them.
            eras.iter_mut().for_each(|e| *e = newest);
            Vec::new()
        }
    };
    sets.extend(view.current_writeset.map(|ws| (newest, ws)));
    for (era, ws) in sets {
        let era = era.min(newest);
        let mut folded = eras.clone();
        let read = words(&bm, &ws, &mut |i, w| {
            let mut w = w;
            while w != 0 {
                let b = i * BITS_PER_WORD + u64::from(w.trailing_zeros());
                if let Some(e) = folded.get_mut(b as usize) {
                    *e = (*e).max(era);
                }
                w &= w - 1;
            }
            Ok(())
        });
        match read {
            Ok(()) => eras = folded,
            Err(_) => {
                let end = (ws.nr_bits as usize).min(n);
                eras[..end].iter_mut().for_each(|e| *e = newest);
            }
        }
    }
    sink.event(&Event::Superblock {
        block_size: sb.data_block_size,
        nr_blocks: sb.nr_blocks,
        current_era: sb.current_era,
    })?;
    era_events(&eras, sink)
}
