//! `pdt thin_serve`: dm-thin's semantics over NBD, against a model (random
//! reads, writes, trims and zeroes on two volumes and a snapshot, across a
//! restart of the server), the result checked by Debian's thin_check;
//! running out of data space; bad clients; exclusive opening; qemu's own
//! NBD client.

mod common;

use common::nbd::*;
use common::oracle::debian;
use common::pool::exec_pool;
use common::rng::XorShift;
use common::tool::{file, ok, pdt, run, s};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BLOCK: u64 = 64 << 10;
const VOL: u64 = 4 << 20;

/// A pool of `nr_blocks` 64 KiB data blocks with thin devices `devs`.
fn pool(dir: &Path, nr_blocks: u64, devs: &[u64]) -> (PathBuf, PathBuf) {
    let mut script = format!("format 128 {nr_blocks}\n");
    for d in devs {
        script.push_str(&format!("create_thin {d}\n"));
    }
    script.push_str("commit\n");
    let meta = exec_pool(dir, "meta", 4 << 20, &script);
    let data = file(dir, "data", nr_blocks * BLOCK);
    (meta, data)
}

fn thin_check_both(meta: &Path) {
    let o = run(Command::new(debian("thin_check")).arg(meta));
    assert!(
        o.status.success(),
        "Debian's thin_check: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(pdt("thin_check").arg("-q").arg(meta));
}

fn size_arg() -> String {
    format!("--size={VOL}")
}

/// Random requests on volumes 0 and 1, and on 2 (a snapshot of 0 taken
/// part-way); the model holds every volume's bytes.
#[test]
fn random_requests_match_the_model_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = pool(dir.path(), 512, &[0, 1]);
    let srv = Server::start(dir.path(), &meta, &data, &[&size_arg()]);
    let mut model: BTreeMap<u64, Vec<u8>> =
        [(0, vec![0u8; VOL as usize]), (1, vec![0u8; VOL as usize])].into();
    let mut clients: BTreeMap<u64, Client> = [(0, srv.client("0")), (1, srv.client("1"))].into();
    assert_eq!(clients[&0].size, VOL);
    let mut rng = XorShift(0x5eed_7417);
    for step in 0..600 {
        if step == 200 {
            assert_eq!(srv.control("create_snap 2 0"), "ok");
            model.insert(2, model[&0].clone());
            clients.insert(2, srv.client("2"));
        }
        let dev = *model
            .keys()
            .nth(rng.below(model.len() as u64) as usize)
            .unwrap();
        let c = clients.get_mut(&dev).unwrap();
        random_request(
            c,
            model.get_mut(&dev).unwrap(),
            &mut rng,
            &format!("step {step}, dev {dev}"),
        );
    }
    for (_, c) in clients {
        c.disconnect();
    }
    srv.shutdown();
    thin_check_both(&meta);

    let srv = Server::start(dir.path(), &meta, &data, &[&size_arg()]);
    for (dev, m) in &model {
        let mut c = srv.client(&dev.to_string());
        for at in (0..VOL).step_by(1 << 20) {
            let got = c.read(at, 1 << 20);
            assert!(
                got == m[at as usize..(at + (1 << 20)) as usize],
                "dev {dev} at {at} after restart"
            );
        }
    }
    srv.shutdown();
    // Sharing was broken, not duplicated: 2 still shares what 0 did not
    // rewrite since the snapshot.
    let ls = String::from_utf8(ok(pdt("thin_ls").arg(&meta))).unwrap();
    assert!(ls.contains("\n  2 "), "{ls}");
}

/// Several clients at once on one volume and another: disjoint regions,
/// each read back.
#[test]
fn concurrent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = pool(dir.path(), 256, &[0, 1]);
    let srv = Server::start(dir.path(), &meta, &data, &[&size_arg()]);
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let srv = &srv;
            sc.spawn(move || {
                let dev = (t % 2).to_string();
                let mut c = srv.client(&dev);
                // Interleaved 4 KiB pieces: neighbours share data blocks.
                for i in 0..64u64 {
                    let off = (i * 4 + t / 2) * 4096 * 2;
                    let buf = vec![(t * 64 + i) as u8; 4096];
                    assert_eq!(c.write(off, &buf), 0);
                }
                for i in 0..64u64 {
                    let off = (i * 4 + t / 2) * 4096 * 2;
                    assert_eq!(c.read(off, 4096), vec![(t * 64 + i) as u8; 4096]);
                }
                c.disconnect();
            });
        }
    });
    srv.shutdown();
    thin_check_both(&meta);
}

/// Out of data space: writes that need a block fail with ENOSPC; reads and
/// overwrites of mapped unshared blocks go on; nothing acknowledged is lost.
#[test]
fn out_of_data_space() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = pool(dir.path(), 8, &[0]);
    let srv = Server::start(dir.path(), &meta, &data, &[&size_arg()]);
    let mut c = srv.client("0");
    for b in 0..8u64 {
        assert_eq!(c.write(b * BLOCK, &vec![b as u8 + 1; 4096]), 0);
    }
    assert_eq!(c.write(8 * BLOCK, &[9u8; 4096]), ENOSPC);
    assert_eq!(
        c.write(8192, &[0x77u8; 4096]),
        0,
        "an overwrite needs no space"
    );
    assert_eq!(c.flush(), 0);
    assert_eq!(srv.control("create_snap 1 0"), "ok");
    assert_eq!(
        c.write(0, &[0x55u8; 512]),
        ENOSPC,
        "breaking sharing needs a block"
    );
    assert_eq!(c.read(0, 4096), vec![1u8; 4096]);
    assert_eq!(srv.control("delete 1"), "ok");
    assert_eq!(c.trim(7 * BLOCK, BLOCK as u32), 0);
    assert_eq!(
        c.write(20 * BLOCK, &[0x66u8; 4096]),
        0,
        "trim freed a block"
    );
    c.disconnect();
    srv.shutdown();
    thin_check_both(&meta);
    let srv = Server::start(dir.path(), &meta, &data, &[&size_arg()]);
    let mut c = srv.client("0");
    assert_eq!(c.read(8192, 4096), vec![0x77u8; 4096]);
    assert_eq!(c.read(20 * BLOCK, 4096), vec![0x66u8; 4096]);
    assert_eq!(c.read(7 * BLOCK, 4096), vec![0u8; 4096]);
    c.disconnect();
    srv.shutdown();
}

/// Malformed and hostile requests: an error (or the end) for that client
/// only; the server and the pool go on unharmed.
#[test]
fn bad_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = pool(dir.path(), 64, &[0]);
    let srv = Server::start(dir.path(), &meta, &data, &[&size_arg()]);
    let mut good = srv.client("0");
    assert_eq!(good.write(0, &[0xa5u8; 8192]), 0);

    // Unknown export, then a malformed GO, then LIST, on one connection.
    let mut s = connect_unix(&srv.socket);
    let mut hello = [0u8; 18];
    std::io::Read::read_exact(&mut s, &mut hello).unwrap();
    std::io::Write::write_all(&mut s, &3u32.to_be_bytes()).unwrap();
    let mut go = 2u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"99\0\0");
    send_option(&mut s, 7, &go);
    assert_eq!(option_reply(&mut s).0, 0x8000_0006);
    send_option(&mut s, 7, &[0xff, 0xff, 0xff, 0xff, b'0']);
    assert_eq!(option_reply(&mut s).0, 0x8000_0003);
    send_option(&mut s, 3, &[]);
    let (kind, d) = option_reply(&mut s);
    assert_eq!((kind, &d[4..]), (2, &b"0"[..]));
    assert_eq!(option_reply(&mut s).0, 1);
    send_option(&mut s, 42, &[]);
    assert_eq!(option_reply(&mut s).0, 0x8000_0001);
    // An option longer than the server takes ends the connection.
    let mut b = 0x4948_4156_454f_5054u64.to_be_bytes().to_vec();
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    std::io::Write::write_all(&mut s, &b).unwrap();
    assert!(closed(&mut s));

    // Bad option magic.
    let mut s = connect_unix(&srv.socket);
    std::io::Read::read_exact(&mut s, &mut hello).unwrap();
    std::io::Write::write_all(&mut s, &3u32.to_be_bytes()).unwrap();
    std::io::Write::write_all(&mut s, &[0u8; 16]).unwrap();
    assert!(closed(&mut s));

    let mut c = srv.client("0");
    assert_eq!(
        c.request(READ, 0, VOL - 512, 1024, &[]).0,
        EINVAL,
        "read past the end"
    );
    assert_eq!(
        c.request(READ, 0, u64::MAX - 10, 512, &[]).0,
        EINVAL,
        "offset overflow"
    );
    assert_eq!(c.request(READ, 0, 0, 64 << 20, &[]).0, EINVAL, "huge read");
    assert_eq!(
        c.request(WRITE, 0, VOL, 512, &[1u8; 512]).0,
        ENOSPC,
        "write past the end"
    );
    assert_eq!(
        c.request(TRIM, 0, VOL - 512, 4096, &[]).0,
        EINVAL,
        "trim past the end"
    );
    assert_eq!(c.request(42, 0, 0, 0, &[]).0, EINVAL, "unknown command");
    assert_eq!(
        c.request(5, 0, 0, 512, &[]).0,
        EINVAL,
        "CACHE is not offered"
    );
    assert_eq!(
        c.read(0, 8192),
        vec![0xa5u8; 8192],
        "the connection goes on"
    );
    // Bad request magic: the connection ends.
    std::io::Write::write_all(&mut c.s, &[0u8; 28]).unwrap();
    assert!(closed(&mut c.s));

    // A write that stops half-way (the client disconnects).
    let mut c = srv.client("0");
    c.send_header(WRITE, 0, 0, 1 << 20);
    std::io::Write::write_all(&mut c.s, &[0xeeu8; 1000]).unwrap();
    drop(c);

    assert_eq!(
        good.read(0, 8192),
        vec![0xa5u8; 8192],
        "the pool is unharmed"
    );
    assert_eq!(good.flush(), 0);
    good.disconnect();
    assert!(srv.control("bogus 1").starts_with("error:"));
    assert!(srv.control("create_thin").starts_with("error:"));
    assert!(srv.control("create_thin 0").starts_with("error:"));
    srv.shutdown();
    thin_check_both(&meta);
}

/// The devices are held: a second server is refused at once; a read-only
/// server refuses writes; deleting an open device is refused.
#[test]
fn exclusive_read_only_and_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = pool(dir.path(), 64, &[0, 1]);
    let srv = Server::start(dir.path(), &meta, &data, &[]);
    let mut c = srv.client("0");
    assert!(
        srv.control("delete 0").starts_with("error:"),
        "device 0 is open"
    );
    assert_eq!(srv.control("delete 1"), "ok");
    let o = run(pdt("thin_serve")
        .args(["--metadata-dev", s(&meta), "--data-dev", s(&data)])
        .args(["--socket", s(&dir.path().join("other.sock"))]));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{o:?}"
    );
    assert_eq!(c.write(0, &[1u8; 4096]), 0);
    // The metadata snapshot can be read while serving (by us and Debian).
    assert_eq!(srv.control("reserve_metadata_snap"), "ok");
    let ls = String::from_utf8(ok(pdt("thin_ls").arg("-m").arg(&meta))).unwrap();
    assert!(ls.contains("\n  0 "), "{ls}");
    let dump = ok(Command::new(debian("thin_dump")).arg("-m").arg(&meta));
    assert!(String::from_utf8_lossy(&dump).contains("mapped_blocks=\"1\""));
    assert_eq!(srv.control("release_metadata_snap"), "ok");
    assert!(srv.control("release_metadata_snap").starts_with("error:"));
    c.disconnect();
    srv.shutdown();

    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let srv = Server::start(&ro, &meta, &data, &["--read-only", "--dev-id", "0"]);
    let mut c = srv.client("0");
    assert_eq!(c.flags & 2, 2, "NBD_FLAG_READ_ONLY");
    assert_eq!(c.write(0, &[2u8; 4096]), EPERM);
    assert_eq!(c.read(0, 4096), vec![1u8; 4096]);
    assert!(
        Client::go(connect_unix(&srv.socket), "1").is_err(),
        "not exported"
    );
    c.disconnect();
    srv.shutdown();
}

/// qemu's NBD client: qemu-img writes an image into a volume and compares
/// it; qemu-io writes and checks patterns.
#[test]
fn qemu_img_and_qemu_io() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = pool(dir.path(), 256, &[0, 1]);
    // A free loopback port (a small race with other tests is possible).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("--listen=127.0.0.1:{port}");
    let srv = Server::start(dir.path(), &meta, &data, &[&size_arg(), &listen]);
    let img = dir.path().join("img");
    let mut rng = XorShift(77);
    let mut bytes: Vec<u8> = (0..3 << 20).map(|_| rng.next() as u8).collect();
    bytes[1 << 20..2 << 20].fill(0);
    std::fs::write(&img, &bytes).unwrap();
    let url = |dev: u64| format!("nbd+unix:///{dev}?socket={}", s(&srv.socket));
    ok(Command::new("qemu-img").args([
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "raw",
        s(&img),
        &url(1),
    ]));
    ok(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw", s(&img), &url(1)]));
    let out = ok(Command::new("qemu-io").args(["-f", "raw", &url(0)]).args([
        "-c",
        "write -P 0x5a 4096 200k",
        "-c",
        "write -z 8192 4096",
        "-c",
        "discard 1M 128k",
        "-c",
        "flush",
        "-c",
        "read -P 0x5a 4096 4096",
        "-c",
        "read -P 0 8192 4096",
        "-c",
        "read -P 0x5a 12288 100k",
    ]));
    let out = String::from_utf8_lossy(&out);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    // The same volume over TCP.
    let tcp = format!("nbd://127.0.0.1:{port}/0");
    let out =
        ok(Command::new("qemu-io").args(["-f", "raw", &tcp, "-c", "read -P 0x5a 12288 100k"]));
    assert!(!String::from_utf8_lossy(&out).contains("Pattern verification failed"));
    srv.shutdown();
    // Not on another address without --allow-remote.
    let o = run(pdt("thin_serve")
        .args(["--metadata-dev", s(&meta), "--data-dev", s(&data)])
        .args(["--listen", "0.0.0.0:1"]));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--allow-remote"),
        "{o:?}"
    );
    thin_check_both(&meta);
}
