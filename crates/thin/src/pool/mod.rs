//! A thin pool's data path, as dm-thin runs it, over a metadata device and
//! a data device: reads, writes (provisioning, breaking sharing), discards,
//! flushes and the pool messages. `pdt thin_serve` exports it over NBD.
//!
//! Concurrency, and why data I/O may run outside the metadata lock:
//! * `md` (one mutex) guards the metadata; it is held only for lookups and
//!   metadata changes, never across data I/O.
//! * `cells` hold a virtual block while a request works on it (shared for
//!   reads, exclusive for writes and discards). A data block being read or
//!   written in place is mapped by the block whose cell is held, and a
//!   mapping changes only under that cell or by deleting the device, which
//!   is refused while the device is open: so its count stays >= 1 and it is
//!   not reallocated under the I/O.
//! * `gate`: every request that may change data or mappings holds it
//!   shared; a flush, a commit and every pool message hold it exclusively.
//!   So a commit never sees a block allocated whose data is still being
//!   written (commit releases unmapped allocations), and `create_snap` sees
//!   no write of the origin in flight (the origin is quiesced).
//! * Data before metadata: every commit is preceded by a flush of the data
//!   device, so a committed mapping never points at data not on disk. A
//!   freed data block is not reused before the commit that frees it (the
//!   data space map allocates blocks free in the committed state too), so
//!   a crash never shows a committed mapping over another block's data.

mod cells;
mod data;
mod messages;

use crate::error::ThinError;
use crate::ThinMetadata;
use cells::Cells;
use pdata::io::BlockDevice;
use pdata::live::LiveMetadata;
use pdata::BLOCK_SIZE;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub use messages::Message;

/// Bytes per sector, the unit of the superblock's data block size.
const SECTOR_BYTES: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("out of data space")]
    NoSpace,
    #[error("the pool is read-only")]
    ReadOnly,
    #[error("thin device {0} is open")]
    Busy(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("data device: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Metadata(#[from] ThinError),
    #[error("the pool failed and serves reads only: {0}")]
    Failed(String),
}

pub type Result<T, E = PoolError> = std::result::Result<T, E>;

struct State {
    md: ThinMetadata,
    /// Metadata changed since the last commit.
    dirty: bool,
    /// Set when a metadata operation failed part-way: the transaction was
    /// aborted and the pool refuses changes from then on (dm-thin's
    /// read-only mode).
    failed: Option<String>,
}

pub struct Pool {
    state: Mutex<State>,
    data: Arc<dyn BlockDevice>,
    cells: Cells,
    gate: RwLock<()>,
    /// Open handles per device (deletion is refused while a device is open).
    open: Mutex<HashMap<u64, u32>>,
    writable: bool,
    /// Data block size in bytes, a multiple of 4 KiB.
    block_bytes: u64,
    nr_data_blocks: u64,
    /// The torture harness's mutation: commits without flushing the data
    /// device first (the bug the data-before-metadata rule prevents).
    skip_data_flush: AtomicBool,
}

/// A device held open: it cannot be deleted while this lives.
pub struct OpenDevice {
    pool: Arc<Pool>,
    dev: u64,
}

impl Pool {
    /// Opens the pool whose metadata is on `md_dev` and data on `data`.
    pub fn open(
        md_dev: Arc<dyn BlockDevice>,
        data: Arc<dyn BlockDevice>,
        writable: bool,
    ) -> Result<Pool> {
        let md = ThinMetadata::open(md_dev, writable)?;
        if md.needs_check() && writable {
            return Err(PoolError::Invalid(
                "the metadata needs a check (NEEDS_CHECK is set): run thin_check first".into(),
            ));
        }
        if md.metadata_snap().is_err() {
            return Err(PoolError::Invalid(
                "the metadata snapshot cannot be read".into(),
            ));
        }
        let block_bytes = u64::from(md.data_block_size()) * SECTOR_BYTES;
        if block_bytes == 0 || !block_bytes.is_multiple_of(BLOCK_SIZE as u64) {
            return Err(PoolError::Invalid(format!(
                "data block size of {block_bytes} bytes is not a multiple of 4 KiB"
            )));
        }
        let nr_data_blocks = md.nr_data_blocks();
        let need = nr_data_blocks
            .checked_mul(block_bytes)
            .ok_or_else(|| PoolError::Invalid("the pool's size overflows 64 bits".into()))?;
        let have = data.nr_blocks() * BLOCK_SIZE as u64;
        if have < need {
            return Err(PoolError::Invalid(format!(
                "the data device holds {have} bytes, less than the pool's {need} ({nr_data_blocks} blocks of {block_bytes} bytes)"
            )));
        }
        Ok(Pool {
            state: Mutex::new(State {
                md,
                dirty: false,
                failed: None,
            }),
            data,
            cells: Cells::default(),
            gate: RwLock::new(()),
            open: Mutex::new(HashMap::new()),
            writable,
            block_bytes,
            nr_data_blocks,
            skip_data_flush: AtomicBool::new(false),
        })
    }

    /// Switches the torture harness's mutation on: commits no longer flush
    /// the data device first. For the harness's self-test only.
    #[doc(hidden)]
    pub fn enable_mutation(&self) {
        self.skip_data_flush.store(true, Ordering::Relaxed);
    }

    /// Flushes the data device (unless the mutation is on).
    fn flush_data(&self) -> Result<()> {
        if !self.skip_data_flush.load(Ordering::Relaxed) {
            self.data.flush()?;
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn block_bytes(&self) -> u64 {
        self.block_bytes
    }

    pub fn nr_data_blocks(&self) -> u64 {
        self.nr_data_blocks
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    pub fn nr_free_data_blocks(&self) -> u64 {
        self.state().md.nr_free_data_blocks()
    }

    /// Ids of every thin device.
    pub fn devices(&self) -> Result<Vec<u64>> {
        Ok(self.state().md.devices()?)
    }

    /// Holds `dev` open (it must exist).
    pub fn open_device(self: &Arc<Self>, dev: u64) -> Result<OpenDevice> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        self.state().md.device_details(dev)?;
        *open.entry(dev).or_insert(0) += 1;
        Ok(OpenDevice {
            pool: self.clone(),
            dev,
        })
    }

    /// Makes every write completed before the call durable: the data device
    /// is flushed first, then the metadata committed.
    pub fn flush(&self) -> Result<()> {
        let _quiet = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut st = self.state();
        self.commit_locked(&mut st)
    }

    /// Data flush, then (if the metadata changed) the commit. The caller
    /// holds the gate exclusively.
    fn commit_locked(&self, st: &mut State) -> Result<()> {
        // A failed pool cannot promise anything durable any more.
        if let Some(why) = &st.failed {
            return Err(PoolError::Failed(why.clone()));
        }
        if !st.dirty {
            let r = self.flush_data();
            if let Err(e) = &r {
                self.fail_on_flush(st, e);
            }
            return r;
        }
        // The data flush runs while the metadata blocks are written and
        // flushed; the superblock waits for both.
        let r = std::thread::scope(|sc| {
            let data = sc.spawn(|| self.flush_data());
            st.md.commit_then(|| match data.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ThinError::Invalid(format!("the data flush failed: {e}"))),
                Err(_) => Err(ThinError::Invalid("the data flush panicked".into())),
            })
        });
        self.check_failed(st, r)?;
        st.dirty = false;
        Ok(())
    }

    /// A failed data flush leaves every write since the last good one
    /// unknown, and a later flush that succeeds would not bring them back:
    /// the pool fails (as after a failed commit), never to claim them durable.
    fn fail_on_flush(&self, st: &mut State, e: &PoolError) {
        if st.failed.is_none() && self.writable {
            let _ = st.md.abort();
            st.dirty = false;
            st.failed = Some(format!("data device flush failed: {e}"));
        }
    }

    /// Passes `r` on; when it failed and left the transaction dead, aborts
    /// it and marks the pool failed (reads go on from the last commit).
    fn check_failed<T>(&self, st: &mut State, r: crate::Result<T>) -> Result<T> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                if st.md.transaction_manager().check_alive().is_err() {
                    let why = e.to_string();
                    // Whatever the abort gives, the pool stays failed.
                    let _ = st.md.abort();
                    st.dirty = false;
                    st.failed = Some(why.clone());
                    return Err(PoolError::Failed(why));
                }
                Err(match e {
                    ThinError::Pdata(pdata::Error::NoSpace("data")) => PoolError::NoSpace,
                    e => e.into(),
                })
            }
        }
    }

    /// Refuses changes to a read-only or failed pool.
    fn require_changeable(&self, st: &State) -> Result<()> {
        if !self.writable {
            return Err(PoolError::ReadOnly);
        }
        match &st.failed {
            Some(why) => Err(PoolError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Flushes and commits what is left (a clean shutdown).
    pub fn close(&self) -> Result<()> {
        if self.writable {
            self.flush()?;
        }
        Ok(())
    }
}

impl OpenDevice {
    pub fn id(&self) -> u64 {
        self.dev
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        let mut open = self.pool.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.dev) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.dev);
            }
        }
    }
}
