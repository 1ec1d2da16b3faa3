"""Profiling on request: py-spy on every process of a system during one more run, and its hot spots per request."""
from __future__ import annotations

import collections
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .systems import Server

PROFILE_RATE = 250  # py-spy samples per second


def profile(server: Server, seconds: float, out_dir: Path, run: Callable[[], int], label: str) -> dict[str, list[str]]:
    """py-spy on every server process during one more run of ``run`` (which returns how many requests
    or frames it completed).  ``--gil --nonblocking``: only the thread holding the GIL is sampled and
    the process is never paused, so shares are of Python CPU time and the run is barely disturbed."""
    pyspy = shutil.which("py-spy")
    if not pyspy:
        print("bench: --profile needs py-spy (pip install py-spy); skipped")
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in server.pids.items():
        for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
            path = out_dir / f"{label}-{name}.{ext}"
            spies.append((name, fmt, path, subprocess.Popen(
                [pyspy, "record", "--gil", "--nonblocking", "--rate", str(PROFILE_RATE), "--pid", str(pid),
                 "--duration", str(max(1, round(seconds))), "--format", fmt, "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    time.sleep(1)  # let py-spy attach before the load starts
    units = run()
    report: dict[str, list[str]] = {}
    for name, fmt, path, p in spies:
        try:
            p.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if fmt == "raw" and path.exists():
            report[name] = hot_spots(path, units)
    print(f"  py-spy output (collapsed stacks .txt, flame graphs .svg) in {out_dir}")
    return report


def hot_spots(collapsed: Path, units: int, top: int = 14) -> list[str]:
    """Python CPU per request/frame by function, self and inclusive, from py-spy's collapsed stacks
    (an estimate: samples x sampling interval / units; the run is slightly longer than the profile)."""
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f.strip()) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
    if not total or not units:
        return []
    us = 1e6 / PROFILE_RATE / units
    lines = [f"total {total * us:6.1f} us/unit of Python CPU (GIL held)"]
    lines += [f"self  {n * us:6.1f} us  {f}" for f, n in self_n.most_common(top)]
    skip = ("<module>", "_run_module_as_main", "_run_code", "Runner.run", "run (", "main (")
    ours = [(f, n) for f, n in incl_n.most_common() if "aiges/" in f and not f.startswith(skip)][:top]
    lines += [f"incl  {n * us:6.1f} us  {f}" for f, n in ours]
    return lines


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" → "func (file.py-ish tail)" without the line number
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    if "/aiges/" in path:
        path = "aiges/" + path.rsplit("/aiges/", 1)[1]
    return f"{m.group(1)} ({path})"
