"""The peak resident memory of a command over its whole run, and what it was made of.

Runs the command, samples /proc/PID/status every 0.25 s (anonymous memory, mapped file pages)
and prints one JSON line at the end: the exit status, the peak RSS the kernel recorded for the
process (`ru_maxrss`: anonymous memory and mapped file pages alike, over the whole run), and
the sample with the most resident memory. The command's stderr goes to this one's.

    python scripts/peak_memory.py charlstm train big.txt --minutes 2 --num-layers 1 --units 64
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def _sample(pid: int) -> dict[str, int] | None:
    """The process' resident memory by kind, in MB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in FIELDS}
    return {k: round(v / 1024) for k, v in kb.items()}


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    start = time.monotonic()
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
    top: dict[str, float] = {}
    while proc.poll() is None:
        now = _sample(proc.pid)
        if now and now.get("VmRSS", 0) > top.get("VmRSS", 0):
            top = {**now, "at_s": round(time.monotonic() - start, 1)}
        time.sleep(0.25)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    wall = round(time.monotonic() - start, 1)
    report = {"returncode": proc.returncode, "peak_rss_mb": round(peak), "largest_sample_mb": top,
              "wall_s": wall}  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
