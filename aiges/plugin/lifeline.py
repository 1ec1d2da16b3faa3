"""Make the plugin die with its parent (upstream's orphaned-plugin bug).

Two independent mechanisms: the kernel's parent-death signal (Linux ``prctl``), and polling
``getppid()`` — the latter also covers a parent that is a thread of a Go program, and macOS.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

logger = logging.getLogger("aiges.plugin")
PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except OSError:  # no libc (unusual); polling still works
        logger.debug("prctl unavailable; relying on getppid polling")


async def watch_parent(on_orphaned: Callable[[], None], interval: float = 0.25) -> None:
    parent = os.getppid()
    while True:
        if os.getppid() != parent:
            logger.warning("parent process %d is gone; shutting down", parent)
            on_orphaned()
            return
        await asyncio.sleep(interval)


def lead_process_group() -> None:
    """Become the leader of our own process group, so the processes a wrapper starts (and does
    not move elsewhere) can be found and stopped with us.  Our loader starts us in a new session
    already; upstream's Go loader starts us in its own group, which we must never signal."""
    try:
        if os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)
    except OSError:  # not allowed (a session leader elsewhere); nothing to clean up by group then
        logger.debug("could not become a process-group leader")


def _group_members(pgid: int, me: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_children(grace: float) -> int:
    """SIGTERM every other process of our process group (a wrapper's subprocesses), then SIGKILL
    what is left after ``grace`` seconds: an orphaned plugin must not leave its model servers,
    ffmpeg runs or ``sleep``s behind.  Only when we lead the group; returns how many were found."""
    me = os.getpid()
    if not sys.platform.startswith("linux") or os.getpgid(0) != me:
        return 0
    members = found = _group_members(me, me)
    _signal(members, signal.SIGTERM)
    until = time.monotonic() + grace
    while members and time.monotonic() < until:
        time.sleep(0.02)
        members = _group_members(me, me)
    _signal(members, signal.SIGKILL)
    return len(found)
