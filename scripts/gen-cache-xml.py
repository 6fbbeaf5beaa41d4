#!/usr/bin/env python3
"""Writes the XML of a synthetic dm-cache (cache_dump's format) to stdout:
N cache blocks, about 90% mapped to distinct origin blocks, 30% of those
dirty, a 4-byte hint for each mapped block. Seeded, so a size always gives
the same cache.

    scripts/gen-cache-xml.py --blocks 1000000 [--seed 1] > cache.xml
"""
import argparse
import base64
import random
import struct
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--block-size", type=int, default=128, help="sectors")
    ap.add_argument("--policy", default="smq")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = sys.stdout
    w = out.write
    w(f'<superblock uuid="" block_size="{a.block_size}" nr_cache_blocks="{a.blocks}"'
      f' policy="{a.policy}" hint_width="4">\n  <mappings>\n')
    mapped = []
    rand = rng.random
    for c in range(a.blocks):
        if rand() < 0.9:
            # Distinct origin blocks, spread over an origin 16 times the cache.
            o = c * 16 + int(rand() * 16)
            d = "true" if rand() < 0.3 else "false"
            w(f'    <mapping cache_block="{c}" origin_block="{o}" dirty="{d}"/>\n')
            mapped.append(c)
    w("  </mappings>\n  <hints>\n")
    for c in mapped:
        h = base64.b64encode(struct.pack("<I", rng.getrandbits(32))).decode()
        w(f'    <hint cache_block="{c}" data="{h}"/>\n')
    w("  </hints>\n</superblock>\n")


if __name__ == "__main__":
    main()
