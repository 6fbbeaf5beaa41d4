#!/usr/bin/env python3
"""Runs our era tools, Debian's (thin-provisioning-tools 0.9.0, /usr/sbin) and
the upstream Rust tools 1.3.3 side by side on synthetic era metadata and prints
wall times, peak memory and ratios.

    cargo build --release && scripts/bench-era-tools.py [--blocks 4194304]

(needs GNU time, Debian package `time`, for peak memory).

The metadata: BLOCKS origin blocks, 32 archived writesets (eras 968..999,
each marking runs over about a tenth of the blocks), current era 1000 with an
empty current writeset, an era array of older eras: what the kernel leaves.
It is written as compact XML (<marked> runs; current era 999, its writeset
archived), restored with our era_restore, moved to era 1000 by `era_exec`
(a checkpoint: upstream's era_dump refuses metadata without a current
writeset, which is what every restore writes), and checked clean with
Debian's era_check. Each tool
then runs --runs times on the image (page cache warm); the fastest wall time
and the largest peak RSS are kept. era_dump's output (one <bit> per block,
5.6 GB for 4M blocks) goes to /dev/null; Debian's takes minutes, so it is
timed once and only with --debian-dump.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_common import fresh, run  # noqa: E402

UPSTREAM = "/work/shared/peers/upstream-1.3.3/pdata_tools"


def gen_xml(path, blocks, seed):
    r = random.Random(seed)
    with open(path, "w") as f:
        f.write(f'<superblock uuid="" block_size="128" nr_blocks="{blocks}" current_era="999">\n')
        for era in range(968, 1000):
            f.write(f'  <writeset era="{era}" nr_bits="{blocks}">\n')
            b = r.randrange(64)
            while b < blocks:
                n = min(r.randrange(1, 64), blocks - b)
                f.write(f'    <marked block_begin="{b}" len="{n}"/>\n')
                b += n + r.randrange(1, 1200)
            f.write("  </writeset>\n")
        f.write("  <era_array>\n")
        b = 0
        while b < blocks:
            n = min(r.randrange(1, 300), blocks - b)
            era = r.randrange(0, 968)
            f.write("".join(f'    <era block="{i}" era="{era}"/>\n' for i in range(b, b + n)))
            b += n
        f.write("  </era_array>\n</superblock>\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=4 << 20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pdt", default=os.path.join(ROOT, "target/release/pdt"))
    ap.add_argument("--debian-dump", action="store_true", help="also time Debian's era_dump (minutes)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-era.") as tmp:
        xml = os.path.join(tmp, "era.xml")
        meta = os.path.join(tmp, "meta.img")
        gen_xml(xml, args.blocks, args.seed)
        fresh(meta, 256 << 20)
        t, _ = run([args.pdt, "era_restore", "-q", "-i", xml, "-o", meta])
        print(f"era_restore (ours) of {os.path.getsize(xml) >> 20} MiB of XML: {t:.2f}s")
        subprocess.run([args.pdt, "era_exec", meta], input=b"checkpoint\ncommit\n",
                       check=True, stdout=subprocess.DEVNULL)
        run(["/usr/sbin/era_check", meta])
        tools = {
            "era_check": ["era_check", meta],
            "era_invalidate --written-since 990": ["era_invalidate", "--written-since", "990", meta],
            "era_dump": ["era_dump", meta],
        }
        print(f"{'tool':38} {'ours':>14} {'upstream':>14} {'debian':>14}  ours/upstream")
        for name, cmd in tools.items():
            runs = 1 if name == "era_dump" else args.runs
            row = {}
            for who, prefix in [("ours", [args.pdt]), ("upstream", [UPSTREAM]), ("debian", [])]:
                if who == "debian":
                    if name == "era_dump" and not args.debian_dump:
                        continue
                    c = ["/usr/sbin/" + cmd[0]] + cmd[1:]
                else:
                    c = prefix + cmd
                results = [run(c) for _ in range(runs)]
                row[who] = (min(r[0] for r in results), max(r[1] for r in results))
            cells = [f"{row[w][0]:6.2f}s {row[w][1] >> 10:4d}M" if w in row else f"{'-':>14}"
                     for w in ["ours", "upstream", "debian"]]
            ratio = row["ours"][0] / row["upstream"][0]
            print(f"{name:38} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}  {ratio:.2f}")


if __name__ == "__main__":
    main()
