#!/usr/bin/env python3
"""Times our thin_metadata_pack / thin_metadata_unpack against the upstream
Rust tools 1.3.3 on the same images in the same run, and checks that
upstream's unpack restores our pack to the original bytes and that our
unpack of upstream's pack gives what upstream's own unpack gives (upstream
1.3.3's pack drops a random chunk of blocks on some device sizes: reported).

    cargo build --release && scripts/bench-pack.py [--upstream PATH] [IMAGE...]

Without IMAGE, a pool of --mappings mappings is made with the release
example gen-thin-xml and our thin_restore. Each tool runs --runs times (page
cache warm); the fastest wall and CPU (user + system) times and the largest
peak RSS are kept. Upstream's progress thread gives its wall times a floor
of about 0.5 s: compare CPU as well. Needs GNU time (Debian package `time`).
"""
import argparse
import filecmp
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_common import fresh, run_cpu  # noqa: E402

UPSTREAM = "/work/shared/peers/upstream-1.3.3/pdata_tools"


def make_pool(tmp, pdt, mappings, seed):
    gen = os.path.join(ROOT, "target/release/examples/gen-thin-xml")
    if not os.path.exists(gen):
        subprocess.run(["cargo", "build", "--release", "--example", "gen-thin-xml"], cwd=ROOT,
                       check=True)
    xml = os.path.join(tmp, "pool.xml")
    with open(xml, "w") as f:
        subprocess.run([gen, "--mappings", str(mappings), "--seed", str(seed)], stdout=f,
                       check=True)
    meta = os.path.join(tmp, "pool.md")
    # 128 bytes a mapping is ample for any shape the generator makes.
    fresh(meta, max(64 << 20, mappings * 128))
    subprocess.run([pdt, "thin_restore", "-q", "-i", xml, "-o", meta], check=True)
    os.unlink(xml)
    return meta


def best(cmd, out, runs):
    results = []
    for _ in range(runs):
        if os.path.exists(out):
            os.unlink(out)
        results.append(run_cpu(cmd))
    return min(r[0] for r in results), min(r[1] for r in results), max(r[2] for r in results)


def cell(r):
    return f"{r[0]:6.2f}s {r[1]:6.2f}s {r[2] >> 10:4d}M"


def bench(meta, tmp, pdt, upstream, runs):
    packs = {w: os.path.join(tmp, f"{w}.pack") for w in ("ours", "upstream")}
    backs = {w: os.path.join(tmp, f"{w}.unpacked") for w in ("ours", "upstream")}
    tools = {"ours": [pdt], "upstream": [upstream]}
    print(f"{os.path.basename(meta)}: {os.path.getsize(meta) >> 20} MiB")
    print(f"{'':24} {'ours: wall cpu rss':>22} {'upstream: wall cpu rss':>24}  cpu ratio")
    rows = {}
    for w in tools:
        rows.setdefault("pack", {})[w] = best(
            tools[w] + ["thin_metadata_pack", "-i", meta, "-o", packs[w]], packs[w], runs)
    for w in tools:
        # Each side unpacks the other's pack.
        other = "upstream" if w == "ours" else "ours"
        rows.setdefault("unpack (other's pack)", {})[w] = best(
            tools[w] + ["thin_metadata_unpack", "-i", packs[other], "-o", backs[w]], backs[w],
            runs)
    for name, row in rows.items():
        ratio = row["ours"][1] / max(row["upstream"][1], 1e-3)
        print(f"{name:24} {cell(row['ours']):>22} {cell(row['upstream']):>24}  {ratio:.2f}")
    sizes = {w: os.path.getsize(p) for w, p in packs.items()}
    print(f"pack bytes: ours {sizes['ours']}, upstream {sizes['upstream']}")
    # Upstream 1.3.3's pack drops one chunk of blocks, chosen at random,
    # when the device is not a whole number of its chunks: its own unpack
    # is the reference for what its pack holds.
    upstream_own = os.path.join(tmp, "upstream-own.unpacked")
    if os.path.exists(upstream_own):
        os.unlink(upstream_own)
    run_cpu([upstream, "thin_metadata_unpack", "-i", packs["upstream"], "-o", upstream_own])
    checks = [
        ("upstream unpack of our pack equals the image", backs["upstream"], meta),
        ("our unpack of upstream's pack equals upstream's unpack of it", backs["ours"],
         upstream_own),
    ]
    for what, a, b in checks:
        same = filecmp.cmp(a, b, shallow=False)
        print(f"{what}: {same}")
        if not same:
            sys.exit(1)
    complete = filecmp.cmp(upstream_own, meta, shallow=False)
    print(f"upstream's pack holds the whole image: {complete}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--upstream", default=UPSTREAM, help="upstream pdata_tools binary")
    ap.add_argument("--pdt", default=os.path.join(ROOT, "target/release/pdt"))
    ap.add_argument("--mappings", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pack.") as tmp:
        images = args.images or [make_pool(tmp, args.pdt, args.mappings, args.seed)]
        for meta in images:
            bench(meta, tmp, args.pdt, args.upstream, args.runs)


if __name__ == "__main__":
    main()
