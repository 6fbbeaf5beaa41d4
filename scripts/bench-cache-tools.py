#!/usr/bin/env python3
"""Runs our cache tools, Debian's (0.9.0, /usr/sbin) and, when present, the
upstream Rust tools (1.3.3) side by side on synthetic caches; prints wall
time, cpu time, peak memory and the ratios pdt / upstream and pdt / Debian.

    cargo build --release && scripts/bench-cache-tools.py [--blocks 1000000 4000000]
        [--upstream PATH/pdata_tools]

(needs GNU time, Debian package `time`.) For each size it writes the XML
with scripts/gen-cache-xml.py and restores it with our cache_restore
(version 2: every tool's check accepts it; Debian's own version 2 images
have dirty bits on unmapped blocks, which the upstream check rejects);
cache_check and cache_dump read that image, cache_restore writes version 2
from the XML. Each tool runs --runs times: the fastest wall and cpu time,
the largest peak RSS. The upstream tools' progress thread gives their wall
times a floor of about 0.5 s: compare the cpu times too.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM = "/work/shared/peers/upstream-1.3.3/pdata_tools"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import fresh, run_cpu as run  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pdt", default=os.path.join(ROOT, "target/release/pdt"))
    ap.add_argument("--upstream", default=UPSTREAM)
    ap.add_argument("--tools", nargs="+", default=["cache_check", "cache_dump", "cache_restore"])
    ap.add_argument("--keep", help="keep the files in this directory")
    a = ap.parse_args()
    if not os.path.exists(a.pdt):
        sys.exit(f"{a.pdt} not found: run cargo build --release first")
    if not os.path.exists(a.upstream):
        print(f"# {a.upstream} not found: upstream columns empty")
        a.upstream = None
    work = a.keep or tempfile.mkdtemp(prefix="pdt-cache-bench-")
    os.makedirs(work, exist_ok=True)
    print(f"{'blocks':>8} {'tool':<14} {'who':<9} {'wall s':>7} {'cpu s':>7} {'MB':>7}"
          f" {'wall/up':>8} {'cpu/up':>7} {'wall/deb':>8}")
    try:
        for n in a.blocks:
            bench(a, work, n)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def bench(a, work, n):
    xml = os.path.join(work, f"cache-{n}.xml")
    img = os.path.join(work, f"cache-{n}.md")
    out = os.path.join(work, "out.md")
    dump = os.path.join(work, "dump.xml")
    # About 12 bytes of metadata per cache block; leave room.
    size = max(64 << 20, n * 32)
    if not os.path.exists(img):
        with open(xml, "w") as f:
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts/gen-cache-xml.py"),
                            "--blocks", str(n), "--seed", str(a.seed)], stdout=f, check=True)
        fresh(img, size)
        subprocess.run([a.pdt, "cache_restore", "-q", "-i", xml, "-o", img], check=True)
    cmds = {
        "cache_check": lambda t: ["-q", img],
        "cache_dump": lambda t: ["-o", dump, img],
        "cache_restore": lambda t: ["-q", "-i", xml, "-o", out, "--metadata-version", "2"],
    }
    for tool in a.tools:
        who_exe = [("debian", [f"/usr/sbin/{tool}"]), ("pdt", [a.pdt, tool])]
        if a.upstream:
            who_exe.insert(1, ("upstream", [a.upstream, tool]))
        best = {}
        for who, exe in who_exe:
            walls, cpus, rss = [], [], 0
            for _ in range(a.runs):
                fresh(out, size)
                w, c, r = run(exe + cmds[tool](tool))
                walls.append(w)
                cpus.append(c)
                rss = max(rss, r)
            best[who] = (min(walls), min(cpus), rss)
        for who, (w, c, r) in best.items():
            line = f"{n:>8} {tool:<14} {who:<9} {w:>7.3f} {c:>7.3f} {r / 1024:>7.1f}"
            if who == "pdt":
                if "upstream" in best:
                    uw, uc, _ = best["upstream"]
                    line += f" {w / uw:>8.3f} {c / max(uc, 0.001):>7.3f}"
                else:
                    line += f" {'':>8} {'':>7}"
                line += f" {w / best['debian'][0]:>8.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
