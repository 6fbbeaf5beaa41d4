#!/usr/bin/env python3
"""thin_migrate against dd on the same bytes (after `cargo build --release`).

A pool of one volume of --gib GiB (64 KiB blocks) mapped in shuffled runs
of 1..64 blocks over a data file of random bytes, and a snapshot with 2%
of its blocks remapped. Best of 5 (warm page cache, each run ends with an
fsync): dd of the whole data file, our full extraction (file to file:
copy_file_range; and through our buffers, as for devices), our
incremental (--delta-id) one. The upstream 1.x thin_migrate only reads a live thin
device (device-mapper), so it cannot run on these images.
"""
import argparse, os, random, resource, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--gib", type=int, default=1)
ap.add_argument("--pdt", default=os.path.join(os.path.dirname(__file__), "../target/release/pdt"))
ap.add_argument("--dir", default=None)
a = ap.parse_args()
BLOCK = 65536
n = a.gib * (1 << 30) // BLOCK
rng = random.Random(7)
d = tempfile.mkdtemp(dir=a.dir)
data, meta, xml = (os.path.join(d, x) for x in ("data", "meta", "pool.xml"))
subprocess.run(["dd", "if=/dev/urandom", f"of={data}", "bs=1M", f"count={a.gib * 1024}", "status=none"], check=True)
runs, t = [], 0
while t < n:
    ln = min(rng.randint(1, 64), n - t)
    runs.append((t, ln))
    t += ln
order = runs[:]
rng.shuffle(order)
dpos, mapping = 0, {}
for (t, ln) in order:
    for i in range(ln):
        mapping[t + i] = dpos + i
    dpos += ln
spare = n  # the snapshot's new blocks lie past the origin's
snap = dict(mapping)
with open(xml, "w") as f:
    f.write(f'<superblock uuid="" time="1" transaction="1" data_block_size="128" nr_data_blocks="{n + n // 50 + 1}">\n')
    f.write(f'  <device dev_id="1" mapped_blocks="{n}" transaction="0" creation_time="0" snap_time="1">\n')
    for tb in range(n):
        f.write(f'    <single_mapping origin_block="{tb}" data_block="{mapping[tb]}" time="0"/>\n')
    f.write("  </device>\n")
    for tb in rng.sample(range(n), n // 50):
        snap[tb] = spare
        spare += 1
    f.write(f'  <device dev_id="2" mapped_blocks="{n}" transaction="0" creation_time="1" snap_time="1">\n')
    for tb in range(n):
        f.write(f'    <single_mapping origin_block="{tb}" data_block="{snap[tb]}" time="1"/>\n')
    f.write("  </device>\n</superblock>\n")
with open(data, "r+b") as f:
    f.truncate((spare + 1) * BLOCK)
subprocess.run(["truncate", "-s", "64M", meta], check=True)
subprocess.run([a.pdt, "thin_restore", "-i", xml, "-o", meta], check=True)
subprocess.run(["cat", data], stdout=subprocess.DEVNULL, check=True)  # warm

def timed(name, cmd, env=None):
    out = os.path.join(d, "out")
    best = None
    for _ in range(5):
        if name != "pdt delta":
            subprocess.run(["rm", "-f", out])
        else:
            subprocess.run([a.pdt, "thin_migrate", "-q", "--metadata-dev", meta, "--data-dev", data, "--dev-id", "1", "--dest-file", out], check=True)
        subprocess.run(["sync"])
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        subprocess.run(cmd(out), check=True, env=env)
        dt = time.time() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        best = (dt, cpu) if best is None else min(best, (dt, cpu))
    dt, cpu = best
    print(f"{name:11} {dt:7.3f} s  {a.gib * 1024 / dt:8.0f} MiB/s  cpu {cpu:6.3f} s")

mig = [a.pdt, "thin_migrate", "-q", "--metadata-dev", meta, "--data-dev", data]
timed("dd 1M", lambda o: ["dd", f"if={data}", f"of={o}", "bs=1M", f"count={a.gib * 1024}", "conv=fsync", "status=none"])
timed("pdt full", lambda o: mig + ["--dev-id", "1", "--dest-file", o])
timed("pdt buffers", lambda o: mig + ["--dev-id", "1", "--dest-file", o], dict(os.environ, PDT_NO_COPY_RANGE="1"))
timed("pdt delta", lambda o: mig + ["--dev-id", "2", "--delta-id", "1", "--dest-file", o])
subprocess.run(["rm", "-rf", d])
