"""What the benchmark scripts share: timing a tool with its peak memory."""
import os
import subprocess
import sys
import tempfile
import time


def evict(paths):
    """Drops the cached pages of these files (and only these: the machine's
    other users keep theirs), as after a reboot."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run(cmd, cold=()):
    """Runs cmd: (wall seconds, peak RSS KiB). `cold`: files whose cached
    pages are dropped first."""
    wall, _, rss = run_cpu(cmd, cold)
    return wall, rss


def run_cpu(cmd, cold=()):
    """Wall seconds, CPU seconds (user + system) and peak RSS in KiB."""
    evict(cold)
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
