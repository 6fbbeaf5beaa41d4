//! `thin_serve`: serves a pool's thin devices over NBD, with dm-thin's
//! semantics (the data path is `thin::pool`). This file reads the command
//! line, opens the devices exclusively, and runs the listeners: one thread
//! per client connection, and the control socket's.

mod control;
mod exports;
mod handshake;
mod proto;
mod transmission;

use crate::tools::cli::{
    exit_status, open_held, same_file, GetOpt, HasArg, Opt, DATA_DEV, HELP, METADATA_DEV, QUIET,
    VERSION,
};
use anyhow::{bail, Context, Result};
use exports::Exports;
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use thin::pool::Pool;

const USAGE: &str =
    "Usage: thin_serve [options] --metadata-dev {device|file} --data-dev {device|file}
                  {--socket PATH | --listen ADDR:PORT}
Serves the pool's thin devices over NBD (export name: the device id; \"\" is
the lowest). dm-thin keeps no volume size in its metadata: each export is
--size bytes (K/M/G/T suffixes; ID=SIZE for one device), by default the
pool's data size.
Options:
  {-h|--help}
  {-q|--quiet}
  {-V|--version}
  --socket PATH          listen on a unix socket
  --listen ADDR:PORT     listen on TCP (loopback only without --allow-remote)
  --allow-remote         allow a non-loopback --listen address
  --control PATH         pool messages, one per line, on this unix socket
  --read-only            serve reads only
  --dev-id N             export only this device (repeatable)
  --size [ID=]SIZE       export size (repeatable)
";

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    METADATA_DEV,
    DATA_DEV,
    Opt::long("socket", HasArg::Required, "socket"),
    Opt::long("listen", HasArg::Required, "listen"),
    Opt::long("allow-remote", HasArg::No, "allow-remote"),
    Opt::long("control", HasArg::Required, "control"),
    Opt::long("read-only", HasArg::No, "read-only"),
    Opt::long("dev-id", HasArg::Required, "dev-id"),
    Opt::long("size", HasArg::Required, "size"),
];

#[derive(Default)]
struct Options {
    metadata: Option<PathBuf>,
    data: Option<PathBuf>,
    socket: Option<PathBuf>,
    listen: Option<String>,
    allow_remote: bool,
    control: Option<PathBuf>,
    read_only: bool,
    quiet: bool,
    dev_ids: Vec<u64>,
    sizes: BTreeMap<u64, u64>,
    default_size: Option<u64>,
}

pub fn run(args: &[String]) -> ExitCode {
    let mut o = Options::default();
    let mut g = GetOpt::new("thin_serve", OPTS, args).with_usage(USAGE);
    loop {
        let v = match g.next_opt() {
            Err(status) => return status,
            Ok(None) => break,
            Ok(Some((id, v))) => (id, v.unwrap_or_default()),
        };
        let bad = |msg: String| g.usage_error(msg);
        match v.0 {
            "quiet" => o.quiet = true,
            "metadata" => o.metadata = Some(v.1.into()),
            "data" => o.data = Some(v.1.into()),
            "socket" => o.socket = Some(v.1.into()),
            "listen" => o.listen = Some(v.1),
            "allow-remote" => o.allow_remote = true,
            "control" => o.control = Some(v.1.into()),
            "read-only" => o.read_only = true,
            "dev-id" => match v.1.parse() {
                Ok(id) => o.dev_ids.push(id),
                Err(_) => return bad(format!("--dev-id: '{}' is not a device id", v.1)),
            },
            _ => match parse_size_arg(&v.1) {
                Some((Some(id), size)) => {
                    o.sizes.insert(id, size);
                }
                Some((None, size)) => o.default_size = Some(size),
                None => return bad(format!("--size: '{}' is not [ID=]SIZE", v.1)),
            },
        }
    }
    if o.metadata.is_none() || o.data.is_none() {
        return g.usage_error("--metadata-dev and --data-dev are both needed");
    }
    if o.socket.is_none() && o.listen.is_none() {
        return g.usage_error("--socket or --listen is needed");
    }
    exit_status("thin_serve: ", serve(&o).map(|()| true))
}

/// `SIZE` or `ID=SIZE`; SIZE in bytes with an optional K, M, G or T
/// (powers of 1024).
fn parse_size_arg(s: &str) -> Option<(Option<u64>, u64)> {
    let (id, size) = match s.split_once('=') {
        Some((id, size)) => (Some(id.parse().ok()?), size),
        None => (None, s),
    };
    let (digits, shift) = match size.chars().last()?.to_ascii_uppercase() {
        'K' => (&size[..size.len() - 1], 10),
        'M' => (&size[..size.len() - 1], 20),
        'G' => (&size[..size.len() - 1], 30),
        'T' => (&size[..size.len() - 1], 40),
        _ => (size, 0),
    };
    let n: u64 = digits.parse().ok()?;
    Some((id, n.checked_mul(1u64 << shift)?))
}

/// Binds a unix socket at `path`, replacing a stale socket (never a file
/// of another kind).
fn bind_unix(path: &Path) -> Result<UnixListener> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the old socket {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))
}

/// SIGINT, SIGTERM and SIGHUP end the server cleanly: blocked in every
/// thread, awaited by one that flushes and commits the pool, then exits.
fn handle_signals(pool: Arc<Pool>) {
    // SAFETY: sigset manipulation and sigwait on a local set; called before
    // any other thread starts, so every later thread inherits the mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            let ok = pool.close().is_ok();
            std::process::exit(if ok { 0 } else { 1 });
        });
    }
}

fn serve(o: &Options) -> Result<()> {
    let (Some(meta), Some(data)) = (&o.metadata, &o.data) else {
        bail!("--metadata-dev and --data-dev are both needed");
    };
    if same_file(meta, data) {
        bail!("the metadata and data devices are the same file");
    }
    let writable = !o.read_only;
    let (md_dev, _md_lock) = open_held(meta, writable)?;
    let (data_dev, _data_lock) = open_held(data, writable)?;
    let pool = Arc::new(Pool::open(md_dev, data_dev, writable).context("cannot open the pool")?);
    let default_size = match o.default_size {
        Some(s) => s,
        None => pool.nr_data_blocks() * pool.block_bytes(),
    };
    let exports = Arc::new(Exports {
        pool: pool.clone(),
        only: (!o.dev_ids.is_empty()).then(|| o.dev_ids.clone()),
        sizes: o.sizes.clone(),
        default_size,
        read_only: o.read_only,
    });
    handle_signals(pool.clone());
    let mut threads = Vec::new();
    if let Some(path) = &o.control {
        let l = bind_unix(path)?;
        let pool = pool.clone();
        threads.push(std::thread::spawn(move || control::listen(l, pool)));
    }
    if let Some(path) = &o.socket {
        let l = bind_unix(path)?;
        let ex = exports.clone();
        threads.push(std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let ex = ex.clone();
                let w = conn.try_clone();
                std::thread::spawn(move || {
                    if let Ok(w) = w {
                        client(conn, w, &ex);
                    }
                });
            }
        }));
    }
    if let Some(addr) = &o.listen {
        let a: SocketAddr = addr
            .parse()
            .with_context(|| format!("--listen: '{addr}' is not ADDR:PORT"))?;
        if !a.ip().is_loopback() && !o.allow_remote {
            bail!(
                "--listen {addr}: not a loopback address (add --allow-remote to serve the network)"
            );
        }
        let l = TcpListener::bind(a).with_context(|| format!("cannot listen on {addr}"))?;
        let ex = exports.clone();
        threads.push(std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let _ = conn.set_nodelay(true);
                let ex = ex.clone();
                let w = conn.try_clone();
                std::thread::spawn(move || {
                    if let Ok(w) = w {
                        client(conn, w, &ex);
                    }
                });
            }
        }));
    }
    if !o.quiet {
        errln!("thin_serve: serving");
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// A connection's two directions, buffered.
struct Conn<R: Read, W: Write> {
    r: BufReader<R>,
    w: BufWriter<W>,
}

impl<R: Read, W: Write> Read for Conn<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.r.read(buf)
    }
}

impl<R: Read, W: Write> Write for Conn<R, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// One client, from the handshake to the end. Whatever the client does,
/// only its own connection ends.
fn client<R: Read, W: Write + Send>(r: R, w: W, ex: &Exports) {
    let mut c = Conn {
        r: BufReader::with_capacity(256 << 10, r),
        w: BufWriter::with_capacity(256 << 10, w),
    };
    if let Ok(handshake::Outcome::Serve(e)) = handshake::negotiate(&mut c, ex) {
        let Conn { mut r, w } = c;
        let _ = transmission::serve(&mut r, w, &e, ex.read_only);
    }
}
