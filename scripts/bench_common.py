"""What the benchmark scripts share: timing a tool with its peak memory."""
import subprocess
import sys
import tempfile
import time


def run(cmd, cold=False):
    wall, _, rss = run_cpu(cmd, cold)
    return wall, rss


def run_cpu(cmd, cold=False):
    """Wall seconds, CPU seconds (user + system) and peak RSS in KiB."""
    if cold:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    # GNU time measures the peak RSS: a child forked from Python would count
    # Python's own pages until its exec.
    with tempfile.NamedTemporaryFile("r") as out:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-q", "-f", "%M %U %S", "-o", out.name] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode().strip()}")
        rss, user, system = out.read().split()[-3:]
        return wall, float(user) + float(system), int(rss)


def fresh(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
