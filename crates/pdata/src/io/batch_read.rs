//! Batched reads straight from a device, bypassing the block cache: many
//! blocks in ascending order, one vectored read per run of consecutive
//! locations. For walkers that visit every block once (checkers, dumpers).

use super::BlockDevice;
use crate::Block;

/// Reads block `locs[i]` into `bufs[i]` for every `i`, one vectored read per
/// run of consecutive locations (so `locs` should be ascending). A run that
/// fails is retried block by block, so a bad block fails alone; `ok[i]`
/// tells whether `bufs[i]` holds block `locs[i]`.
pub fn read_sorted(dev: &dyn BlockDevice, locs: &[u64], bufs: &mut [Block], ok: &mut [bool]) {
    let n = locs.len().min(bufs.len()).min(ok.len());
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && locs[end - 1].checked_add(1) == Some(locs[end]) {
            end += 1;
        }
        let mut run: Vec<&mut Block> = bufs[start..end].iter_mut().collect();
        if dev.read_blocks(locs[start], &mut run).is_ok() {
            ok[start..end].fill(true);
        } else {
            for (i, b) in run.into_iter().enumerate() {
                ok[start + i] = dev.read_block(locs[start + i], b).is_ok();
            }
        }
        start = end;
    }
}

/// Hints the device that the (ascending) `locs` will be read soon, one hint
/// per run of consecutive locations, so that a cold read of a whole tree
/// level has all its I/O in flight at once.
pub fn will_need_sorted(dev: &dyn BlockDevice, locs: impl IntoIterator<Item = u64>) {
    let mut run: Option<(u64, u64)> = None;
    for loc in locs {
        match &mut run {
            Some((first, count)) if *first + *count == loc => *count += 1,
            _ => {
                if let Some((first, count)) = run.replace((loc, 1)) {
                    dev.will_need(first, count);
                }
            }
        }
    }
    if let Some((first, count)) = run {
        dev.will_need(first, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemoryDevice;
    use crate::BLOCK_SIZE;

    #[test]
    fn runs_and_failures() {
        let dev = MemoryDevice::new(8);
        for b in 0..8u8 {
            dev.write_block(b as u64, &[b; BLOCK_SIZE]).unwrap();
        }
        let locs = [1, 2, 3, 6, 7, 9, 12];
        let mut bufs = vec![[0xffu8; BLOCK_SIZE]; locs.len()];
        let mut ok = vec![false; locs.len()];
        read_sorted(&dev, &locs, &mut bufs, &mut ok);
        assert_eq!(ok, [true, true, true, true, true, false, false]);
        for (i, &l) in locs.iter().enumerate().take(5) {
            assert!(bufs[i].iter().all(|&x| x == l as u8));
        }
    }
}
