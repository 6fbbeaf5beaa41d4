#!/usr/bin/env python3
"""Runs our thin tools and Debian's (thin-provisioning-tools 0.9.0, /usr/sbin)
side by side on synthetic pools and prints wall times, peak memory and ratios.

    cargo build --release && scripts/bench-thin-tools.py [--mappings 1000000 10000000]

(needs GNU time, Debian package `time`, for peak memory).

For each size it writes the XML (with the fast generator,
`cargo build --release --example gen-thin-xml`, when built, else
scripts/gen-thin-xml.py), restores it with Debian's thin_restore (or ours,
--restore-with pdt, much faster for 100M mappings; the image every tool then
reads), and times each tool --runs times, keeping the fastest wall time and
the largest peak RSS. Debian's and the upstream tools read with O_DIRECT;
ours read regular files through the page cache. With --cold the input's
cached pages are dropped before every run (posix_fadvise), which puts every
tool on the device.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_common import fresh, run  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mappings", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--devices", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pdt", default=os.path.join(ROOT, "target/release/pdt"))
    ap.add_argument("--before", help="an earlier pdt build, timed in the same run"
                    " (adds its time and the ratio pdt / before)")
    ap.add_argument("--upstream", help="the upstream 1.x pdata_tools, timed in the same run")
    ap.add_argument("--nr-data-blocks", type=int, default=0,
                    help="spread the data blocks over a data device this large")
    ap.add_argument("--tools", nargs="+",
                    default=["thin_check", "thin_dump", "thin_restore", "thin_repair"],
                    help="also thin_ls, thin_rmap, thin_delta")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each run")
    ap.add_argument("--keep", help="keep the images in this directory")
    ap.add_argument("--restore-with", choices=["debian", "pdt"], default="debian",
                    help="who builds the image the tools read")
    a = ap.parse_args()
    if not os.path.exists(a.pdt):
        sys.exit(f"{a.pdt} not found: run cargo build --release first")
    work = a.keep or tempfile.mkdtemp(prefix="pdt-bench-")
    os.makedirs(work, exist_ok=True)
    head = (f"{'mappings':>10} {'tool':<13} {'debian s':>9} {'pdt s':>8} {'ratio':>6}"
            f" {'debian MB':>10} {'pdt MB':>7}")
    if a.before:
        head += f" {'before s':>9} {'/before':>8} {'before MB':>10}"
    if a.upstream:
        head += f" {'1.x s':>8} {'1.x MB':>7}"
    print(head)
    try:
        for n in a.mappings:
            bench(a, work, n)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def bench(a, work, n):
    tag = f"{n}-{a.nr_data_blocks}" if a.nr_data_blocks else f"{n}"
    xml = os.path.join(work, f"pool-{tag}.xml")
    img = os.path.join(work, f"pool-{tag}.md")
    out = os.path.join(work, "out.md")
    dump = os.path.join(work, "dump.xml")
    # Metadata takes about 33 bytes per mapping here; leave room.
    # and for the data space map: 4 KiB per 16,320 data blocks.
    size = max(64 << 20, n * 128) + a.nr_data_blocks // 16320 * 4096 * 5 // 4
    if not os.path.exists(img):
        fast = os.path.join(ROOT, "target/release/examples/gen-thin-xml")
        gen = [fast] if os.path.exists(fast) else [
            sys.executable, os.path.join(ROOT, "scripts/gen-thin-xml.py")]
        with open(xml, "w") as f:
            subprocess.run(gen + ["--mappings", str(n), "--devices", str(a.devices),
                                  "--seed", str(a.seed),
                                  "--nr-data-blocks", str(a.nr_data_blocks)],
                           stdout=f, check=True)
        fresh(img, size)
        restore = (["/usr/sbin/thin_restore"] if a.restore_with == "debian"
                   else [a.pdt, "thin_restore"])
        subprocess.run(restore + ["-q", "-i", xml, "-o", img], check=True)
    cmds = {
        "thin_check": lambda t: [t, "-q", img],
        "thin_dump": lambda t: [t, img, "-o", dump],
        "thin_restore": lambda t: [t, "-q", "-i", xml, "-o", out],
        "thin_repair": lambda t: [t, "-i", img, "-o", out],
        "thin_ls": lambda t: [t, img],
        "thin_rmap": lambda t: [t, "--region", "0..1099511627776", img],
        "thin_delta": lambda t: [t, "--snap1", "0", "--snap2", "1", img],
    }
    for tool in a.tools:
        best = {}
        who_exe = [("debian", [f"/usr/sbin/{tool}"]), ("pdt", [a.pdt, tool])]
        if a.before:
            who_exe.append(("before", [a.before, tool]))
        if a.upstream:
            who_exe.append(("upstream", [a.upstream, tool]))
        for who, exe in who_exe:
            walls, rss = [], 0
            for _ in range(a.runs):
                fresh(out, size)
                cmd = cmds[tool](exe[0]) if who == "debian" else exe[:1] + cmds[tool](tool)
                inputs = [xml] if tool == "thin_restore" else [img]
                w, r = run(cmd, inputs if a.cold else ())
                walls.append(w)
                rss = max(rss, r)
            best[who] = (min(walls), rss)
        (dw, dr), (pw, pr) = best["debian"], best["pdt"]
        line = (f"{n:>10} {tool:<13} {dw:>9.3f} {pw:>8.3f} {pw / dw:>6.3f}"
                f" {dr / 1024:>10.1f} {pr / 1024:>7.1f}")
        if a.before:
            bw, br = best["before"]
            line += f" {bw:>9.3f} {pw / bw:>8.3f} {br / 1024:>10.1f}"
        if a.upstream:
            uw, ur = best["upstream"]
            line += f" {uw:>8.3f} {ur / 1024:>7.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
