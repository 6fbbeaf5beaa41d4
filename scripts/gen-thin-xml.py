#!/usr/bin/env python3
"""Writes the thin_dump XML of a synthetic pool, for benchmarks.

Origins get runs of new data blocks (run lengths geometric around --run-length);
snapshots copy an earlier device's mappings (sharing its data blocks) and then
overwrite --overwrite of them with new blocks at a later time, as a pool with
snapshots in service looks. Deterministic for a given --seed.

    scripts/gen-thin-xml.py --mappings 1000000 --devices 32 --seed 1 > pool.xml
    scripts/gen-thin-xml.py --mappings 300000 --nr-data-blocks 4294967296 > huge-data.xml
"""
import argparse
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mappings", type=int, default=1_000_000, help="total mappings over all devices")
    ap.add_argument("--devices", type=int, default=32)
    ap.add_argument("--snapshots", type=float, default=0.5, help="fraction of devices that are snapshots")
    ap.add_argument("--overwrite", type=float, default=0.2, help="fraction of a snapshot's blocks rewritten")
    ap.add_argument("--run-length", type=float, default=4.0, help="mean run of consecutive blocks")
    ap.add_argument("--data-block-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nr-data-blocks", type=int, default=0,
                    help="a larger data device: the data blocks used are spread evenly over it"
                    " (every mapping then a single one, in its own space-map bitmap)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    per_dev = max(1, a.mappings // a.devices)
    p_end = 1.0 / max(1.0, a.run_length)

    next_data = 0
    time = 0
    devices = []  # (dev_id, creation_time, snap_time, {origin: (data, time)})

    def fresh_runs(m, count, t, span):
        """Maps `count` origins in runs of fresh data blocks."""
        nonlocal next_data
        origin = rng.randrange(0, max(1, span // 8))
        done = 0
        while done < count:
            run = 1
            while rng.random() > p_end and done + run < count:
                run += 1
            for k in range(run):
                m[origin + k] = (next_data + k, t)
            next_data += run
            done += run
            origin += run + (rng.randrange(0, 64) if rng.random() < 0.3 else 0)

    for dev in range(a.devices):
        time += 1
        if dev > 0 and rng.random() < a.snapshots:
            origin_dev = devices[rng.randrange(len(devices))]
            m = dict(origin_dev[3])
            keys = sorted(m)
            n_over = int(len(keys) * a.overwrite)
            done = 0
            while keys and done < n_over:
                # Rewrites land in scattered runs, each with fresh blocks.
                i = rng.randrange(len(keys))
                run = 1
                while rng.random() > p_end and run < n_over - done:
                    run += 1
                for j in range(i, min(i + run, len(keys))):
                    m[keys[j]] = (next_data, time)
                    next_data += 1
                    done += 1
                next_data += rng.randrange(0, 8)
            devices.append((dev, time, time, m))
        else:
            m = {}
            fresh_runs(m, per_dev, time, per_dev * 4)
            devices.append((dev, time, 0, m))

    nr_data = next_data + next_data // 4 + 1024
    stride = 1
    if a.nr_data_blocks > nr_data:
        stride = a.nr_data_blocks // max(1, next_data)
        nr_data = a.nr_data_blocks
        for _, _, _, m in devices:
            for k, (d, t) in m.items():
                m[k] = (d * stride, t)
    out = sys.stdout
    w = out.write
    w(f'<superblock uuid="" time="{time}" transaction="{a.devices}" flags="0" version="2" '
      f'data_block_size="{a.data_block_size}" nr_data_blocks="{nr_data}">\n')
    for dev, ctime, stime, m in devices:
        w(f'  <device dev_id="{dev}" mapped_blocks="{len(m)}" transaction="{dev}" '
          f'creation_time="{ctime}" snap_time="{stime}">\n')
        run = None
        for k in sorted(m):
            d, t = m[k]
            if run and k == run[0] + run[2] and d == run[1] + stride * run[2] and t == run[3] \
                    and stride == 1:
                run[2] += 1
                continue
            if run:
                emit(w, run)
            run = [k, d, 1, t]
        if run:
            emit(w, run)
        w('  </device>\n')
    w('</superblock>\n')


def emit(w, r):
    if r[2] == 1:
        w(f'    <single_mapping origin_block="{r[0]}" data_block="{r[1]}" time="{r[3]}"/>\n')
    else:
        w(f'    <range_mapping origin_begin="{r[0]}" data_begin="{r[1]}" length="{r[2]}" time="{r[3]}"/>\n')


if __name__ == "__main__":
    main()
