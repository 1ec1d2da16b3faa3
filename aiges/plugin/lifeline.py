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
