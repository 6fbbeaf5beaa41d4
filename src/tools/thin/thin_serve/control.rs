//! The control socket: one command per line, one answer line each (`ok`,
//! a value, or `error: MESSAGE`). The pool messages as dm-thin takes them
//! (`create_thin`, `create_snap`, `delete`, `set_transaction_id`,
//! `reserve_metadata_snap`, `release_metadata_snap`), plus `flush`,
//! `status` and `shutdown` (flush, commit, exit).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use thin::pool::{Message, Pool};

/// Longest command line taken.
const MAX_LINE: u64 = 4096;

pub fn listen(listener: UnixListener, pool: Arc<Pool>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let pool = pool.clone();
        std::thread::spawn(move || {
            // A client that goes away mid-answer harms nothing.
            let _ = session(conn, &pool);
        });
    }
}

fn session(conn: UnixStream, pool: &Pool) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    loop {
        let mut line = String::new();
        let n = Read::by_ref(&mut input)
            .take(MAX_LINE)
            .read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 == MAX_LINE {
            writeln!(out, "error: line too long")?;
            return Ok(());
        }
        let cmd = line.trim();
        if cmd.is_empty() {
            continue;
        }
        let answer = match cmd {
            "flush" => pool.flush().map(|()| "ok".to_string()),
            "status" => Ok(format!(
                "data_block_bytes {} nr_data_blocks {} free_data_blocks {}",
                pool.block_bytes(),
                pool.nr_data_blocks(),
                pool.nr_free_data_blocks()
            )),
            "shutdown" => {
                let r = pool.close();
                let _ = writeln!(
                    out,
                    "{}",
                    r.as_ref()
                        .map_or_else(|e| format!("error: {e}"), |()| "ok".into())
                );
                std::process::exit(if r.is_ok() { 0 } else { 1 });
            }
            _ => Message::parse(cmd)
                .and_then(|m| pool.message(&m))
                .map(|()| "ok".to_string()),
        };
        match answer {
            Ok(a) => writeln!(out, "{a}")?,
            Err(e) => writeln!(out, "error: {e}")?,
        }
    }
}
