//! Reading a pack: the calling thread reads the chunks in order, checking
//! each length against the bounds and the bytes left; workers inflate
//! them, decode each block, check that it lies on the device and verifies
//! as metadata, and write runs of consecutive blocks.

use super::decode::{decode_block, Reader};
use super::format::{
    parse_header, HeaderError, HEADER_SIZE, LEN_SIZE, MAGIC, MAX_CHUNK_LEN, MAX_INFLATED_CHUNK,
};
use super::{workers, PackError};
use crate::checksum::{identify, BlockKind};
use crate::io::BlockDevice;
use crate::progress::ProgressHook;
use crate::{Block, BLOCK_SIZE};
use flate2::{Decompress, FlushDecompress, Status};
use std::io::{ErrorKind, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

/// Consecutive blocks written with one call (1 MiB).
const RUN_MAX: usize = 256;

/// What a run unpacked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    pub nr_blocks: u64,
    /// Blocks written (one per entry of the pack).
    pub blocks: u64,
    pub chunks: u64,
}

/// Reads into `buf` until it is full or the input ends; the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, PackError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(PackError::io("reading the pack")(e)),
        }
    }
    Ok(got)
}

/// Reads and checks a pack's header: the number of blocks it unpacks to.
pub fn read_header(r: &mut dyn Read) -> Result<u64, PackError> {
    let mut h = [0u8; HEADER_SIZE];
    let got = read_full(r, &mut h)?;
    let magic_ok = got >= LEN_SIZE && h[..LEN_SIZE] == MAGIC.to_le_bytes();
    if got < HEADER_SIZE && !magic_ok {
        return Err(HeaderError::TooShort(got).into());
    }
    if got < HEADER_SIZE {
        return Err(PackError::Truncated {
            what: format!("inside its header ({got} of {HEADER_SIZE} bytes)"),
        });
    }
    Ok(parse_header(&h)?)
}

/// Inflates one zlib stream into `out`, refusing more than
/// [`MAX_INFLATED_CHUNK`] bytes.
fn inflate(src: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let mut z = Decompress::new(true);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= MAX_INFLATED_CHUNK {
                return Err(format!(
                    "it inflates to more than {MAX_INFLATED_CHUNK} bytes"
                ));
            }
            let more = out.capacity().max(1 << 16);
            out.reserve(more.min(MAX_INFLATED_CHUNK - out.len()));
        }
        let (was_in, was_out) = (z.total_in(), z.total_out());
        let rest = src.get(was_in as usize..).unwrap_or_default();
        let status = z
            .decompress_vec(rest, out, FlushDecompress::None)
            .map_err(|e| e.to_string())?;
        if status == Status::StreamEnd {
            return Ok(());
        }
        let stuck = z.total_in() == was_in && z.total_out() == was_out;
        if stuck && out.len() < out.capacity() {
            return Err("the stream ends before its end marker".into());
        }
    }
}

/// A run of consecutive decoded blocks, written when it breaks or fills.
struct Run<'a> {
    out: &'a dyn BlockDevice,
    first: u64,
    blocks: Vec<Block>,
}

impl Run<'_> {
    /// A zeroed block for `loc` at the end of the run.
    fn slot(&mut self, loc: u64) -> Result<&mut Block, PackError> {
        let n = self.blocks.len();
        if n == RUN_MAX || (n > 0 && self.first + n as u64 != loc) {
            self.write()?;
        }
        if self.blocks.is_empty() {
            self.first = loc;
        }
        self.blocks.push([0u8; BLOCK_SIZE]);
        let last = self.blocks.len() - 1;
        Ok(&mut self.blocks[last])
    }

    fn write(&mut self) -> Result<(), PackError> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Block> = self.blocks.iter().collect();
        self.out
            .write_blocks(self.first, &refs)
            .map_err(PackError::io("writing the metadata"))?;
        self.blocks.clear();
        Ok(())
    }
}

/// Unpacks one chunk (at byte `offset` of the pack): the blocks written.
fn unpack_chunk(
    offset: u64,
    bytes: &[u8],
    nr_blocks: u64,
    inflated: &mut Vec<u8>,
    run: &mut Run,
) -> Result<u64, PackError> {
    inflate(bytes, inflated).map_err(|reason| PackError::Zlib { offset, reason })?;
    let mut r = Reader::new(inflated);
    let mut n = 0;
    while !r.at_end() {
        let loc = r.u64().map_err(|source| PackError::Decode {
            offset,
            what: "an entry's block number".into(),
            source,
        })?;
        if loc >= nr_blocks {
            return Err(PackError::BlockOutOfRange {
                offset,
                block: loc,
                nr_blocks,
            });
        }
        let block = run.slot(loc)?;
        decode_block(&mut r, block).map_err(|source| PackError::Decode {
            offset,
            what: format!("block {loc}"),
            source,
        })?;
        if identify(block) == BlockKind::Unknown {
            return Err(PackError::NotMetadata { offset, block: loc });
        }
        n += 1;
    }
    run.write()?;
    Ok(n)
}

/// What the workers share.
struct Shared<'a> {
    out: &'a dyn BlockDevice,
    nr_blocks: u64,
    failed: AtomicBool,
    error: Mutex<Option<PackError>>,
    blocks: AtomicU64,
}

/// Chunks from the reading thread; the workers alone own the receiver, so
/// that when all have stopped the reader's next send fails instead of
/// waiting.
type Chunks = Arc<Mutex<Receiver<(u64, Vec<u8>)>>>;

fn worker(chunks: Chunks, s: &Shared) {
    let mut inflated = Vec::new();
    let mut run = Run {
        out: s.out,
        first: 0,
        blocks: Vec::with_capacity(RUN_MAX),
    };
    loop {
        let next = match chunks.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((offset, bytes)) = next else { return };
        // A panic (a bug) is an error like any other, so the reader stops.
        let done = catch_unwind(AssertUnwindSafe(|| {
            unpack_chunk(offset, &bytes, s.nr_blocks, &mut inflated, &mut run)
        }));
        match done.unwrap_or(Err(PackError::Worker)) {
            Ok(n) => {
                s.blocks.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                if let Ok(mut slot) = s.error.lock() {
                    slot.get_or_insert(e);
                }
                s.failed.store(true, Ordering::Release);
                return;
            }
        }
    }
}

/// Unpacks the chunks that follow the header (already read by
/// [`read_header`], which gave `nr_blocks`) into `output`, which holds at
/// least `nr_blocks` blocks; blocks the pack does not name are left as
/// they are (zero in a new file). `input_len`, the pack's size when known,
/// bounds each chunk's length. Progress counts bytes of the pack.
pub fn unpack(
    input: &mut dyn Read,
    input_len: Option<u64>,
    nr_blocks: u64,
    output: &dyn BlockDevice,
    progress: &dyn ProgressHook,
) -> Result<UnpackStats, PackError> {
    if output.nr_blocks() < nr_blocks {
        return Err(PackError::OutputTooSmall {
            have: output.nr_blocks(),
            need: nr_blocks,
        });
    }
    progress.set_total(input_len.unwrap_or(0));
    let n_workers = workers();
    let (tx, rx) = sync_channel::<(u64, Vec<u8>)>(n_workers);
    let rx: Chunks = Arc::new(Mutex::new(rx));
    let shared = Shared {
        out: output,
        nr_blocks,
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        blocks: AtomicU64::new(0),
    };
    let read = std::thread::scope(|sc| {
        for _ in 0..n_workers {
            let (chunks, s) = (rx.clone(), &shared);
            sc.spawn(move || worker(chunks, s));
        }
        drop(rx);
        // The sender goes with this closure, so the workers end with it.
        read_chunks(input, input_len, tx, &shared.failed, progress)
    });
    let worker_error = shared.error.lock().ok().and_then(|mut e| e.take());
    let chunks = match (worker_error, read) {
        (Some(e), _) | (None, Err(e)) => return Err(e),
        (None, Ok(chunks)) => chunks,
    };
    output
        .flush()
        .map_err(PackError::io("flushing the metadata"))?;
    Ok(UnpackStats {
        nr_blocks,
        blocks: shared.blocks.load(Ordering::Relaxed),
        chunks,
    })
}

/// Reads chunk after chunk and hands them to the workers: the chunks read.
fn read_chunks(
    input: &mut dyn Read,
    input_len: Option<u64>,
    tx: std::sync::mpsc::SyncSender<(u64, Vec<u8>)>,
    failed: &AtomicBool,
    progress: &dyn ProgressHook,
) -> Result<u64, PackError> {
    let mut offset = HEADER_SIZE as u64;
    let mut chunks = 0;
    while !failed.load(Ordering::Acquire) {
        let mut len = [0u8; LEN_SIZE];
        match read_full(input, &mut len)? {
            0 => break,
            LEN_SIZE => {}
            got => {
                return Err(PackError::Truncated {
                    what: format!(
                        "inside the length of the chunk at byte {offset} ({got} of 8 bytes)"
                    ),
                })
            }
        }
        let len = u64::from_le_bytes(len);
        let chunk_error = |why| PackError::ChunkLength { offset, len, why };
        if len > MAX_CHUNK_LEN {
            return Err(chunk_error("larger than any chunk a pack holds"));
        }
        let left = input_len.map(|total| total.saturating_sub(offset + LEN_SIZE as u64));
        let truncated = || PackError::Truncated {
            what: format!("inside the chunk at byte {offset} ({len} bytes declared)"),
        };
        if left.is_some_and(|left| len > left) {
            return Err(truncated());
        }
        let mut bytes = vec![0u8; len as usize];
        if read_full(input, &mut bytes)? < bytes.len() {
            return Err(truncated());
        }
        // A send fails only when every worker has stopped (on an error).
        if tx.send((offset, bytes)).is_err() {
            break;
        }
        offset += LEN_SIZE as u64 + len;
        chunks += 1;
        progress.add(LEN_SIZE as u64 + len);
    }
    Ok(chunks)
}
