//! Reads, writes and discards of thin devices, block by block of the pool
//! (see the module above for the locks). A request is split at data-block
//! boundaries; each piece takes its block's cell.

use super::{Pool, PoolError, Result, State};
use pdata::{Block, BLOCK_SIZE};

const BS: u64 = BLOCK_SIZE as u64;
/// Largest buffer a piece of a data block is moved through.
const CHUNK: u64 = 1 << 20;
/// Most blocks one step of a discard unmaps (and holds cells for).
const DISCARD_STEP: u64 = 1024;

/// Where a write goes.
enum Plan {
    /// The block is mapped and not shared: overwrite it.
    InPlace(u64),
    /// A new data block, filled from `src` (or zeros) around the write.
    New { dst: u64, src: Option<u64> },
    /// Nothing to do (zeroing an unmapped block).
    Skip,
}

/// One data block's part of a request: (virtual block, offset in it, bytes).
type Piece = (u64, u64, u64);

fn blocks_mut(buf: &mut [u8]) -> Vec<&mut Block> {
    buf.chunks_exact_mut(BLOCK_SIZE)
        .map(|c| c.try_into().expect("chunks of BLOCK_SIZE"))
        .collect()
}

fn blocks(buf: &[u8]) -> Vec<&Block> {
    buf.chunks_exact(BLOCK_SIZE)
        .map(|c| c.try_into().expect("chunks of BLOCK_SIZE"))
        .collect()
}

impl Pool {
    fn pieces(&self, offset: u64, len: u64) -> Result<Vec<Piece>> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| PoolError::Invalid("offset + length overflows".into()))?;
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let vb = pos / self.block_bytes;
            let start = pos % self.block_bytes;
            let n = (self.block_bytes - start).min(end - pos);
            out.push((vb, start, n));
            pos += n;
        }
        Ok(out)
    }

    /// First 4 KiB block of data block `d` on the data device.
    fn base(&self, d: u64) -> u64 {
        d * (self.block_bytes / BS)
    }

    /// Reads `buf.len()` bytes of `dev` at `offset`; unmapped blocks read
    /// as zeros.
    pub fn read(&self, dev: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        for (vb, start, n) in self.pieces(offset, buf.len() as u64)? {
            let out = &mut buf[done..done + n as usize];
            let _cell = self.cells.shared(dev, vb);
            let mapped = self.state().md.lookup(dev, vb)?;
            match mapped {
                None => out.fill(0),
                Some((d, _)) => self.read_data(d, start, out)?,
            }
            done += n as usize;
        }
        Ok(())
    }

    /// `read`, but only if it can be done at once: the request is 4 KiB
    /// aligned and, for each data block it covers, no writer holds the
    /// block's cell, the metadata lock is free and the data is in the page
    /// cache. Ok(false) when any of that fails (nothing is held then, `buf`
    /// unspecified): a server answers the cached reads itself and hands the
    /// rest to a worker that may wait.
    pub fn read_now(&self, dev: u64, offset: u64, buf: &mut [u8]) -> Result<bool> {
        let len = buf.len() as u64;
        if len == 0 || !offset.is_multiple_of(BS) || !len.is_multiple_of(BS) {
            return Ok(false);
        }
        let mut done = 0usize;
        for (vb, start, n) in self.pieces(offset, len)? {
            let out = &mut buf[done..done + n as usize];
            if !self.read_piece_now(dev, vb, start, out)? {
                return Ok(false);
            }
            done += n as usize;
        }
        Ok(true)
    }

    /// One data block's part of `read_now` (4 KiB aligned).
    fn read_piece_now(&self, dev: u64, vb: u64, start: u64, out: &mut [u8]) -> Result<bool> {
        let Some(_cell) = self.cells.try_shared(dev, vb) else {
            return Ok(false);
        };
        let mapped = match self.state.try_lock() {
            Ok(mut st) => st.md.lookup(dev, vb)?,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().md.lookup(dev, vb)?,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        match mapped {
            None => {
                out.fill(0);
                Ok(true)
            }
            Some((d, _)) => Ok(self.data.read_cached(self.base(d) + start / BS, out)?),
        }
    }

    /// Reads bytes `start..start + out.len()` of data block `d`.
    fn read_data(&self, d: u64, start: u64, out: &mut [u8]) -> Result<()> {
        let first = self.base(d) + start / BS;
        if start.is_multiple_of(BS) && out.len().is_multiple_of(BLOCK_SIZE) {
            self.data.read_blocks(first, &mut blocks_mut(out))?;
            return Ok(());
        }
        let end = start + out.len() as u64;
        let nr = end.div_ceil(BS) - start / BS;
        let mut tmp = vec![0u8; (nr * BS) as usize];
        self.data.read_blocks(first, &mut blocks_mut(&mut tmp))?;
        let skip = (start % BS) as usize;
        out.copy_from_slice(&tmp[skip..skip + out.len()]);
        Ok(())
    }

    /// Writes bytes `start..start + data.len()` of data block `d` in place
    /// (a partial 4 KiB block at either end is read, patched, written).
    fn write_data(&self, d: u64, start: u64, data: &[u8]) -> Result<()> {
        let first = self.base(d) + start / BS;
        let end = start + data.len() as u64;
        if start.is_multiple_of(BS) && end.is_multiple_of(BS) {
            self.data.write_blocks(first, &blocks(data))?;
            return Ok(());
        }
        let nr = end.div_ceil(BS) - start / BS;
        let mut tmp = vec![0u8; (nr * BS) as usize];
        let last = first + nr - 1;
        if !start.is_multiple_of(BS) {
            let b: &mut Block = (&mut tmp[..BLOCK_SIZE]).try_into().expect("one block");
            self.data.read_block(first, b)?;
        }
        if !end.is_multiple_of(BS) && (last != first || start.is_multiple_of(BS)) {
            let at = ((nr - 1) * BS) as usize;
            let b: &mut Block = (&mut tmp[at..at + BLOCK_SIZE])
                .try_into()
                .expect("one block");
            self.data.read_block(last, b)?;
        }
        let skip = (start % BS) as usize;
        tmp[skip..skip + data.len()].copy_from_slice(data);
        self.data.write_blocks(first, &blocks(&tmp))?;
        Ok(())
    }

    /// Fills new data block `dst`: `data` at `start`, the rest copied from
    /// `src` (breaking sharing) or zeroed, in chunks of at most `CHUNK`.
    fn fill_block(&self, dst: u64, src: Option<u64>, start: u64, data: &[u8]) -> Result<()> {
        let end = start + data.len() as u64;
        let mut off = 0;
        while off < self.block_bytes {
            let n = CHUNK.min(self.block_bytes - off);
            let at = self.base(dst) + off / BS;
            if start <= off && off + n <= end {
                let s = (off - start) as usize;
                self.data
                    .write_blocks(at, &blocks(&data[s..s + n as usize]))?;
            } else {
                let mut buf = vec![0u8; n as usize];
                if let Some(src) = src {
                    self.data
                        .read_blocks(self.base(src) + off / BS, &mut blocks_mut(&mut buf))?;
                }
                let (lo, hi) = (start.max(off), end.min(off + n));
                if lo < hi {
                    buf[(lo - off) as usize..(hi - off) as usize]
                        .copy_from_slice(&data[(lo - start) as usize..(hi - start) as usize]);
                }
                self.data.write_blocks(at, &blocks(&buf))?;
            }
            off += n;
        }
        Ok(())
    }

    /// Decides where a write of `vb` goes, allocating if it must.
    fn plan(&self, st: &mut State, dev: u64, vb: u64, only_if_mapped: bool) -> crate::Result<Plan> {
        match st.md.lookup(dev, vb)? {
            Some((d, time)) => {
                // dm-thin's test (snapshotted since the mapping was made),
                // and the count, which also sees the metadata snapshot's
                // copies of shadowed leaves.
                let details = st.md.device_details(dev)?;
                let shared = details.snapshotted_time > time || st.md.data_ref_count(d)? > 1;
                if !shared {
                    return Ok(Plan::InPlace(d));
                }
                let dst = st.md.alloc()?;
                st.dirty = true;
                Ok(Plan::New { dst, src: Some(d) })
            }
            None if only_if_mapped => Ok(Plan::Skip),
            None => {
                let dst = st.md.alloc()?;
                st.dirty = true;
                Ok(Plan::New { dst, src: None })
            }
        }
    }

    /// Writes `data` into `vb` at `start`, provisioning or breaking sharing
    /// as needed. The caller holds the gate shared.
    fn write_piece(
        &self,
        dev: u64,
        vb: u64,
        start: u64,
        data: &[u8],
        only_if_mapped: bool,
    ) -> Result<()> {
        let _cell = self.cells.exclusive(dev, vb);
        let plan = {
            let mut st = self.state();
            self.require_changeable(&st)?;
            let r = self.plan(&mut st, dev, vb, only_if_mapped);
            self.check_failed(&mut st, r)?
        };
        match plan {
            Plan::Skip => Ok(()),
            Plan::InPlace(d) => self.write_data(d, start, data),
            Plan::New { dst, src } => {
                // On failure dst stays allocated and unmapped: the next
                // commit releases it.
                self.fill_block(dst, src, start, data)?;
                let mut st = self.state();
                let r = st.md.insert(dev, vb, dst);
                self.check_failed(&mut st, r)?;
                st.dirty = true;
                Ok(())
            }
        }
    }

    /// Writes `data` to `dev` at `offset`; with `fua`, durable on return.
    pub fn write(&self, dev: u64, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.retry_after_commit(|| self.write_once(dev, offset, data))?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    fn write_once(&self, dev: u64, offset: u64, data: &[u8]) -> Result<()> {
        let _g = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.require_changeable(&self.state())?;
        let mut done = 0usize;
        for (vb, start, n) in self.pieces(offset, data.len() as u64)? {
            let piece = &data[done..done + n as usize];
            self.write_piece(dev, vb, start, piece, false)?;
            done += n as usize;
        }
        Ok(())
    }

    /// Runs `op`; when it runs out of data space while this transaction
    /// has freed blocks (reusable only once committed), commits and runs
    /// it once more (dm-thin commits before it declares the pool full).
    /// Doing a write or a zeroing twice gives the same result.
    fn retry_after_commit(&self, op: impl Fn() -> Result<()>) -> Result<()> {
        match op() {
            Err(PoolError::NoSpace) if self.state().dirty => {
                self.flush()?;
                op()
            }
            r => r,
        }
    }

    /// Writes zeros over `start..start + n` of `vb`, one chunk at a time;
    /// with `only_if_mapped` an unmapped block is left alone.
    fn zero_piece(
        &self,
        dev: u64,
        vb: u64,
        start: u64,
        n: u64,
        only_if_mapped: bool,
    ) -> Result<()> {
        let zeros = vec![0u8; CHUNK.min(n) as usize];
        let mut off = start;
        while off < start + n {
            let k = CHUNK.min(start + n - off);
            self.write_piece(dev, vb, off, &zeros[..k as usize], only_if_mapped)?;
            off += k;
        }
        Ok(())
    }

    /// TRIM: whole data blocks in the range are unmapped (their data
    /// blocks freed when nothing else maps them); the partial blocks at
    /// the ends, if mapped, are zeroed where space allows (a discard is
    /// advisory: running out of space there is not an error).
    pub fn discard(&self, dev: u64, offset: u64, len: u64) -> Result<()> {
        match self.retry_after_commit(|| self.zero_range(dev, offset, len, true, true)) {
            Err(PoolError::NoSpace) => Ok(()),
            r => r,
        }
    }

    /// WRITE_ZEROES: as `discard` when `may_unmap`, else zeros are written
    /// (and allocated) everywhere.
    pub fn write_zeroes(
        &self,
        dev: u64,
        offset: u64,
        len: u64,
        may_unmap: bool,
        fua: bool,
    ) -> Result<()> {
        self.retry_after_commit(|| self.zero_range(dev, offset, len, may_unmap, false))?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    fn zero_range(
        &self,
        dev: u64,
        offset: u64,
        len: u64,
        unmap: bool,
        only_if_mapped: bool,
    ) -> Result<()> {
        let _g = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.require_changeable(&self.state())?;
        let pieces = self.pieces(offset, len)?;
        let mut whole: Option<(u64, u64)> = None;
        for &(vb, start, n) in &pieces {
            if unmap && n == self.block_bytes {
                let w = whole.get_or_insert((vb, vb));
                w.1 = vb + 1;
            } else {
                self.zero_piece(dev, vb, start, n, only_if_mapped || unmap)?;
            }
        }
        if let Some((b, e)) = whole {
            self.unmap_range(dev, b, e)?;
        }
        Ok(())
    }

    /// Unmaps virtual blocks [b, e) of `dev`, skipping unmapped stretches.
    fn unmap_range(&self, dev: u64, b: u64, e: u64) -> Result<()> {
        let mut cur = b;
        while cur < e {
            let next = {
                let mut st = self.state();
                st.md.find_mapped_range(dev, cur, e)?
            };
            let Some(run) = next else { break };
            let rb = run.thin_begin.max(cur);
            let re = e.min(rb + DISCARD_STEP);
            let cells: Vec<_> = (rb..re).map(|vb| self.cells.exclusive(dev, vb)).collect();
            {
                let mut st = self.state();
                self.require_changeable(&st)?;
                let r = st.md.remove_range(dev, rb, re);
                if self.check_failed(&mut st, r)? > 0 {
                    st.dirty = true;
                }
            }
            drop(cells);
            cur = re;
        }
        Ok(())
    }
}
