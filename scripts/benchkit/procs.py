"""Processes the bench starts and watches: started and stopped by PID, their CPU and memory read from /proc."""
from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from .common import LOADGEN

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


class Procs:
    """Every process this run starts; all stopped by PID (TERM, then KILL) however the run ends.
    Their children (plugins, a peer's workers) are adopted too: one still there once its parent
    has stopped is stopped by PID, after checking it is the same process (its start time)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.adopted: dict[int, tuple[int, int]] = {}  # pid -> (start time, parent pid)

    def start(self, args: list[str], log: Path, err: Path | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        """Start ``args`` with stdout in ``log`` (stderr too, unless ``err`` names a file of its own)."""
        with contextlib.ExitStack() as files:
            out = files.enter_context(log.open("wb"))
            to: IO[bytes] | int = files.enter_context(err.open("wb")) if err else subprocess.STDOUT
            p = subprocess.Popen(args, stdout=out, stderr=to, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def adopt(self, pid: int, parent: int) -> None:
        started = _start_time(pid)
        if started is not None:
            self.adopted[pid] = (started, parent)

    def stop(self, p: subprocess.Popen[bytes], grace: float = 10) -> int:
        """TERM, KILL after ``grace`` seconds, then its adopted children; → its exit code."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self._stop_adopted([pid for pid, (_, parent) in self.adopted.items() if parent == p.pid])
        return p.returncode

    def _stop_adopted(self, pids: list[int], grace: float = 3) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [pid for pid in pids if _start_time(pid) == self.adopted[pid][0]]
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + grace
            while alive and time.monotonic() < deadline:
                alive = [pid for pid in alive if _start_time(pid) == self.adopted[pid][0]]
                time.sleep(0.05)
            if not alive:
                break
        for pid in pids:
            self.adopted.pop(pid, None)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        self._stop_adopted(list(self.adopted))


def children(pid: int) -> list[int]:
    """The process's children (PIDs in order), from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(out)


def descendants(pid: int) -> list[int]:
    """Children, their children and so on (at most 1,000), in PID order."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 1000:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    """The process's resident memory in MiB, 0 when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def all_cpu() -> dict[int, float]:
    """CPU seconds used so far by every process on the machine, by PID."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            out[int(d.name)] = cpu_seconds(int(d.name))
    return out


def cmdline(pid: int) -> str:
    """The process's command line as one string, "?" when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _machine_busy() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy, and stolen by the hypervisor (/proc/stat)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CpuMeter:
    """CPU used during one run: by each server process (``pids``: name -> PID), by the load generator (``who``: ``children``
    for wrk, ``self`` for the in-process Python client), and by everything else on the machine,
    which is how a reader tells a clean run from a noisy one."""

    def __init__(self, pids: dict[str, int], who: str) -> None:
        self.pids = pids
        self.who = resource.RUSAGE_CHILDREN if who == "children" else resource.RUSAGE_SELF
        self.procs = {k: cpu_seconds(pid) for k, pid in pids.items()}
        self.rusage = resource.getrusage(self.who)
        self.busy, self.steal = _machine_busy()
        self.t0 = time.perf_counter()

    def stop(self, units: int) -> tuple[dict[str, float], float, float]:
        """→ (CPU ms per unit by process, other processes' CPU in % of one core, steal %)."""
        elapsed = max(time.perf_counter() - self.t0, 1e-6)
        r = resource.getrusage(self.who)
        busy, steal = _machine_busy()
        used = {k: cpu_seconds(pid) - self.procs[k] for k, pid in self.pids.items()}
        used[LOADGEN] = (r.ru_utime - self.rusage.ru_utime) + (r.ru_stime - self.rusage.ru_stime)
        other = max(0.0, (busy - self.busy) - sum(used.values()))
        per_unit = {k: round(1000 * v / max(units, 1), 3) for k, v in used.items()}
        return per_unit, round(100 * other / elapsed, 1), round(100 * (steal - self.steal) / elapsed, 1)
