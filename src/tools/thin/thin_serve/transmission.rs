//! The transmission phase. The connection's thread reads requests (and
//! write payloads) in order and hands them to a few workers, which run them
//! on the pool and send simple replies, in whatever order they finish (as
//! NBD allows): a slow flush or a write that allocates does not hold up the
//! reads queued behind it. A read that can be answered at once (its data
//! in the page cache, nothing holding its block) the connection's thread
//! answers itself: no hand-off, no thread woken, and its replies go out
//! together when it has read every request the client sent. A request the server can answer (bad range, too
//! long, unknown command, pool error) gets an error reply and the
//! connection goes on; one it cannot follow (bad magic, a closed stream)
//! ends it once the requests already taken are done. Either way the pool
//! is left as it was.

use super::exports::Export;
use super::proto::*;
use std::io::{self, BufReader, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use thin::pool::{Pool, PoolError};
use thin::ThinError;

/// Requests of one connection run at once.
const WORKERS: usize = 4;

/// A request taken off the wire, with its payload.
struct Job {
    r: Request,
    payload: Vec<u8>,
}

/// The NBD error for a pool error.
fn errno(e: &PoolError) -> u32 {
    match e {
        PoolError::NoSpace => ENOSPC,
        PoolError::Metadata(ThinError::Pdata(pdata::Error::NoSpace(_))) => ENOSPC,
        PoolError::ReadOnly => EPERM,
        PoolError::Invalid(_) => EINVAL,
        _ => EIO,
    }
}

fn code(r: thin::pool::Result<()>) -> u32 {
    r.err().map_or(0, |e| errno(&e))
}

/// Whether [offset, offset + len) lies inside the export.
fn in_range(e: &Export, offset: u64, len: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= e.size)
}

/// Sends one reply (header, and a read's data) whole, under the lock.
fn reply<W: Write>(w: &Mutex<W>, error: u32, handle: u64, data: &[u8]) -> io::Result<()> {
    let mut w = lock(w);
    queue_reply(&mut *w, error, handle, data)?;
    w.flush()
}

fn lock<W>(w: &Mutex<W>) -> std::sync::MutexGuard<'_, W> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes one reply into the (buffered) stream; the caller flushes.
fn queue_reply(w: &mut impl Write, error: u32, handle: u64, data: &[u8]) -> io::Result<()> {
    w.write_all(&simple_reply(error, handle))?;
    if error == 0 && !data.is_empty() {
        w.write_all(data)?;
    }
    Ok(())
}

/// Reads and drops `len` bytes of a payload the server refuses.
fn skip<R: Read>(r: &mut R, len: u64) -> io::Result<()> {
    let got = io::copy(&mut r.take(len), &mut io::sink())?;
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Runs one request the reader accepted; its reply.
fn run(pool: &Pool, e: &Export, job: Job) -> (u32, Vec<u8>) {
    let (r, dev) = (&job.r, e.dev.id());
    let (off, len) = (r.offset, u64::from(r.length));
    let fua = r.flags & CMD_FLAG_FUA != 0;
    match r.kind {
        CMD_READ => {
            let mut buf = vec![0u8; r.length as usize];
            match pool.read(dev, off, &mut buf) {
                Ok(()) => (0, buf),
                Err(err) => (errno(&err), Vec::new()),
            }
        }
        CMD_WRITE => (code(pool.write(dev, off, &job.payload, fua)), Vec::new()),
        CMD_FLUSH => (code(pool.flush()), Vec::new()),
        CMD_TRIM => {
            let r = pool.discard(dev, off, len);
            (
                code(r.and_then(|()| if fua { pool.flush() } else { Ok(()) })),
                Vec::new(),
            )
        }
        _ => {
            let may_unmap = r.flags & CMD_FLAG_NO_HOLE == 0;
            (
                code(pool.write_zeroes(dev, off, len, may_unmap, fua)),
                Vec::new(),
            )
        }
    }
}

fn worker<W: Write>(pool: &Pool, e: &Export, jobs: &Mutex<Receiver<Job>>, w: &Mutex<W>) {
    loop {
        let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(job) = job else { return };
        let handle = job.r.handle;
        let (error, data) = run(pool, e, job);
        // A client gone away shows in the reader too.
        let _ = reply(w, error, handle, &data);
    }
}

/// Serves requests until the client disconnects.
pub fn serve<R: Read, W: Write + Send>(
    r: &mut BufReader<R>,
    w: W,
    e: &Export,
    read_only: bool,
) -> io::Result<()> {
    let pool = e.dev.pool().clone();
    let w = Mutex::new(w);
    let (tx, rx) = sync_channel::<Job>(WORKERS);
    let rx = Mutex::new(rx);
    std::thread::scope(|sc| {
        for _ in 0..WORKERS {
            sc.spawn(|| worker(&pool, e, &rx, &w));
        }
        let end = read_requests(r, &w, e, read_only, |job| {
            // The workers outlive the reader, so the channel stays open.
            let _ = tx.send(job);
        });
        drop(tx);
        end
    })?;
    // DISC (or the end of the stream): the requests taken are done; commit
    // as dm-thin does when a device is closed.
    if !read_only {
        let _ = pool.flush();
    }
    Ok(())
}

/// Bytes of a request on the wire.
const REQUEST_BYTES: usize = 28;

/// Reads requests in order, answering at once those it refuses and the
/// reads it can do without waiting, and passing on the others, until DISC
/// (Ok) or a stream it cannot follow. Its own replies are flushed before
/// it may wait for the client.
fn read_requests<R: Read, W: Write>(
    s: &mut BufReader<R>,
    w: &Mutex<W>,
    e: &Export,
    read_only: bool,
    mut pass: impl FnMut(Job),
) -> io::Result<()> {
    let pool = e.dev.pool();
    let mut buf = Vec::new();
    let mut unflushed = false;
    let flush_before_wait = |s: &BufReader<R>, need: usize, unflushed: &mut bool| {
        if *unflushed && s.buffer().len() < need {
            *unflushed = false;
            return lock(w).flush();
        }
        Ok(())
    };
    loop {
        flush_before_wait(s, REQUEST_BYTES, &mut unflushed)?;
        let r = Request::read(s)?;
        if r.magic != REQUEST_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad request magic",
            ));
        }
        let (off, len) = (r.offset, u64::from(r.length));
        let refused = match r.kind {
            CMD_DISC => return Ok(()),
            CMD_READ if r.length > MAX_PAYLOAD || !in_range(e, off, len) => Some(EINVAL),
            CMD_READ => {
                buf.resize(r.length as usize, 0);
                match pool.read_now(e.dev.id(), off, &mut buf) {
                    Ok(true) => {
                        queue_reply(&mut *lock(w), 0, r.handle, &buf)?;
                        unflushed = true;
                        continue;
                    }
                    // A pool error: the worker meets it again and reports it.
                    Ok(false) | Err(_) => None,
                }
            }
            CMD_FLUSH => None,
            CMD_WRITE => {
                flush_before_wait(s, len as usize, &mut unflushed)?;
                if r.length > MAX_PAYLOAD {
                    skip(s, len)?;
                    Some(EINVAL)
                } else {
                    let mut payload = vec![0u8; r.length as usize];
                    s.read_exact(&mut payload)?;
                    if read_only {
                        Some(EPERM)
                    } else if !in_range(e, off, len) {
                        Some(ENOSPC)
                    } else {
                        pass(Job { r, payload });
                        continue;
                    }
                }
            }
            CMD_TRIM | CMD_WRITE_ZEROES if read_only => Some(EPERM),
            CMD_TRIM | CMD_WRITE_ZEROES if !in_range(e, off, len) => Some(EINVAL),
            CMD_TRIM | CMD_WRITE_ZEROES => None,
            _ => Some(EINVAL),
        };
        match refused {
            Some(error) => {
                queue_reply(&mut *lock(w), error, r.handle, &[])?;
                unflushed = true;
            }
            None => pass(Job {
                r,
                payload: Vec::new(),
            }),
        }
    }
}
