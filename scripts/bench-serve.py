#!/usr/bin/env python3
"""Side by side: `pdt thin_serve` against nbdkit's file plugin serving a raw
file of the same size (the ceiling for a userspace NBD server here), with
fio's nbd engine: sequential write and read MB/s, 4 KiB random writes that
allocate (a fresh thin) and that overwrite, random reads, and 4 KiB writes
each followed by a flush (flush latency). Needs `cargo build --release`,
nbdkit and fio (apt-get install nbdkit fio).

usage: scripts/bench-serve.py [--size-mb 1024] [--runtime 10] [--iodepth 16]
                              [--dir DIR] [--pdt target/release/pdt]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BLOCK_SECTORS = 128  # 64 KiB data blocks


def wait_for(path, proc):
    for _ in range(500):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.args}")
        time.sleep(0.02)
    sys.exit(f"no socket {path}")


def fio(uri, name, rw, bs, size, runtime, iodepth, extra=()):
    cmd = [
        "fio", "--name=" + name, "--ioengine=nbd", "--uri=" + uri,
        "--rw=" + rw, "--bs=" + bs, "--size=" + size, "--iodepth=" + str(iodepth),
        "--output-format=json", "--randrepeat=1", "--norandommap",
        *extra,
    ]
    if runtime:
        cmd += ["--time_based", "--runtime=" + str(runtime)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["write"] if "write" in rw else job["read"]
    lat_ns = job["sync"]["lat_ns"]["mean"] if job.get("sync", {}).get("lat_ns", {}).get("N") else 0
    return side["bw_bytes"] / 1e6, side["iops"], lat_ns / 1e3


def run(pdt, dirpath, size_mb, runtime, iodepth):
    size = size_mb << 20
    meta = os.path.join(dirpath, "meta")
    data = os.path.join(dirpath, "data")
    raw = os.path.join(dirpath, "raw")
    for p, n in [(meta, 64 << 20), (data, size * 2), (raw, size)]:
        with open(p, "wb") as f:
            f.truncate(n)
    nr = size * 2 // (BLOCK_SECTORS * 512)
    subprocess.run([pdt, "thin_exec", meta], input=f"format {BLOCK_SECTORS} {nr}\ncreate_thin 0\ncreate_thin 1\ncommit\n",
                   text=True, check=True, capture_output=True)
    ssock = os.path.join(dirpath, "serve.sock")
    ksock = os.path.join(dirpath, "nbdkit.sock")
    serve = subprocess.Popen([pdt, "thin_serve", "-q", "--metadata-dev", meta, "--data-dev", data,
                              "--socket", ssock, f"--size={size}"])
    kit = subprocess.Popen(["nbdkit", "-f", "-U", ksock, "file", raw])
    wait_for(ssock, serve)
    wait_for(ksock, kit)
    uris = {"nbdkit": f"nbd+unix:///?socket={ksock}", "thin_serve": f"nbd+unix:///0?socket={ssock}"}
    fresh = {"nbdkit": uris["nbdkit"], "thin_serve": f"nbd+unix:///1?socket={ssock}"}
    tests = [
        ("seq write 1M (allocating), MB/s", "write", "1M", None, 0, uris, 0),
        ("seq read 1M, MB/s", "read", "1M", None, runtime, uris, 0),
        ("rand write 4K (allocating), IOPS", "randwrite", "4k", None, runtime, fresh, 1),
        ("rand write 4K (overwrite), IOPS", "randwrite", "4k", None, runtime, uris, 1),
        ("rand read 4K, IOPS", "randread", "4k", None, runtime, uris, 1),
        ("write 4K + flush, latency us", "randwrite", "4k", ["--fsync=1"], runtime, uris, 2),
    ]
    rows = []
    try:
        for label, rw, bs, extra, rt, u, kind in tests:
            got = {}
            for server in ["nbdkit", "thin_serve"]:
                depth = 1 if kind == 2 else iodepth
                mbs, iops, lat = fio(u[server], server, rw, bs, f"{size_mb}M", rt, depth, extra or ())
                got[server] = [mbs, iops, lat][kind] if kind != 2 else 1e6 / iops
            rows.append((label, got["nbdkit"], got["thin_serve"]))
            print(f"{label:40} nbdkit {got['nbdkit']:10.1f}  thin_serve {got['thin_serve']:10.1f}  "
                  f"ratio {got['thin_serve'] / got['nbdkit']:.2f}", flush=True)
    finally:
        serve.terminate()
        kit.terminate()
        serve.wait()
        kit.wait()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--iodepth", type=int, default=16)
    ap.add_argument("--dir")
    ap.add_argument("--pdt", default="target/release/pdt")
    a = ap.parse_args()
    for tool in ["fio", "nbdkit"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install nbdkit fio)")
    d = a.dir or tempfile.mkdtemp(prefix="bench-serve.")
    try:
        rows = run(a.pdt, d, a.size_mb, a.runtime, a.iodepth)
    finally:
        if not a.dir:
            shutil.rmtree(d, ignore_errors=True)
    print("\n| test | nbdkit file | thin_serve | ratio |\n|---|---|---|---|")
    for label, k, s in rows:
        print(f"| {label} | {k:.1f} | {s:.1f} | {s / k:.2f} |")


if __name__ == "__main__":
    main()
