"""Where the ``usrTag`` strings handed to a C library live, and what else must outlive a call.

A library keeps the ``usrTag`` pointer of ``wrapperCreate`` / ``wrapperExecAsync`` and passes it
back to the callback, possibly late: after the session's destroy, after a once request's 504.
upstream never freed these tags (a leak per request); freeing them at once would let a late
callback read freed memory.  Here a tag lives in a slot of memory that is never unmapped, and a
slot is reused only ``grace`` seconds after its request ended, so a late callback always reads
a valid C string: its own tag within the grace (then answered -1: finished), or a newer tag
after it.  Input buffers of ``wrapperExecAsync`` ride along with the tag for the same grace: a
library still computing past the deadline may still read them.
"""
from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from typing import Any

SLOT = 64  # bytes per tag, NUL included; longer tags are replaced by generated ones
CHUNK = 256  # slots allocated at once
GRACE = 30.0


class TagArena:
    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self._chunks: list[Any] = []  # never freed: the library may hold any slot's address
        self._fresh: list[int] = []
        self._retired: deque[tuple[float, int, Any]] = deque()  # (when, slot, kept alive until then)
        self._lock = threading.Lock()

    def take(self, tag: bytes) -> int:
        """A slot holding ``tag`` (at most SLOT - 1 bytes) as a C string; returns its address."""
        if len(tag) >= SLOT:
            raise ValueError(f"tag longer than {SLOT - 1} bytes")
        with self._lock:
            now = time.monotonic()
            retired = self._retired
            while retired and retired[0][0] + self.grace <= now:
                self._fresh.append(retired.popleft()[1])
            if not self._fresh:
                chunk = ctypes.create_string_buffer(SLOT * CHUNK)
                self._chunks.append(chunk)
                base = ctypes.addressof(chunk)
                self._fresh.extend(base + i * SLOT for i in reversed(range(CHUNK)))
            addr = self._fresh.pop()
        ctypes.memmove(addr, tag + b"\0", len(tag) + 1)
        return addr

    def retire(self, addr: int, keep: Any = None) -> None:
        """The request of this slot has ended; ``keep`` stays referenced for the grace too."""
        with self._lock:
            self._retired.append((time.monotonic(), addr, keep))

    @property
    def slots(self) -> int:
        return len(self._chunks) * CHUNK
