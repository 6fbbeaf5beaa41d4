//! The transmission phase: one request at a time, each answered with a
//! simple reply. A request the server can answer (bad range, too long,
//! unknown command, pool error) gets an error reply and the connection
//! goes on; one it cannot follow (bad magic, a closed stream) ends it.
//! Either way the pool is left as it was.

use super::exports::Export;
use super::proto::*;
use std::io::{self, Read, Write};
use thin::pool::PoolError;
use thin::ThinError;

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

/// Whether [offset, offset + len) lies inside the export.
fn in_range(e: &Export, offset: u64, len: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= e.size)
}

fn reply<W: Write>(w: &mut W, error: u32, handle: u64, data: &[u8]) -> io::Result<()> {
    w.write_all(&simple_reply(error, handle))?;
    if error == 0 && !data.is_empty() {
        w.write_all(data)?;
    }
    w.flush()
}

/// Reads and drops `len` bytes of a payload the server refuses.
fn skip<R: Read>(r: &mut R, len: u64) -> io::Result<()> {
    let got = io::copy(&mut r.take(len), &mut io::sink())?;
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Serves requests until the client disconnects.
pub fn serve<S: Read + Write>(s: &mut S, e: &Export, read_only: bool) -> io::Result<()> {
    let pool = e.dev.pool().clone();
    let dev = e.dev.id();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let r = Request::read(s)?;
        if r.magic != REQUEST_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad request magic",
            ));
        }
        let (off, len) = (r.offset, u64::from(r.length));
        let fua = r.flags & CMD_FLAG_FUA != 0;
        let error = match r.kind {
            CMD_READ => {
                if r.length > MAX_PAYLOAD || !in_range(e, off, len) {
                    EINVAL
                } else {
                    buf.resize(r.length as usize, 0);
                    match pool.read(dev, off, &mut buf) {
                        Ok(()) => {
                            reply(s, 0, r.handle, &buf)?;
                            continue;
                        }
                        Err(err) => errno(&err),
                    }
                }
            }
            CMD_WRITE => {
                if r.length > MAX_PAYLOAD {
                    skip(s, len)?;
                    EINVAL
                } else {
                    buf.resize(r.length as usize, 0);
                    s.read_exact(&mut buf)?;
                    if read_only {
                        EPERM
                    } else if !in_range(e, off, len) {
                        ENOSPC
                    } else {
                        pool.write(dev, off, &buf, fua)
                            .err()
                            .map_or(0, |e| errno(&e))
                    }
                }
            }
            CMD_FLUSH => pool.flush().err().map_or(0, |e| errno(&e)),
            CMD_TRIM | CMD_WRITE_ZEROES if read_only => EPERM,
            CMD_TRIM | CMD_WRITE_ZEROES if !in_range(e, off, len) => EINVAL,
            CMD_TRIM => {
                let r = pool.discard(dev, off, len);
                let r = r.and_then(|()| if fua { pool.flush() } else { Ok(()) });
                r.err().map_or(0, |e| errno(&e))
            }
            CMD_WRITE_ZEROES => {
                let may_unmap = r.flags & CMD_FLAG_NO_HOLE == 0;
                let r = pool.write_zeroes(dev, off, len, may_unmap, fua);
                r.err().map_or(0, |e| errno(&e))
            }
            CMD_DISC => {
                // As dm-thin commits when a device is closed.
                if !read_only {
                    let _ = pool.flush();
                }
                return Ok(());
            }
            _ => EINVAL,
        };
        reply(s, error, r.handle, &[])?;
        if buf.capacity() > MAX_PAYLOAD as usize / 4 {
            buf = Vec::new();
        }
    }
}
