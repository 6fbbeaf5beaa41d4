//! A small NBD client for the thin_serve tests (fixed newstyle, NBD_OPT_GO,
//! simple replies), and the server under test run as a child process.

use super::tool::PDT;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const READ: u16 = 0;
pub const WRITE: u16 = 1;
pub const DISC: u16 = 2;
pub const FLUSH: u16 = 3;
pub const TRIM: u16 = 4;
pub const WRITE_ZEROES: u16 = 6;
pub const FLAG_FUA: u16 = 1;
pub const FLAG_NO_HOLE: u16 = 2;
pub const EPERM: u32 = 1;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;

/// Connects to a unix socket, waiting for the server to create it.
pub fn connect_unix(path: &Path) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(60))).ok();
                return s;
            }
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                panic!("cannot connect to {}: {e}", path.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `pdt thin_serve` on a socket and a control socket in `dir`.
pub struct Server {
    pub child: Child,
    pub socket: PathBuf,
    pub control: PathBuf,
}

impl Server {
    pub fn start(dir: &Path, meta: &Path, data: &Path, extra: &[&str]) -> Server {
        let socket = dir.join("nbd.sock");
        let control = dir.join("control.sock");
        let child = Command::new(PDT)
            .arg("thin_serve")
            .args(["-q", "--metadata-dev"])
            .arg(meta)
            .arg("--data-dev")
            .arg(data)
            .arg("--socket")
            .arg(&socket)
            .arg("--control")
            .arg(&control)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start thin_serve");
        // Stale sockets of an earlier run are replaced: wait for both anew.
        let s = Server {
            child,
            socket,
            control,
        };
        drop(s.control_conn());
        s
    }

    fn control_conn(&self) -> UnixStream {
        connect_unix(&self.control)
    }

    /// Sends one control command; its answer line.
    pub fn control(&self, cmd: &str) -> String {
        let mut c = self.control_conn();
        writeln!(c, "{cmd}").expect("send a control command");
        let mut line = String::new();
        BufReader::new(c)
            .read_line(&mut line)
            .expect("control answer");
        line.trim().to_string()
    }

    pub fn client(&self, export: &str) -> Client {
        Client::go(connect_unix(&self.socket), export).expect("NBD handshake")
    }

    /// `shutdown` on the control socket: flush, commit, exit 0.
    pub fn shutdown(mut self) {
        let _ = self.control("shutdown");
        let st = self.child.wait().expect("wait for thin_serve");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(st.success(), "thin_serve failed: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    pub s: UnixStream,
    pub size: u64,
    pub flags: u16,
    handle: u64,
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

impl Client {
    /// The handshake: NBD_OPT_GO on `export`. Err with the reply type when
    /// the server refuses the export.
    pub fn go(mut s: UnixStream, export: &str) -> Result<Client, u32> {
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello).expect("server hello");
        assert_eq!(&hello[..8], b"NBDMAGIC");
        assert_eq!(&hello[8..16], b"IHAVEOPT");
        s.write_all(&3u32.to_be_bytes()).expect("client flags");
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        send_option(&mut s, 7, &data);
        let (mut size, mut flags) = (0, 0);
        loop {
            let (kind, d) = option_reply(&mut s);
            match kind {
                1 => break,
                3 if d.len() >= 12 && d[..2] == [0, 0] => {
                    size = be64(&d[2..]);
                    flags = u16::from_be_bytes([d[10], d[11]]);
                }
                3 => {}
                e => return Err(e),
            }
        }
        Ok(Client {
            s,
            size,
            flags,
            handle: 0,
        })
    }

    /// Sends a request (with its payload); the reply's error and data.
    pub fn request(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> (u32, Vec<u8>) {
        self.handle += 1;
        self.send_header(kind, flags, offset, len);
        self.s.write_all(payload).expect("send payload");
        if kind == DISC {
            return (0, Vec::new());
        }
        let mut r = [0u8; 16];
        self.s.read_exact(&mut r).expect("reply header");
        assert_eq!(r[..4], 0x6744_6698u32.to_be_bytes(), "reply magic");
        assert_eq!(be64(&r[8..]), self.handle, "reply handle");
        let err = u32::from_be_bytes(r[4..8].try_into().expect("4 bytes"));
        let mut data = Vec::new();
        if kind == READ && err == 0 {
            data.resize(len as usize, 0);
            self.s.read_exact(&mut data).expect("read data");
        }
        (err, data)
    }

    pub fn send_header(&mut self, kind: u16, flags: u16, offset: u64, len: u32) {
        let mut h = Vec::with_capacity(28);
        h.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        h.extend_from_slice(&flags.to_be_bytes());
        h.extend_from_slice(&kind.to_be_bytes());
        h.extend_from_slice(&self.handle.to_be_bytes());
        h.extend_from_slice(&offset.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        self.s.write_all(&h).expect("send request");
    }

    pub fn read(&mut self, offset: u64, len: u32) -> Vec<u8> {
        let (e, d) = self.request(READ, 0, offset, len, &[]);
        assert_eq!(e, 0, "read {offset}+{len}");
        d
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> u32 {
        self.request(WRITE, 0, offset, data.len() as u32, data).0
    }

    pub fn flush(&mut self) -> u32 {
        self.request(FLUSH, 0, 0, 0, &[]).0
    }

    pub fn trim(&mut self, offset: u64, len: u32) -> u32 {
        self.request(TRIM, 0, offset, len, &[]).0
    }

    pub fn disconnect(mut self) {
        self.request(DISC, 0, 0, 0, &[]);
        // The server closes after DISC (and its flush).
        let mut b = [0u8; 1];
        let _ = self.s.read(&mut b);
    }
}

pub fn send_option(s: &mut UnixStream, opt: u32, data: &[u8]) {
    let mut b = 0x4948_4156_454f_5054u64.to_be_bytes().to_vec();
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b).expect("send option");
}

/// One option reply: (type, data).
pub fn option_reply(s: &mut UnixStream) -> (u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).expect("option reply");
    assert_eq!(be64(&h), 0x0003_e889_0455_65a9, "option reply magic");
    let kind = u32::from_be_bytes(h[12..16].try_into().expect("4 bytes"));
    let len = u32::from_be_bytes(h[16..20].try_into().expect("4 bytes"));
    let mut d = vec![0u8; len as usize];
    s.read_exact(&mut d).expect("option reply data");
    (kind, d)
}

/// Whether the server closed the connection (EOF or reset).
pub fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

pub fn io_error_is_eof(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}

/// One random request on a volume whose bytes `m` models: a write (byte
/// granular one time in four), a read checked against the model, a trim,
/// write-zeroes (with NO_HOLE or FUA) or a flush; writes up to 3 data
/// blocks of 64 KiB.
pub fn random_request(c: &mut Client, m: &mut [u8], rng: &mut super::rng::XorShift, what: &str) {
    const SPAN: u64 = (3 * 64) << 10;
    let vol = m.len() as u64;
    let unit = if rng.below(4) == 0 { 1 } else { 512 };
    let off = rng.below(vol / unit) * unit;
    let len = ((1 + rng.below(SPAN / unit)) * unit).min(vol - off);
    let r = off as usize..(off + len) as usize;
    match rng.below(10) {
        0..=3 => {
            let byte = rng.next() as u8;
            let buf: Vec<u8> = (0..len).map(|i| byte ^ (i as u8)).collect();
            assert_eq!(c.write(off, &buf), 0, "{what}: write {off}+{len}");
            m[r].copy_from_slice(&buf);
        }
        4..=6 => assert!(c.read(off, len as u32) == m[r], "{what}: read {off}+{len}"),
        7 => {
            assert_eq!(c.trim(off, len as u32), 0, "{what}: trim");
            m[r].fill(0);
        }
        8 => {
            let flags = if rng.below(2) == 0 {
                FLAG_NO_HOLE
            } else {
                FLAG_FUA
            };
            let e = c.request(WRITE_ZEROES, flags, off, len as u32, &[]).0;
            assert_eq!(e, 0, "{what}: write zeroes");
            m[r].fill(0);
        }
        _ => assert_eq!(c.flush(), 0, "{what}: flush"),
    }
}
