//! The fixed newstyle handshake and option haggling: EXPORT_NAME, INFO,
//! GO, LIST and ABORT; every other option is answered "unsupported".
//! Anything malformed gets NBD_REP_ERR_INVALID, or ends the connection
//! where the stream can no longer be followed.

use super::exports::{Export, Exports};
use super::proto::*;
use std::io::{self, Read, Write};

/// What the handshake ended with.
pub enum Outcome {
    /// Transmission starts on this export.
    Serve(Export),
    /// The client left (ABORT, or an unknown EXPORT_NAME).
    Done,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

pub fn negotiate<S: Read + Write>(s: &mut S, ex: &Exports) -> io::Result<Outcome> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    s.flush()?;
    let client_flags = read_u32(s)?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(invalid("unknown client flags"));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    loop {
        if read_u64(s)? != IHAVEOPT {
            return Err(invalid("bad option magic"));
        }
        let opt = read_u32(s)?;
        let len = read_u32(s)?;
        if len > MAX_OPTION {
            return Err(invalid("option too long"));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data);
                // No way to say no here but closing.
                let Some(e) = ex.open(&name) else {
                    return Ok(Outcome::Done);
                };
                let mut b = Vec::with_capacity(134);
                b.extend_from_slice(&e.size.to_be_bytes());
                b.extend_from_slice(&transmission_flags(ex).to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&b)?;
                s.flush()?;
                return Ok(Outcome::Serve(e));
            }
            OPT_ABORT => {
                // The client may already be gone: its reply is a courtesy.
                let _ = option_reply(s, opt, REP_ACK, &[]);
                return Ok(Outcome::Done);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    option_reply(s, opt, REP_ERR_INVALID, b"LIST takes no data")?;
                    continue;
                }
                for name in ex.names() {
                    let mut d = (name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    option_reply(s, opt, REP_SERVER, &d)?;
                }
                option_reply(s, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some((name, requests)) = parse_info(&data) else {
                    option_reply(s, opt, REP_ERR_INVALID, b"malformed request")?;
                    continue;
                };
                let Some(e) = ex.open(&name) else {
                    option_reply(s, opt, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                };
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&e.size.to_be_bytes());
                info.extend_from_slice(&transmission_flags(ex).to_be_bytes());
                option_reply(s, opt, REP_INFO, &info)?;
                if requests.contains(&INFO_BLOCK_SIZE) {
                    let mut b = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                    let preferred = e.dev.pool().block_bytes().min(u64::from(MAX_PAYLOAD)) as u32;
                    for v in [1u32, preferred, MAX_PAYLOAD] {
                        b.extend_from_slice(&v.to_be_bytes());
                    }
                    option_reply(s, opt, REP_INFO, &b)?;
                }
                option_reply(s, opt, REP_ACK, &[])?;
                if opt == OPT_GO {
                    return Ok(Outcome::Serve(e));
                }
            }
            _ => option_reply(s, opt, REP_ERR_UNSUP, b"option not supported")?,
        }
    }
}

/// INFO/GO's data: u32 name length, name, u16 count, count u16 requests.
fn parse_info(d: &[u8]) -> Option<(String, Vec<u16>)> {
    let n = u32::from_be_bytes(d.get(..4)?.try_into().ok()?) as usize;
    let name = d.get(4..4usize.checked_add(n)?)?;
    let rest = &d[4 + n..];
    let count = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let reqs = rest.get(2..)?;
    if reqs.len() != 2 * count {
        return None;
    }
    let name = String::from_utf8(name.to_vec()).ok()?;
    let requests = reqs
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Some((name, requests))
}

pub fn transmission_flags(ex: &Exports) -> u16 {
    let mut f = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_CAN_MULTI_CONN;
    if ex.read_only {
        f |= TFLAG_READ_ONLY;
    } else {
        f |= TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES;
    }
    f
}
